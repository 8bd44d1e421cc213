"""Where each proposal, invariant, series, platform and knob comes from, so a reply can cite it.

Nothing is restated here: the proposals and invariants carry their own ``source``
(gmemlab.model.proposals, gmemlab.invariants), and the series' cover letters, the
platforms and the knobs come from the one registry, gmemlab.model.vocab. A knob the
model gains is cited as soon as vocab lists it.

>>> series_source("v8")
'[PATCH v8 00/46] guest_memfd: In-place conversion support (2026-06-18), <20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com>'
>>> proposal_source("private-first").startswith("Ackerley Tng's flow")
True
>>> sorted(KNOB_SOURCES) == sorted(vocab.KNOBS)
True
"""

from __future__ import annotations

from types import MappingProxyType

from gmemlab.errors import UsageError
from gmemlab.invariants import PROPERTIES
from gmemlab.model import vocab
from gmemlab.model.vocab import proposal

SEED = ("Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for "
        "KVM_SET_MEMORY_ATTRIBUTES2 (Michael Roth, 2026-04-07)")

# Series cover letters: series -> (subject (date), Message-Id).
SERIES_SOURCES = MappingProxyType({s: (subject, msgid) for s, (_, subject, msgid) in vocab.SERIES_INFO.items()})

# What each series toggle means in the model.
SERIES_MEANING = MappingProxyType({s: meaning for s, (meaning, _, _) in vocab.SERIES_INFO.items()})

PLATFORM_SOURCES = vocab.PLATFORM_SOURCES

# knob -> (what it does, and its status if any; where it was argued)
KNOB_SOURCES = MappingProxyType({
    k.name: (k.help + (f" ({k.status})" if k.status else ""), k.source) for k in vocab.KNOBS.values()})


def proposal_source(name: str) -> str:
    """The message a proposal comes from (Proposal.source)."""
    return proposal(name).source


def proposal_claim(name: str) -> str:
    return proposal(name).claim


def invariant_source(name: str) -> str:
    """The argument or selftest behind an invariant (Property.source)."""
    return PROPERTIES[name].source


def series_source(series: str) -> str:
    vocab.known("series", series, vocab.SERIES)
    subject, msgid = SERIES_SOURCES[series]
    return f"{subject}, {msgid}"


def knob_source(knob: str) -> str:
    vocab.known("knob", knob, tuple(vocab.KNOBS))
    what, where = KNOB_SOURCES[knob]
    return f"{what}: {where}"


def config_sources(platform: str, series: str, knobs: dict | None = None) -> list[tuple[str, str]]:
    """(what, source) for a configuration: the seed, the series, the platform, the knobs on
    (in the registry's order).

    >>> [what for what, _ in config_sources("snp", "v8", {"huge_folios": True, "allocation_failures": True})]
    ['question', 'series v8', 'platform snp', 'knob huge_folios', 'knob allocation_failures']
    """
    vocab.known("platform", platform, vocab.PLATFORMS)
    on = {k for k, v in (knobs or {}).items() if v}
    unknown = sorted(on - set(vocab.KNOBS))
    if unknown:
        raise UsageError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(vocab.KNOBS)}")
    out = [("question", SEED),
           (f"series {series}", f"{SERIES_MEANING[series]}; {series_source(series)}"),
           (f"platform {platform}", PLATFORM_SOURCES[platform])]
    out += [(f"knob {k}", knob_source(k)) for k in vocab.KNOBS if k in on]
    return out
