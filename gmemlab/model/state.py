"""The state of one VM with one guest_memfd, and the configuration that picks its rules.

What is modelled (safety, one guest_memfd bound at gpa 0, page granularity):
the KVM attribute of each page, its folio (allocated, up to date, contents), the host
page tables and extra references that reach it, the trusted entity's (TE's) view of it,
and whether the launch measured it; per VM, whether launch was finalized. Left out:
the guest's stage-2 mapping (nothing observable depends on it: a guest access faults
the page in as needed, prepare is idempotent, and conversions zap it), the memory of
huge folios (every page keeps its own Page fields; with the huge_folios knob
VmState.folios records, per huge folio of the geometry Config.folio_pages, whether it is
still one folio: see folio_spans and step.huge_folio_rule), EINTR (no signals; an allocation failure,
ENOMEM, is a property of the event: gmemlab.model.step.FAIL), more than one
guest_memfd, memslot flags, memslots other than the guest_memfd's own (bound at gpa ==
offset, over the whole file unless replace_memslot moved it: Page.noslot), and the
guest's own page tables.

Every value here is immutable and hashable, so that a state can be a graph node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gmemlab.errors import UsageError

# --- contents -------------------------------------------------------------------
# A page holds one byte value (every byte alike, as in the trace format). Two more
# values stand for what is not a plaintext byte at all.
ZERO = 0
STALE = 256    # a fresh folio nobody zeroed: whatever the host used it for before
GARBAGE = 257  # not the plaintext: ciphertext, or plaintext seen through the wrong key

# --- trusted-entity state of a page ----------------------------------------------
TE_NONE = 0     # the TE does not hold the page (SNP: hypervisor-owned RMP entry; TDX: no S-EPT entry)
TE_PENDING = 1  # the TE holds it, the guest has not validated/accepted it yet
TE_VALID = 2    # the TE holds it and the guest may use it (SNP: validated; TDX: accepted)

TE_NAMES = {TE_NONE: "none", TE_PENDING: "pending", TE_VALID: "valid"}


def content_name(c: int) -> str:
    """A short, stable name for a content value.

    >>> content_name(0), content_name(65), content_name(STALE), content_name(GARBAGE)
    ('0', 'A', 'stale', 'garbage')
    """
    if c == STALE:
        return "stale"
    if c == GARBAGE:
        return "garbage"
    return chr(c) if 0x21 <= c <= 0x7E else str(c)


class Page(NamedTuple):
    """One index of the guest_memfd."""

    private: bool = False        # KVM's attribute: KVM_MEMORY_ATTRIBUTE_PRIVATE ("private as tracked by KVM")
    allocated: bool = False      # a folio backs the index
    uptodate: bool = False       # the folio was initialized (zeroed, or filled by populate)
    content: int = ZERO          # 0..255, STALE or GARBAGE; ZERO while not allocated
    loaded: int = ZERO           # ghost: what userspace last put here (host_write, legacy source); 0 = nothing
    mapped: tuple = ()           # host processes whose page tables map the page (sorted names)
    pins: int = 0                # unexpected references: GUP pins, vmsplice, IOMMU
    te: int = TE_NONE            # "private as tracked by the trusted entity"
    measured: bool = False       # part of the launch measurement
    dmap: bool = False           # in the host's direct map (only tracked with NO_DIRECT_MAP)
    # The gpa of this index (gpa == offset) is outside the guest_memfd's memslot: after
    # replace_memslot bound the file's memslot to a part of it only (docs/trace-format.md).
    # False everywhere until then, so every trace without replace_memslot, and every
    # exploration, is unchanged. Page-local on purpose (the engines need no new VM-wide
    # field); the memslot is one contiguous range, as replace_memslot makes it.
    noslot: bool = False
    # The folio had a memory error (memory_failure: PG_hwpoison). guest_memfd keeps it in
    # the file (kvm_gmem_error_folio returns MF_DELAYED: what to do is userspace's call);
    # punching the hole frees it. False everywhere unless a memory_failure event says so.
    poisoned: bool = False
    # A per-CPU LRU batch holds a reference to the folio: filemap_add_folio puts a new
    # folio on the lru_add batch with a reference of its own (folio_add_lru, mm/swap.c),
    # which goes when the batch drains (lru_drain). Only with the transient_refs knob;
    # False everywhere else, so every trace and exploration without it is unchanged.
    lru: bool = False


class Call(NamedTuple):
    """A call a thread has in flight (gmemlab.model.threads)."""

    thread: str
    event: object          # the call (an Event, without its "thread")
    k: int = 0             # steps it has taken
    done: int = 0          # populate: pages done so far
    locked: bool = False   # it holds the invalidate lock


class VmState(NamedTuple):
    """One VM and its guest_memfd. ``pages`` is empty until create_gmem succeeds."""

    created: bool = False
    gmem_flags: frozenset = frozenset()  # KVM_CREATE_GUEST_MEMFD flags of the live file
    pages: tuple = ()                    # tuple[Page, ...], index = offset // page_size
    finalized: bool = False              # KVM_SEV_SNP_LAUNCH_FINISH / KVM_TDX_FINALIZE_VM done
    # With the huge_folios knob: per huge folio of the geometry (folio_spans), whether it
    # is still one folio (True) or split into 4 KiB folios (False). () without the knob.
    folios: tuple = ()
    # Interleavings (gmemlab.model.threads): the calls threads have in flight (Call, by
    # thread name) and the thread holding the file's invalidate lock exclusively ("" for
    # none). Empty unless a call carries a "thread", so every atomic state is as before.
    threads: tuple = ()
    lock: str = ""

    def replace_pages(self, changes: dict) -> "VmState":
        """A copy with pages[i] = changes[i] for each i."""
        pages = list(self.pages)
        for i, p in changes.items():
            pages[i] = p
        return self._replace(pages=tuple(pages))


@dataclass(frozen=True)
class Config:
    """What picks the rules: proposal, platform, series and the knobs.

    >>> Config(platform="snp").series
    'v8'
    >>> Config(proposal="private_frist")
    Traceback (most recent call last):
    ...
    gmemlab.errors.UsageError: unknown proposal 'private_frist'; known: private-first, populate-converts, userspace-converts
    """

    proposal: str = "private-first"
    platform: str = "snp"
    series: str = "v8"
    page_size: int = 4096
    # Knob (the v9 alternative, docs/domain.md "Series"): a NULL-source populate of a page
    # that is not up to date fails with EOPNOTSUPP instead of being zeroed (v8) or
    # measured stale (v7).
    refuse_unprepared_populate: bool = False
    # Knob (populate-converts only): the order read literally from the call proposal
    # quoted in Michael Roth's "Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for
    # KVM_SET_MEMORY_ATTRIBUTES2" (2026-04-07) ("check that the memory is shared, then
    # also set the memory to private after the populate"): the TE takes the page first,
    # conversion follows.
    # Default False: convert first, as docs/domain.md describes the proposal.
    convert_after_populate: bool = False
    # Knob: the NO_DIRECT_MAP series ("guest_memfd: Add NO_DIRECT_MAP flag", a separate
    # series) is applied. Without it KVM_CREATE_GUEST_MEMFD refuses the flag (EINVAL).
    no_direct_map_series: bool = False
    # Knob: the file is backed by huge folios (HugeTLB / THP support in the in-place
    # conversion work). A metric, not a rule of the uAPI: see step.huge_folio_rule.
    huge_folios: bool = False
    # The huge folios' geometry, in pages of page_size (read only with huge_folios): the
    # file is cut into folios of folio_pages pages from offset 0; 0 (the default) is one
    # folio over the whole file. At model scale a page stands for whatever the bounds
    # make it: folio_pages=2 with 2 pages is "one 2 MiB folio of two 1 MiB halves", and
    # equally a 1 GiB folio (docs/domain.md, "Huge folios"). Pages past the last whole
    # folio are 4 KiB folios that never merge.
    folio_pages: int = 0
    # Knob: the explorer also tries each conversion with its allocation of tracking
    # entries failing (ENOMEM, docs/domain.md, uAPI facts). Replay needs no knob: a trace that
    # observed ENOMEM says so in its "expect".
    allocation_failures: bool = False
    # Knob: kvm.gmem_in_place_conversion is off (a 0444 module parameter; a trace header's
    # "in_place": false). KVM_SET_MEMORY_ATTRIBUTES2 is ENOTTY (kvm_gmem_ioctl, post-v8
    # virt/kvm/guest_memfd.c), INIT_SHARED is refused on snp/tdx, and private memory is
    # tracked per VM: the legacy flow with a separate source (step.create_gmem, populate).
    in_place_off: bool = False
    # Knobs of interleavings (gmemlab.model.threads; design questions of the races
    # argued after v8: docs/domain.md, "After v8"). GUP-fast does not read the page
    # table entry again after taking its reference; the conversion checks references
    # before it unmaps (the order reversed: step.set_attributes_plan); populate keeps
    # the invalidate lock from its first page to its last.
    gup_fast_no_recheck: bool = False
    check_before_unmap: bool = False
    populate_holds_lock: bool = False
    # Knob: a reference, once taken, stays (a longterm GUP pin: an io_uring fixed buffer,
    # VFIO DMA): nothing unpins. Which references can stay forever is argued after v8.
    pins_forever: bool = False
    # Knob: the explorer also tries a memory error in each page's folio (memory_failure ->
    # kvm_gmem_error_folio; with --interleave, the handler is a thread of its own).
    memory_failures: bool = False
    # Knob: references nobody holds on purpose count too (which references count is argued
    # after v8): a new folio sits in a per-CPU LRU batch that holds a reference until the
    # batch drains (Page.lru, the lru_drain event). v5-v8's refcount check counts it
    # (EAGAIN: "userspace is supposed to retry"); v13's drains the batches first.
    transient_refs: bool = False

    def __post_init__(self):
        # The names live in the one registry (gmemlab.model.vocab), imported here rather
        # than at the top: the registry reads the platforms, which read this module.
        from gmemlab.model import vocab
        vocab.proposal(self.proposal)
        vocab.known("platform", self.platform, vocab.PLATFORMS)
        vocab.known("series", self.series, vocab.SERIES)
        ps = self.page_size
        if type(ps) is not int or ps < 4096 or ps & (ps - 1):
            raise UsageError(f"page_size must be a power of two >= 4096, got {ps!r}")
        fp = self.folio_pages
        if type(fp) is not int or fp < 0:
            raise UsageError(f"folio_pages must be an integer >= 0 (0: one folio over the file), got {fp!r}")

    @property
    def has_te(self) -> bool:
        """Whether the platform has a trusted entity (docs/domain.md "Two meanings of private")."""
        from gmemlab.model.platforms import PLATFORMS
        return PLATFORMS[self.platform].has_te

    @property
    def features(self):
        """The series' record (gmemlab.model.series.Series): the rules read its features."""
        from gmemlab.model.series import SERIES_RECORDS
        return SERIES_RECORDS[self.series]

    @property
    def rules(self):
        """The proposal's rules (gmemlab.model.proposals.Proposal), built-in or a variant."""
        from gmemlab.model import vocab
        return vocab.proposal(self.proposal)

    @property
    def knobs(self) -> list[str]:
        """The knobs that are on, in the registry's order."""
        from gmemlab.model import vocab
        return vocab.knobs_on(self)

    def label(self) -> str:
        geometry = [f"folio_pages={self.folio_pages}"] if self.huge_folios and self.folio_pages else []
        return "/".join([self.proposal, self.platform, self.series] + self.knobs + geometry)


def folio_spans(npages: int, folio_pages: int) -> list[range]:
    """The page indices of each huge folio of a file of npages pages: folios of
    folio_pages pages from offset 0 (0: one over the whole file); a tail shorter than a
    folio is in none (4 KiB folios: a huge folio is naturally aligned and whole).

    >>> folio_spans(5, 2), folio_spans(3, 0), folio_spans(1, 2)
    ([range(0, 2), range(2, 4)], [range(0, 3)], [])
    """
    fp = folio_pages or npages
    if fp <= 0:
        return []
    return [range(i, i + fp) for i in range(0, npages - fp + 1, fp)]


def folio_count(npages: int, folio_pages: int) -> int:
    """len(folio_spans(npages, folio_pages)), without listing them (a file may be huge)."""
    fp = folio_pages or npages
    return npages // fp if fp > 0 else 0


def fresh_gmem(npages: int, flags: frozenset, huge: bool = False, folio_pages: int = 0) -> VmState:
    """The state right after KVM_CREATE_GUEST_MEMFD succeeded.

    Every index starts shared with INIT_SHARED, private without it (docs/domain.md, uAPI
    facts; selftests init_shared / init_private). Attributes exist before any folio
    does (selftests before_allocation_shared / _private).
    """
    page = Page(private="INIT_SHARED" not in flags)
    folios = (True,) * folio_count(npages, folio_pages) if huge else ()
    return VmState(created=True, gmem_flags=frozenset(flags), pages=(page,) * npages, folios=folios)
