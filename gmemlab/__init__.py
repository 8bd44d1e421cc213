"""gmemlab: a design-exploration workbook for KVM guest_memfd in-place conversion.

The semantics live in gmemlab.model (one step function); gmemlab.invariants names the
properties; gmemlab.explore and gmemlab.traces call the same step function. Every
name of a choice (proposals, platforms, series, knobs, limits) comes from one
registry, gmemlab.model.vocab.

The public API, for notebooks and scripts (``import gmemlab``):

- ``Config``: what picks the rules (proposal, platform, series, knobs);
- ``Proposal``, ``register``, ``load_variants``, ``rule``: a designer's own variants
  (docs/variants.md);
- ``explore``, ``compare``: the model checker;
- ``load``, ``dumps``, ``replay``, ``walk``, ``emulate``: traces.

>>> import gmemlab
>>> x = gmemlab.explore(proposal="userspace-converts", platform="snp", pages=1)
>>> x.holds("te_private_implies_kvm_private"), x.holds("private_not_host_mapped")
(False, True)

Nothing heavy is imported by ``import gmemlab``: each function imports what it needs.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

__all__ = ["Config", "Proposal", "register", "load_variants", "rule", "explore", "compare",
           "load", "dumps", "replay", "walk", "emulate", "__version__"]

# Classes and the rule lookup, imported on first use (PEP 562): gmemlab.model imports
# gmemlab.errors, and the command line imports this package for __version__ alone.
_LAZY = {"Config": ("gmemlab.model.state", "Config"),
         "Proposal": ("gmemlab.model.proposals", "Proposal"),
         "rule": ("gmemlab.model.step", "rule")}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gmemlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``gmemlab.explore`` is the function below, also once the subpackage of the same
    name is imported: the import system's ``setattr(gmemlab, "explore", <module>)`` is
    ignored (the subpackage stays importable by its name: ``from gmemlab.explore import
    Bounds``, ``import gmemlab.explore.compare``)."""

    def __setattr__(self, name, value):
        if name in _FUNCTIONS_NAMED_LIKE_A_SUBPACKAGE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


_FUNCTIONS_NAMED_LIKE_A_SUBPACKAGE = ("explore",)
sys.modules[__name__].__class__ = _Package


# --- proposals ----------------------------------------------------------------------------

def register(proposal):
    """Make a variant known by its name, to every command, widget and view
    (gmemlab.model.vocab.register); returns it.

    >>> from gmemlab import Proposal
    >>> from gmemlab.model.proposals import POPULATE_CONVERTS
    >>> v = register(Proposal.derive(POPULATE_CONVERTS, name="doc-ebusy", claim="EBUSY for a pinned page",
    ...                              source="docs/variants.md", populate_busy_errno="EBUSY"))
    >>> from gmemlab.model.vocab import proposal_names, unregister
    >>> proposal_names()[-1]
    'doc-ebusy'
    >>> unregister("doc-ebusy")
    """
    from gmemlab.model.vocab import register as _register
    return _register(proposal)


def load_variants(path: str) -> list:
    """Run a variants file and register every Proposal it defines at top level; returns
    them. A broken file is an InputError naming the file and the line.

    >>> load_variants("no/such/file.py")
    Traceback (most recent call last):
    ...
    gmemlab.errors.InputError: no/such/file.py:0: no such variants file
    """
    from gmemlab.model.vocab import load_variants as _load_variants
    return _load_variants(path)


# --- the model checker ----------------------------------------------------------------------

def _config(proposal: str, platform: str, series: str, knobs: dict):
    from gmemlab.errors import UsageError
    from gmemlab.model.state import Config
    from gmemlab.model.vocab import KNOBS
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise UsageError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(KNOBS)}")
    return Config(proposal=proposal, platform=platform, series=series, **knobs)


def explore(proposal: str = "private-first", platform: str = "snp", series: str = "v8", pages: int = 2, *,
            engine: str = "auto", symmetry: bool = True, progress: bool = False,
            max_states: int = 5_000_000, bounds=None, **knobs):
    """Every state a fresh guest_memfd reaches under one configuration, with every
    invariant decided (gmemlab.explore.explore). Knobs are keywords named as in Config
    (``huge_folios=True``); ``bounds`` (gmemlab.explore.Bounds) replaces ``pages``.

    >>> x = explore(proposal="private-first", platform="tdx", pages=1, huge_folios=True)
    >>> x.config.knobs, x.holds("te_private_implies_kvm_private")
    (['huge_folios'], True)
    """
    from gmemlab.explore import Bounds
    from gmemlab.explore import explore as _explore
    cfg = _config(proposal, platform, series, knobs)
    return _explore(cfg, bounds if bounds is not None else Bounds(pages=pages), symmetry=symmetry,
                    progress=progress, max_states=max_states, engine=engine)


def compare(platform: str = "snp", series: str = "v8", pages: int = 2, *, proposals=None,
            engine: str = "auto", symmetry: bool = True, progress: bool = False, bounds=None, **knobs):
    """Every proposal explored on the same configuration (gmemlab.explore.compare.compare):
    the built-ins and the registered variants, or those named in ``proposals``.

    >>> t = compare("snp", "v8", pages=1)
    >>> [(c.proposal, c.exploration.holds("te_private_implies_kvm_private")) for c in t.columns]
    [('private-first', True), ('populate-converts', True), ('userspace-converts', False)]
    """
    from gmemlab.explore import Bounds
    from gmemlab.explore.compare import compare as _compare
    from gmemlab.model.vocab import proposal_names
    _config("private-first", platform, series, knobs)  # checks the knobs' names
    return _compare(platform, series, bounds if bounds is not None else Bounds(pages=pages),
                    knobs={k: bool(v) for k, v in knobs.items()}, symmetry=symmetry, progress=progress,
                    proposals=proposal_names() if proposals is None else tuple(proposals), engine=engine)


# --- traces ---------------------------------------------------------------------------------

def load(path: str):
    """(header, events) of a gmemlab-trace/1 file (gmemlab.traces.format.load); an
    unusable file is an InputError naming the file, the line and the problem.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "launch.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write(dumps(*emulate("snp-launch", pages=2)))
    >>> header, events = load(path)
    >>> header["platform"], events[0]["op"]
    ('snp', 'create_gmem')
    """
    from gmemlab.traces.format import load as _load
    return _load(path)


def dumps(header: dict, events) -> str:
    """A trace as gmemlab-trace/1 text (gmemlab.traces.format.dumps): the same input
    gives the same bytes.

    >>> dumps({"platform": "snp"}, []).splitlines()[0].startswith('{"format": "gmemlab-trace/1"')
    True
    """
    from gmemlab.traces.format import dumps as _dumps
    return _dumps(header, events)


def replay(cfg, events, path: str = "<trace>", **kwargs):
    """Replay trace events under a Config and judge them (gmemlab.traces.replay.replay):
    a Report that says whether every outcome matched and which invariants broke.

    >>> from gmemlab import Config
    >>> header, events = emulate("snp-launch", pages=2)
    >>> r = replay(Config(platform=header["platform"], series=header["series"]), events)
    >>> r.conforms, r.violations
    (True, [])
    """
    from gmemlab.traces.replay import replay as _replay
    return _replay(cfg, events, path, **kwargs)


def walk(cfg, events, *args, **kwargs):
    """The events through the model, one Step (pre, outcome, post, broken, diverged)
    per event, lazily (gmemlab.traces.walk.walk).

    >>> from gmemlab import Config
    >>> header, events = emulate("snp-launch", pages=2)
    >>> steps = list(walk(Config(platform="snp"), events))
    >>> steps[0].outcome, any(s.diverged for s in steps)
    ({'ret': 0}, False)
    """
    from gmemlab.traces.walk import walk as _walk
    return _walk(cfg, events, *args, **kwargs)


def emulate(scenario: str, proposal: str = "private-first", **kwargs):
    """(header, events) of a trace made by driving the model of a proposal through a
    scenario (gmemlab.traces.emulate.emulate): snp-launch, tdx-launch, legacy-copy,
    pinned-retry or guest-boot; the events are made lazily, each with "expect".

    >>> header, events = emulate("tdx-launch", pages=2)
    >>> header["platform"], next(iter(events))["op"]
    ('tdx', 'create_gmem')
    """
    from gmemlab.traces.emulate import emulate as _emulate
    return _emulate(scenario, proposal, **kwargs)
