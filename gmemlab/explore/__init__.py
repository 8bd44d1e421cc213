"""Explore every state a proposal reaches, and compare proposals.

``explore`` builds the Spec (gmemlab.spec: initial states, actions, boundary,
properties) and runs the one search driver (gmemlab.explore.search) with an engine
(gmemlab.explore.engines): "fast" (lookups derived from the model) or "reference"
(step() on every transition). "auto" is "fast", which itself falls back to step() for
whatever it cannot derive. Every engine gives the same Exploration.

>>> from gmemlab.model.state import Config
>>> r = explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1))
>>> r.holds("te_private_implies_kvm_private"), r.holds("private_not_host_mapped")
(False, True)
"""

from __future__ import annotations

from gmemlab.errors import UsageError
from gmemlab.explore.core import Discovery, Exploration, canonical, map_event
from gmemlab.model.state import Config
from gmemlab.model.vocab import ENGINES
from gmemlab.spec import Bounds, Spec

__all__ = ["explore", "Bounds", "Spec", "Exploration", "Discovery", "canonical", "map_event", "ENGINES",
           "counterexample_where", "distinct_counterexamples", "differing_counterexample", "PREDICATES"]


def explore(cfg: Config, bounds: Bounds = Bounds(), symmetry: bool = True, progress=False,
            max_states: int = 5_000_000, engine: str = "auto", max_memory: int | None = None) -> Exploration:
    """Explore every reachable state of the spec (cfg, bounds); decide every property.
    progress: a line on stderr (True), or a callable ``progress(states, frontier, depth,
    done)`` called after every batch and at the end (gmemlab.explore.search.Progress).
    max_states, max_memory (bytes of the state store): budgets; past one the search ends
    cleanly with what it found (``incomplete``; ``stopped_by`` names the budget)."""
    from gmemlab.explore.search import search
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    spec = Spec(cfg, bounds, symmetry=symmetry)
    return search(spec, engine="fast" if engine == "auto" else engine, progress=progress,
                  max_states=max_states, max_memory=max_memory)


# The counterexample queries read an Exploration; imported last, as they import its module.
from gmemlab.explore.queries import (PREDICATES, counterexample_where, differing_counterexample,  # noqa: E402
                                     distinct_counterexamples)
