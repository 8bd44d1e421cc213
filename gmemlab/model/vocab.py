"""The one vocabulary: proposals, platforms, series, knobs and limits.

Everything that names a choice of the model reads it from here: Config validates against
it, the command line makes its options from it (one ``--flag`` per knob, with its help
and source), the widgets make their checkboxes from it, summaries and citations print
it. A test fails when a field of Config is missing here, so a knob added to the model
cannot be forgotten by a view.

Proposals are a registry: the three built-ins, plus the designer's own variants
(``register``, or ``load_variants(FILE.py)``; docs/variants.md).

>>> proposal_names()[:3]
('private-first', 'populate-converts', 'userspace-converts')
>>> KNOBS["huge_folios"].flag
'--huge-folios'
"""

from __future__ import annotations

import os
import runpy
import traceback
from dataclasses import dataclass
from types import MappingProxyType

from gmemlab.errors import InputError, UsageError
from gmemlab.model.platforms import PLATFORMS as _PLATFORMS
from gmemlab.model.proposals import BUILTINS, Proposal
from gmemlab.model.series import SERIES_RECORDS

# --- series ---------------------------------------------------------------------------

# series -> (what it means in the model, cover letter subject (date), Message-Id), derived
# from the series records (gmemlab.model.series), which also carry each series' features.
SERIES_INFO = MappingProxyType({s.name: (s.meaning, s.subject, s.msgid) for s in SERIES_RECORDS.values()})
SERIES: tuple[str, ...] = tuple(SERIES_INFO)
DEFAULT_SERIES = "v8"

# --- platforms ------------------------------------------------------------------------

PLATFORMS: tuple[str, ...] = tuple(_PLATFORMS)
PLATFORM_SOURCES = MappingProxyType({name: p.source for name, p in _PLATFORMS.items()})

# --- knobs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """A design knob: a boolean field of Config that changes the rules or the search."""

    name: str          # the Config field
    help: str          # one line, for --help and the widget's tooltip
    source: str        # where it was argued
    page_local: bool   # step() reads it page by page (the table engine may memoize per page)
    status: str = ""   # e.g. "rejected in the v8 review"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


_SEED = ("Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for KVM_SET_MEMORY_ATTRIBUTES2 "
         "(Michael Roth, 2026-04-07)")

KNOBS = MappingProxyType({k.name: k for k in (
    Knob("refuse_unprepared_populate",
         "a NULL-source populate of a page that is not up to date is EOPNOTSUPP (the v9 alternative)",
         "argued in the v8 review (Yan Zhao, <aj3TGLGWT1kMFIVH@yzhao56-desk.sh.intel.com>) and not adopted",
         page_local=True, status="rejected in the v8 review"),
    Knob("convert_after_populate",
         "populate-converts: the TE takes the page first, the conversion follows (the call proposal read literally)",
         _SEED + ": 'populate will first check that the memory is shared, then also set the memory "
         "to private after the populate'",
         page_local=True),
    Knob("no_direct_map_series",
         "the NO_DIRECT_MAP series is applied: KVM_CREATE_GUEST_MEMFD takes NO_DIRECT_MAP, and the "
         "explorer also creates the file with it",
         "'guest_memfd: Add NO_DIRECT_MAP flag' (a separate series)",
         page_local=True),
    Knob("huge_folios",
         "huge folios back the file (one over the whole file, or Config.folio_pages pages each): "
         "report whether launch keeps them intact",
         _SEED + ": 'prep'ing/encrypting everything while it's in a shared state means gmem will "
         "split the hugepage'",
         page_local=False),
    Knob("in_place_off",
         "kvm.gmem_in_place_conversion=0 (0444 module parameter): KVM_SET_MEMORY_ATTRIBUTES2 is ENOTTY, "
         "INIT_SHARED is refused on snp/tdx, private memory is tracked per VM and populate needs a "
         "separate source (a trace header's \"in_place\": false)",
         "kvm_gmem_ioctl (post-v8 virt/kvm/guest_memfd.c: ENOTTY while !gmem_in_place_conversion); "
         "'[PATCH v8 22/46] KVM: SEV: Make 'uaddr' parameter optional for KVM_SEV_SNP_LAUNCH_UPDATE' "
         "and the TDX patch making the source optional (v8 review, June 2026)",
         page_local=True),
    Knob("allocation_failures",
         "the explorer also tries each conversion with its allocation failing (ENOMEM)",
         "docs/domain.md, uAPI facts: ENOMEM (allocation of tracking entries) reports error_offset = start",
         page_local=True),
    # The races argued after v8 (docs/domain.md, "After v8"): each changes what a thread's
    # steps do (gmemlab.model.threads), so it matters with --interleave.
    Knob("gup_fast_no_recheck",
         "with --interleave: GUP-fast keeps its reference without reading the page table entry again",
         "mm/gup.c gup_fast_pte_range: the reference is taken, then the PTE is read again and the "
         "reference dropped if it changed; the races of conversion with GUP-fast (v8 review)",
         page_local=True),
    Knob("check_before_unmap",
         "a conversion to private checks references before it unmaps the host page tables",
         "v8 review: the refcount check runs after unmap_mapping_pages, so a failed conversion has "
         "already torn down the host's mappings; the other order is the design question",
         page_local=True),
    Knob("pins_forever",
         "a reference, once taken, is never dropped (a longterm pin: io_uring fixed buffers, VFIO DMA)",
         "the post-v8 argument on which references count as outstanding and whether one can stay "
         "forever (GUP longterm pins, io_uring buffers, VFIO; docs/domain.md, After v8)",
         page_local=True),
    Knob("memory_failures",
         "the explorer also tries a memory error in each page's folio (hwpoison: kvm_gmem_error_folio)",
         "kvm_gmem_error_folio (virt/kvm/guest_memfd.c): invalidate, keep the folio (MF_DELAYED), "
         "get_pfn then returns -EHWPOISON; memory failure during conversion or populate is argued after v8",
         page_local=True),
    Knob("transient_refs",
         "references nobody holds on purpose count too: a new folio's reference from a per-CPU "
         "LRU batch, until the batch drains (lru_drain); v13's check drains the batches first",
         "which references count as outstanding, argued after v8: 'in case of unsafe refcounts, "
         "conversion operation immediately exits to userspace with EAGAIN and userspace is supposed "
         "to retry' (Vishal Annapurve, <CAGtprH9Wj7YW-_sfGQfwKHRXL-7fFStXiHn2O32ptXAFbFB8Tw@mail.gmail.com>); "
         "v13 __folio_has_outstanding_references drains them (lru_cache_drain_for_folio)",
         page_local=True),
    Knob("populate_holds_lock",
         "with --interleave: populate keeps the invalidate lock from its first page to its last",
         "kvm_gmem_populate (virt/kvm/guest_memfd.c) and the races argued after v8: populate takes the "
         "invalidate lock exclusively and releases it between pages",
         page_local=True),
)})

# The fields of Config that are not knobs (folio_pages: the huge_folios knob's geometry,
# an integer, set through gmemlab.explore.Bounds.folio_pages).
CORE_FIELDS = ("proposal", "platform", "series", "page_size", "folio_pages")

# --- limits -------------------------------------------------------------------------------

# Pages of a file the explorer takes (a state is a 63-bit key: see gmemlab.explore.core).
MAX_PAGES = 8
# Pages the interactive widgets offer (a step from 2 to 3 pages costs seconds).
WIDGET_MAX_PAGES = 3
ENGINES = ("auto", "reference", "fast")

# --- proposals ------------------------------------------------------------------------

_proposals: dict[str, Proposal] = dict(BUILTINS)
# The built-in proposals' names; proposal_names() adds the registered variants.
PROPOSALS: tuple[str, ...] = tuple(BUILTINS)


def proposal_names() -> tuple[str, ...]:
    """The built-in proposals first, then the registered variants in registration order."""
    return tuple(_proposals)


def proposal(name: str) -> Proposal:
    p = _proposals.get(name)
    if p is None:
        raise UsageError(f"unknown proposal {name!r}; known: {', '.join(_proposals)}")
    return p


def register(p: Proposal) -> Proposal:
    """Make a variant known by its name (re-registering a name replaces it)."""
    if not isinstance(p, Proposal):
        raise UsageError(f"register() takes a Proposal, got {type(p).__name__}")
    if p.name in BUILTINS and p is not BUILTINS[p.name]:
        raise UsageError(f"{p.name!r} is a built-in proposal; give the variant a name of its own")
    if not p.name or any(c.isspace() for c in p.name):
        raise UsageError(f"a proposal name needs at least one character and no spaces, got {p.name!r}")
    _proposals[p.name] = p
    return p


def unregister(name: str) -> None:
    if name in BUILTINS:
        raise UsageError(f"{name!r} is built in")
    _proposals.pop(name, None)


def load_variants(path: str) -> list[Proposal]:
    """Run a variants file and register every Proposal it defines at top level.

    A file that cannot be read or raises is an InputError naming the file and line.
    """
    if not os.path.isfile(path):
        raise InputError(path, 0, "no such variants file")
    try:
        ns = runpy.run_path(path, run_name="gmemlab_variants")
    except SyntaxError as e:
        raise InputError(path, e.lineno or 0, f"syntax error: {e.msg}") from None
    except Exception as e:  # the user's code: name the line that raised
        line = 0
        for fs in traceback.extract_tb(e.__traceback__):
            if os.path.abspath(fs.filename) == os.path.abspath(path):
                line = fs.lineno or 0
        raise InputError(path, line, f"{type(e).__name__}: {e}") from None
    found = [v for v in ns.values() if isinstance(v, Proposal) and v.name not in BUILTINS]
    if not found:
        raise InputError(path, 0, "defines no proposal (Proposal.derive(...) at top level)")
    for p in sorted(found, key=lambda p: p.name):
        register(p)
    return sorted(found, key=lambda p: p.name)


def check_config_fields(fields: list[str]) -> list[str]:
    """The Config fields this registry does not know (a test wants none)."""
    return [f for f in fields if f not in CORE_FIELDS and f not in KNOBS]


def known(kind: str, value: str, names) -> None:
    if value not in names:
        raise UsageError(f"unknown {kind} {value!r}; known: {', '.join(names)}")


def page_local(cfg) -> bool:
    """Whether every knob that is on in cfg is page-local."""
    return all(KNOBS[k].page_local or not getattr(cfg, k) for k in KNOBS)


def knobs_on(cfg) -> list[str]:
    return [k for k in KNOBS if getattr(cfg, k)]

