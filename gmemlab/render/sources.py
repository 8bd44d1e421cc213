"""Where each proposal, invariant, series and knob comes from, so a reply can cite it.

The proposals and invariants carry their own ``source`` (gmemlab.model.proposals,
gmemlab.invariants); the series cover letters and the knobs' origins are listed here,
from ../shared/DOMAIN.md ("Where the arguments were made").

>>> series_source("v8")
'[PATCH v8 00/46] guest_memfd: In-place conversion support (2026-06-18), <20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com>'
>>> proposal_source("private-first").startswith("Ackerley Tng's flow")
True
"""

from __future__ import annotations

from gmemlab.invariants import PROPERTIES
from gmemlab.model.proposals import PROPOSALS

SEED = ("Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for "
        "KVM_SET_MEMORY_ATTRIBUTES2 (Michael Roth, 2026-04-07)")

# Series cover letters: subject (date), Message-Id (DOMAIN.md).
SERIES_SOURCES = {
    "v4": ("the RFC v4 cover letter (2026-03-26)",
           "<20260326-gmem-inplace-conversion-v4-0-e202fe950ffd@google.com>"),
    "v5": ("the RFC v5 cover letter (2026-04-28)",
           "<20260428-gmem-inplace-conversion-v5-0-d8608ccfca22@google.com>"),
    "v6": ("the v6 cover letter (2026-05-07; content modes dropped)",
           "<20260507-gmem-inplace-conversion-v6-0-91ab5a8b19a4@google.com>"),
    "v7": ("the v7 cover letter (2026-05-22; flags must be 0)",
           "<20260522-gmem-inplace-conversion-v7-0-2f0fae496530@google.com>"),
    "v8": ("[PATCH v8 00/46] guest_memfd: In-place conversion support (2026-06-18)",
           "<20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com>"),
}

# What each series toggle means in the model (DOMAIN.md "The three proposals").
SERIES_MEANING = {
    "v5": "content modes ZERO/PRESERVE for KVM_SET_MEMORY_ATTRIBUTES2",
    "v7": "flags must be 0; populate never zeroes a page that is not up to date",
    "v8": "populate zeroes a page that is not up to date ('KVM: guest_memfd: Zero page while getting pfn')",
}

PLATFORM_SOURCES = {
    "sw_protected": "KVM_X86_SW_PROTECTED_VM (no trusted entity); selftests "
                    "guest_memfd_test.c, x86/guest_memfd_conversions_test.c",
    "snp": "AMD SEV-SNP: RMP, KVM_SEV_SNP_LAUNCH_UPDATE / LAUNCH_FINISH",
    "tdx": "Intel TDX: S-EPT, KVM_TDX_INIT_MEM_REGION / KVM_TDX_FINALIZE_VM",
}

KNOB_SOURCES = {
    "refuse_unprepared_populate": (
        "a NULL-source populate of a page not up to date is EOPNOTSUPP",
        "the alternative argued for v9 in reply to " + SERIES_SOURCES["v8"][0] + " "
        + SERIES_SOURCES["v8"][1]),
    "convert_after_populate": (
        "populate-converts: the TE takes the page before the conversion",
        SEED + ": 'populate will first check that the memory is shared, then also set "
        "the memory to private after the populate'"),
    "no_direct_map_series": (
        "the NO_DIRECT_MAP flag of KVM_CREATE_GUEST_MEMFD exists",
        "'guest_memfd: Add NO_DIRECT_MAP flag' (a separate series)"),
}


def proposal_source(name: str) -> str:
    """The message a proposal comes from (Proposal.source)."""
    return PROPOSALS[name].source


def proposal_claim(name: str) -> str:
    return PROPOSALS[name].claim


def invariant_source(name: str) -> str:
    """The argument or selftest behind an invariant (Property.source)."""
    return PROPERTIES[name].source


def series_source(series: str) -> str:
    subject, msgid = SERIES_SOURCES[series]
    return f"{subject}, {msgid}"


def knob_source(knob: str) -> str:
    what, where = KNOB_SOURCES[knob]
    return f"{what}: {where}"


def config_sources(platform: str, series: str, knobs: dict | None = None) -> list[tuple[str, str]]:
    """(what, source) for a configuration: the seed, the series, the platform, the knobs on."""
    out = [("question", SEED),
           (f"series {series}", f"{SERIES_MEANING[series]}; {series_source(series)}"),
           (f"platform {platform}", PLATFORM_SOURCES[platform])]
    for k in sorted(knobs or {}):
        if (knobs or {}).get(k):
            out.append((f"knob {k}", knob_source(k)))
    return out
