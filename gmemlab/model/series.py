"""The series as data: what each version of the in-place conversion series does differently.

Every rule of gmemlab.model.step that depends on the series reads one named feature of
the series' record here, never the series' name. A new series is a new record (and, for
a behaviour no earlier series had, the rule that reads its new feature).

The v13 record is read from a post-v8 ``virt/kvm/guest_memfd.c`` (the one with
``kvm_arch_gmem_make_shared`` / ``kvm_arch_gmem_make_private`` under
CONFIG_HAVE_KVM_ARCH_GMEM_CONVERT and ``__folio_has_outstanding_references``; a public copy
of the series after v8, reported applied in late September 2026, tree not confirmed):

- ``__kvm_gmem_set_attributes``: after the checks, ``kvm_gmem_invalidate_start`` runs over
  the WHOLE range with the filter ``to_private ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE``,
  then, to shared, ``kvm_gmem_make_shared`` calls ``kvm_arch_gmem_make_shared`` on every
  folio present in the range (``filemap_get_folios``), whether or not its index changes
  attribute (``invalidate_scope = "range"``).
- ``__folio_has_outstanding_references``: a folio that is DMA-pinned or still mapped is
  busy at once; otherwise the LRU batches are drained once (``lru_cache_drain_for_folio``)
  and the reference count is compared with the page cache's plus one.
- ``kvm_gmem_get_pfn``: ``kvm_arch_gmem_make_private`` on every call for a private index
  (the guest fault path; populate's ``__kvm_gmem_get_pfn`` does not call it).
- ``__kvm_gmem_populate``: ``__kvm_gmem_get_pfn`` (which allocates the folio and zeroes
  it if not up to date) runs BEFORE the destination's private check, and the folio is not
  marked up to date after ``post_populate`` (``__kvm_gmem_get_pfn`` already did).

v5/v7/v8 keep what the model said of them before (docs/domain.md, Series): the
conversion to shared invalidates the pages that change attribute, populate checks the
destination before it gets the folio, and v5/v7 (no zeroing in get_pfn) mark the folio up
to date after a successful post_populate.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Series:
    name: str
    meaning: str           # one line: what the model takes from it
    subject: str           # the cover letter's subject (date)
    msgid: str             # the cover letter's Message-Id
    # KVM_SET_MEMORY_ATTRIBUTES2 takes the content-mode flags ZERO/PRESERVE (RFC v4/v5);
    # without a mode a conversion scrambles sw_protected contents. Otherwise flags != 0 is EINVAL.
    content_modes: bool = False
    # __kvm_gmem_get_pfn zeroes a folio that is not up to date, so populate's get_pfn does
    # too ("KVM: guest_memfd: Zero page while getting pfn", v8). Without it only the guest
    # fault and the host fault zero.
    zero_in_get_pfn: bool = False
    # __kvm_gmem_populate gets the folio (allocating and, with zero_in_get_pfn, zeroing it)
    # before it checks that the destination is private (v13 order). False: the check first.
    populate_gets_folio_first: bool = False
    # __kvm_gmem_populate marks the folio up to date after a successful post_populate.
    populate_marks_uptodate: bool = True
    # Which pages of a conversion's range to shared lose their private stage-2 mappings
    # (and, with the platform's arch convert hook, their TE state): "converting" (the
    # pages whose attribute changes) or "range" (every page of the range: v13's
    # kvm_gmem_invalidate_start(..., KVM_FILTER_PRIVATE) and kvm_gmem_make_shared).
    invalidate_scope: str = "converting"
    # The refcount check also counts a folio still mapped in a host page table as busy
    # (v13 __folio_has_outstanding_references: folio_maybe_dma_pinned || folio_mapped).
    busy_if_mapped: bool = False
    # The refcount check drains the LRU batches before it counts (v13
    # __folio_has_outstanding_references: lru_cache_drain_for_folio, which mm exports for
    # KVM, "mm/folio: EXPORT_SYMBOL_FOR_KVM(lru_cache_drain_for_folio)"), so a batch's
    # reference (Page.lru, the transient_refs knob) never makes a conversion fail.
    drains_lru: bool = False
    # CONFIG_HAVE_KVM_ARCH_GMEM_CONVERT: the platform's kvm_arch_gmem_make_shared runs on
    # conversion to shared, kvm_arch_gmem_make_private on the guest fault (v13).
    arch_convert_hooks: bool = False


SERIES_RECORDS = MappingProxyType({s.name: s for s in (
    Series("v5", "content modes ZERO/PRESERVE for KVM_SET_MEMORY_ATTRIBUTES2",
           "the RFC v5 cover letter (2026-04-28)",
           "<20260428-gmem-inplace-conversion-v5-0-d8608ccfca22@google.com>",
           content_modes=True),
    Series("v7", "flags must be 0; populate never zeroes a page that is not up to date",
           "the v7 cover letter (2026-05-22; flags must be 0)",
           "<20260522-gmem-inplace-conversion-v7-0-2f0fae496530@google.com>"),
    Series("v8", "populate zeroes a page that is not up to date ('KVM: guest_memfd: Zero page while getting pfn')",
           "[PATCH v8 00/46] guest_memfd: In-place conversion support (2026-06-18)",
           "<20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com>",
           zero_in_get_pfn=True),
    Series("v13", "post-v8: a conversion to shared invalidates private mappings over its whole range and "
                  "runs kvm_arch_gmem_make_shared on every folio in it; populate gets (and zeroes) the "
                  "folio before its private check",
           "the v13 cover letter (2026-09-10; v10 2026-08-07, v12 2026-08-30; reported applied late "
           "September 2026, tree not confirmed)",
           "<20260910-gmem-inplace-conversion-v13-0-dd6fbf94f4e1@google.com>",
           zero_in_get_pfn=True, populate_gets_folio_first=True, populate_marks_uptodate=False,
           invalidate_scope="range", busy_if_mapped=True, drains_lru=True,
           arch_convert_hooks=True),
)})


def series(name: str) -> Series:
    return SERIES_RECORDS[name]
