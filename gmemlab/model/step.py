"""The semantics: one function, (config, state, event) -> (state', outcome, effects).

Each op reads as its kernel counterpart does: checks that fail with an errno first, then
the updates, and what stays as it was is left untouched (NamedTuple._replace). The
outcome has the shape of a trace's "expect" (docs/trace-format.md). ``effects`` names what
happened inside the call that the state alone cannot show (the TE took a shared page,
KVM wrote a private page, something stale reached the guest); the transition invariants
of gmemlab.invariants judge them.

Modelling assumptions are named A-... and listed in gmemlab.model.ASSUMPTIONS.

>>> from gmemlab.model.state import Config, VmState
>>> cfg = Config(platform="sw_protected")
>>> s, out, _ = step(cfg, VmState(), {"op": "create_gmem", "size": 8192, "flags": ("MMAP",)})
>>> out
{'ret': 0}
>>> step(cfg, s, {"op": "host_read", "offset": 0})[1]   # created private: no host access
{'signal': 'SIGBUS'}
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from gmemlab.model.platforms import PLATFORMS
from gmemlab.model.state import (GARBAGE, STALE, TE_NONE, TE_PENDING, ZERO,
                                 Config, Page, VmState, folio_spans, fresh_gmem)

# An event may carry "fail": "ENOMEM": an allocation inside the call fails. The state
# cannot say when that happens; replay sets it where a trace observed ENOMEM, the
# explorer tries it with the allocation_failures knob. Only conversions allocate.
FAIL = "fail"

# The largest loff_t: the kernel reads a u64 offset or size above it as negative.
LOFF_MAX = (1 << 63) - 1

# Effects (see the module docstring).
TE_TOOK_SHARED = "te_took_shared"              # the TE took a page KVM tracks as shared
KVM_WROTE_PRIVATE = "kvm_wrote_private"        # generic KVM code changed a private page's data
PLATFORM_COPIED = "platform_copied"            # platform code copied a legacy source in
MEASURED_NOT_LOADED = "measured_not_loaded"    # the launch measured something userspace did not load
STALE_EXPOSED = "stale_exposed"                # stale host data reached the guest or the measurement
HOST_TOUCHED_TE = "host_touched_te_private"    # a host access or pin reached a TE-private page
FREED_TE_OWNED = "freed_te_owned"              # the host freed a folio the TE still owned
SLOT_REPLACED_PINNED = "slot_replaced_pinned"  # replace_memslot made a referenced shared range private to the guest

NO_EFFECTS: frozenset = frozenset()


class Result(NamedTuple):
    state: VmState
    outcome: dict
    effects: frozenset = NO_EFFECTS


def ret(errno: int | str = 0, **extra) -> dict:
    return {"ret": errno, **extra}


OK = {"ok": True}


# --- helpers ------------------------------------------------------------------------

def _span(cfg: Config, s: VmState, offset: int, size: int) -> range | None:
    """The page indices of an aligned, in-bounds, non-empty range, or None."""
    ps = cfg.page_size
    if size == 0 or offset % ps or size % ps or offset + size > len(s.pages) * ps:
        return None
    return range(offset // ps, (offset + size) // ps)


def _get_pfn(cfg: Config, s: VmState, page: Page, zero: bool) -> Page:
    """__kvm_gmem_get_pfn: allocate the folio if needed; zero it if asked and not up to date.

    A folio nobody zeroed holds stale host data (docs/domain.md, Populate). The direct map is
    tracked only for a NO_DIRECT_MAP file, whose private folios leave it (assumption
    A-direct-map: removal on allocation as private and on conversion to private,
    restoration on conversion to shared). With the transient_refs knob a new folio
    starts in a per-CPU LRU batch, which holds a reference (_lru_batched).
    """
    if not page.allocated:
        dmap = "NO_DIRECT_MAP" in s.gmem_flags and not page.private
        page = page._replace(allocated=True, uptodate=False, content=STALE, dmap=dmap,
                             lru=_lru_batched(cfg))
    if zero and not page.uptodate:
        # Assumption A-init: initializing a folio that holds no data yet is not "writing
        # a private page's contents" (kvm_never_writes_private); every series does it on
        # the guest fault (kvm_gmem_get_pfn).
        page = page._replace(uptodate=True, content=ZERO)
    return page


def _lru_batched(cfg: Config) -> bool:
    """Whether a new folio's LRU batch reference is state (Page.lru): with the
    transient_refs knob, where the series' refcount check does not drain the batches
    first (Series.drains_lru: there no rule could see it) and the folio is not huge
    (folio_may_be_lru_cached, mm/swap.h: a large folio skips the batches; assumption
    A-lru-batch)."""
    return cfg.transient_refs and not cfg.features.drains_lru and not cfg.huge_folios


def _host_fault(cfg: Config, s: VmState, page: Page, process: str) -> Page:
    """kvm_gmem_fault_user_mapping on a shared page: allocate zeroed, map in the process."""
    page = _get_pfn(cfg, s, page, zero=True)
    if process not in page.mapped:
        page = page._replace(mapped=tuple(sorted(page.mapped + (process,))))
    return page


def _guest_fault(cfg: Config, s: VmState, page: Page) -> Page:
    """kvm_gmem_get_pfn on the guest fault path: zero if not up to date, prepare if private.

    In v13 the hook is kvm_arch_gmem_make_private, called on every kvm_gmem_get_pfn of a
    private index (post-v8 virt/kvm/guest_memfd.c); SNP's sev_gmem_make_private, like
    sev_gmem_prepare, leaves an already-assigned RMP entry alone, so Platform.prepare
    (idempotent) is the rule in every series."""
    page = _get_pfn(cfg, s, page, zero=True)
    if page.private:
        page = PLATFORMS[cfg.platform].prepare(page)
    return page


# --- ops ----------------------------------------------------------------------------

def create_gmem(cfg: Config, s: VmState, ev: dict) -> Result:
    """KVM_CREATE_GUEST_MEMFD, bound to a memslot at gpa 0.

    Unknown flags, size <= 0 or not page aligned: EINVAL (docs/domain.md, uAPI facts; selftest
    guest_memfd_test.c test_create_guest_memfd_invalid; kvm_gmem_create checks
    size <= 0 || !PAGE_ALIGNED(size)). INIT_SHARED without MMAP is accepted (the flags
    loop of guest_memfd_test.c). Assumption A-one-gmem: a second successful create
    replaces the modelled file.
    """
    flags = frozenset(ev.get("flags", ()))
    size = ev["size"]
    # kvm_gmem_create takes the u64 size as a loff_t: 2**63 and above is negative, so
    # "size <= 0" refuses it too (virt/kvm/guest_memfd.c, Linux 6.18; seen by kvm-run).
    if size <= 0 or size > LOFF_MAX or size % cfg.page_size:
        return Result(s, ret("EINVAL"))
    if "NO_DIRECT_MAP" in flags and not cfg.no_direct_map_series:
        return Result(s, ret("EINVAL"))  # an unknown flag without that series
    if cfg.in_place_off and "INIT_SHARED" in flags and PLATFORMS[cfg.platform].has_te:
        # kvm.gmem_in_place_conversion off: shared memory of a VM with private memory comes
        # from a separate source (private tracked per VM), so INIT_SHARED is not a
        # supported flag on snp/tdx (docs/domain.md, After v8; the v8 review).
        return Result(s, ret("EINVAL"))
    return Result(fresh_gmem(size // cfg.page_size, flags, huge=cfg.huge_folios,
                             folio_pages=cfg.folio_pages), ret(0))


# --- range calls -------------------------------------------------------------------
#
# A call over a range of pages is written as a plan: the checks that need no page (the
# uAPI's validation, VM-wide refusals) give an outcome at once; the rest is a list of
# phases, each a function of ONE page, run over the range in order:
#   Skip(pred)   if pred holds on every page of the range: return the plan's outcome;
#   Stop(check)  at the first page whose check names an errno: return {"ret": errno,
#                "error_offset": that page's offset}, with what earlier phases did;
#   Each(update) every page of the range becomes update(page) -> (page, effects).
# step() runs a plan with run_plan; the explorer's table engine evaluates each phase
# once per page value and composes the same phases over a batch of states
# (gmemlab.explore.engines). So a rule such as "unmap, then EAGAIN at the first busy
# page" exists once, here: reordering the phases reaches every engine.


# Each phase has a name for a reader: what the kernel does there (an interleaved call
# runs one phase a step, and its steps are drawn under these names: threads.step_name).
class Skip(NamedTuple):
    pred: Callable[[Page], bool]
    name: str = ""


class Stop(NamedTuple):
    check: Callable[[Page], str | None]
    name: str = ""


class Each(NamedTuple):
    update: Callable[[Page], tuple[Page, frozenset]]
    name: str = ""


class Plan(NamedTuple):
    span: range            # the page indices the phases run over
    phases: tuple          # Skip | Stop | Each, in order
    outcome: dict          # what the call returns when no phase stops it


def run_phase(cfg: Config, s: VmState, plan: Plan, k: int) -> tuple[VmState, dict | None, frozenset]:
    """Phase k of a plan over its range: (the state after it, the call's outcome if the
    phase ends the call, else None, the effects). A Skip ends the call (with the plan's
    outcome) when every page of the range passes it; a Stop at its first page with an
    errno; an Each updates every page; after the last phase the call returns the plan's
    outcome. run_plan runs every phase at once; an interleaved call one phase a step
    (gmemlab.model.threads)."""
    phase = plan.phases[k]
    last = k == len(plan.phases) - 1
    if isinstance(phase, Skip):
        ends = all(phase.pred(s.pages[i]) for i in plan.span)
        return s, (plan.outcome if ends or last else None), NO_EFFECTS
    if isinstance(phase, Stop):
        for i in plan.span:
            errno = phase.check(s.pages[i])
            if errno is not None:
                return s, ret(errno, error_offset=i * cfg.page_size), NO_EFFECTS
        return s, (plan.outcome if last else None), NO_EFFECTS
    pages = list(s.pages)
    effects: set[str] = set()
    for i in plan.span:
        pages[i], eff = phase.update(pages[i])
        effects |= eff
    return s._replace(pages=tuple(pages)), (plan.outcome if last else None), frozenset(effects)


def run_plan(cfg: Config, s: VmState, plan: Plan) -> Result:
    """Run a plan's phases over its range (see above)."""
    effects: frozenset = NO_EFFECTS
    for k in range(len(plan.phases)):
        s, outcome, eff = run_phase(cfg, s, plan, k)
        effects |= eff
        if outcome is not None:
            return Result(s, outcome, effects)
    return Result(s, plan.outcome, effects)


def _v5_mode(cfg: Config, flags: tuple) -> str | None:
    return flags[0] if flags else None


def set_attributes_plan(cfg: Config, s: VmState, ev: dict) -> Result | Plan:
    """KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd (docs/domain.md, uAPI facts), as a plan."""
    flags = ev.get("flags", ())
    to_private = ev["attributes"] == "private"
    offset = ev["offset"]
    platform = PLATFORMS[cfg.platform]
    if not platform.conversion_ioctl:
        # Linux 6.18 (platform "default"): the guest_memfd has no ioctls (kvm_gmem_fops has
        # no unlocked_ioctl, virt/kvm/guest_memfd.c), so vfs_ioctl answers ENOTTY (fs/ioctl.c).
        return Result(s, ret("ENOTTY"))
    if cfg.in_place_off:
        # kvm_gmem_ioctl: KVM_SET_MEMORY_ATTRIBUTES2 is ENOTTY while gmem_in_place_conversion
        # is off (post-v8 virt/kvm/guest_memfd.c); attributes are then per VM (assumption
        # A-per-vm-private).
        return Result(s, ret("ENOTTY"))
    series = cfg.features
    # v6 dropped the content modes; v7 requires flags == 0. v5: ZERO|PRESERVE is EINVAL.
    if flags and (not series.content_modes or len(flags) > 1):
        return Result(s, ret("EINVAL"))
    span = _span(cfg, s, offset, ev["size"])
    if span is None:
        return Result(s, ret("EINVAL"))
    mode = _v5_mode(cfg, flags)
    if mode is not None:
        # The mode checks run before the early return (RFC v5).
        if mode == "ZERO" and to_private:
            return Result(s, ret("EOPNOTSUPP", error_offset=offset))
        if not platform.supports_mode(mode, to_private, s.finalized):
            return Result(s, ret("EOPNOTSUPP", error_offset=offset))
    # If the whole range already has the attribute: 0, nothing done.
    phases: list = [Skip(lambda p: p.private == to_private, f"all {ev['attributes']} already?")]
    if ev.get(FAIL) == "ENOMEM":
        # The tracking entries could not be allocated: ENOMEM with error_offset = start,
        # before anything is unmapped or converted (docs/domain.md, uAPI facts). Nothing in
        # the state says when an allocation fails: the event does (see FAIL).
        phases.append(Stop(lambda p: "ENOMEM", "tracking entries: ENOMEM"))
    if to_private:
        # Unmap the range from every host page table first: this happens even when the
        # call then fails (selftest elevated_refcount; docs/domain.md). Then the first page
        # with unexpected references fails the call with EAGAIN, no attribute changed.
        check = Stop(_busy_mapped if series.busy_if_mapped else _busy, "reference check")
        # Knob check_before_unmap: the design question of the other order (a check that
        # fails then leaves the host's mappings as they were).
        unmap = Each(_unmap, "unmap")
        phases += [check, unmap] if cfg.check_before_unmap else [unmap, check]
    scramble = series.content_modes and mode is None and not platform.has_te
    # Which pages of a range to shared lose their private stage-2 mappings (Series.
    # invalidate_scope): v13 invalidates the whole range with KVM_FILTER_PRIVATE and runs
    # kvm_arch_gmem_make_shared on every folio in it (__kvm_gmem_set_attributes,
    # kvm_gmem_make_shared), so a page of the range that is shared already but held by the
    # TE (reachable when a proposal lets the TE take a KVM-shared page) is released too.
    # To private the filter is KVM_FILTER_SHARED: no TE-held page is touched (and the model
    # tracks no shared stage-2 mapping: see state.py).
    whole_range = series.invalidate_scope == "range" and not to_private
    no_direct_map = "NO_DIRECT_MAP" in s.gmem_flags

    def convert(page: Page) -> tuple[Page, frozenset]:
        before, effects = page, NO_EFFECTS
        if page.private == to_private:
            if not whole_range:
                return page, NO_EFFECTS
            page = _invalidate_private(series, platform, page)
            return (page._replace(loaded=page.content) if page.content != before.content else page), NO_EFFECTS
        page = page._replace(private=to_private)
        if not to_private:
            page = (_invalidate_private(series, platform, page) if series.invalidate_scope == "range"
                    else platform.invalidate(page))
        if page.allocated:
            if no_direct_map:
                page = page._replace(dmap=not to_private)
            if scramble:
                # RFC v5 with flags 0 on sw_protected: contents are not preserved.
                if to_private and page.uptodate:
                    effects = frozenset({KVM_WROTE_PRIVATE})
                page = page._replace(content=GARBAGE)
            elif mode == "ZERO":
                page = page._replace(content=ZERO, uptodate=True)
        if page.content != before.content:
            # The uAPI says what a conversion does to contents (TE invalidation, content
            # modes), so userspace now expects what is there (ghost variable "loaded").
            page = page._replace(loaded=page.content)
        return page, effects
    phases.append(Each(convert, "attribute update" if to_private else "attribute update, invalidate"))
    return Plan(span, tuple(phases), ret(0))


def _unmap(page: Page) -> tuple[Page, frozenset]:
    """unmap_mapping_pages: the page leaves every host page table."""
    return (page._replace(mapped=()) if page.mapped else page), NO_EFFECTS


def _busy(page: Page) -> str | None:
    """The refcount check: a page with unexpected references (GUP pins, vmsplice, IOMMU),
    and, with the transient_refs knob, a folio still in an LRU batch: the check compares
    the folio's count with the page cache's own plus one (kvm_gmem_has_safe_refcount in
    the conversion series before v13), so a transient reference fails it too: "in case
    of unsafe refcounts, conversion operation immediately exits to userspace with EAGAIN
    and userspace is supposed to retry conversion" (Vishal Annapurve,
    <CAGtprH9Wj7YW-_sfGQfwKHRXL-7fFStXiHn2O32ptXAFbFB8Tw@mail.gmail.com>)."""
    return "EAGAIN" if page.pins or page.lru else None


def _busy_mapped(page: Page) -> str | None:
    """v13's __folio_has_outstanding_references: DMA-pinned or still mapped is busy at once;
    otherwise the LRU batches are drained once and the count re-checked. The model's pins
    (GUP pins, vmsplice, IOMMU) all stay after the drain; a batch's reference goes (so
    Page.lru is never set where the series drains: _lru_batched); and the unmap before
    the check leaves nothing mapped: so the verdicts are those of _busy without the
    batches (a mapped page would be busy here, though)."""
    return "EAGAIN" if page.pins or page.mapped else None


def _invalidate_private(series, platform, page: Page) -> Page:
    """A conversion to shared in a series that invalidates by range (v13): the page's
    private stage-2 mapping is zapped (Platform.zap_private: TDX removes the page from the
    TD, SNP's RMP entry is left as it is), then kvm_arch_gmem_make_shared runs on its folio
    (Platform.make_shared: SNP returns the RMP entry to hypervisor-owned)."""
    page = platform.zap_private(page)
    if series.arch_convert_hooks:
        page = platform.make_shared(page)
    return page


def set_attributes(cfg: Config, s: VmState, ev: dict) -> Result:
    plan = set_attributes_plan(cfg, s, ev)
    return plan if isinstance(plan, Result) else run_plan(cfg, s, plan)


def _host_access(cfg: Config, s: VmState, ev: dict, write: bool) -> Result:
    """A host process touches one page through its mmap of the guest_memfd."""
    if "MMAP" not in s.gmem_flags:
        return Result(s, ret("ENODEV"))  # mmap without GUEST_MEMFD_FLAG_MMAP
    i = ev["offset"] // cfg.page_size
    if i >= len(s.pages):
        return Result(s, {"signal": "SIGBUS"})  # selftest fault_overflow
    page = s.pages[i]
    if page.private:
        return Result(s, {"signal": "SIGBUS"})  # selftest fault_private
    if page.poisoned and ev.get("process", "vmm") not in page.mapped:
        # kvm_gmem_fault_user_mapping: a hwpoisoned folio is VM_FAULT_HWPOISON (SIGBUS);
        # memory_failure unmapped it from every process (see memory_failure below).
        return Result(s, {"signal": "SIGBUS"})
    page = _host_fault(cfg, s, page, ev.get("process", "vmm"))
    if page.te != TE_NONE:
        # Only reachable when a proposal lets the TE hold a KVM-shared page.
        page, outcome = PLATFORMS[cfg.platform].host_touch_te_private(page, write)
        return Result(s.replace_pages({i: page}), outcome, frozenset({HOST_TOUCHED_TE}))
    if write:
        page = page._replace(content=ev["value"], loaded=ev["value"])
        return Result(s.replace_pages({i: page}), OK)
    value = page.content if page.content <= 255 else None
    return Result(s.replace_pages({i: page}), {"ok": True, "value": value})


def host_read(cfg, s, ev):
    return _host_access(cfg, s, ev, write=False)


def host_write(cfg, s, ev):
    return _host_access(cfg, s, ev, write=True)


def _covered(cfg: Config, s: VmState, offset: int, size: int) -> range | None:
    """Pages a host byte range touches (pin/unpin work on addresses, not pages)."""
    if size == 0:
        return None
    ps = cfg.page_size
    first, last = offset // ps, (offset + size - 1) // ps
    return range(first, last + 1) if last < len(s.pages) else None


def pin(cfg: Config, s: VmState, ev: dict) -> Result:
    """An extra reference on host-mapped pages (GUP, vmsplice, IOMMU).

    GUP faults the pages in; a private page refuses the fault, so the pin fails with
    EFAULT. Assumption A-pin-all-or-nothing: a failed pin takes no references.
    """
    if "MMAP" not in s.gmem_flags:
        return Result(s, ret("ENODEV"))
    span = _covered(cfg, s, ev["offset"], ev["size"])
    if span is None:
        return Result(s, ret("EFAULT") if ev["size"] else ret("EINVAL"))
    if any(s.pages[i].private for i in span):
        return Result(s, ret("EFAULT"))
    if any(s.pages[i].poisoned and ev.get("process", "vmm") not in s.pages[i].mapped for i in span):
        # GUP's fault meets VM_FAULT_HWPOISON (kvm_gmem_fault_user_mapping): -EHWPOISON
        # (mm/gup.c, vm_fault_to_errno). Assumption A-pin-all-or-nothing: no reference.
        return Result(s, ret("EHWPOISON"))
    process = ev.get("process", "vmm")
    changes, effects = {}, set()
    for i in span:
        page = _host_fault(cfg, s, s.pages[i], process)
        if page.te != TE_NONE:
            effects.add(HOST_TOUCHED_TE)
        changes[i] = page._replace(pins=page.pins + 1)
    return Result(s.replace_pages(changes), ret(0), frozenset(effects))


def unpin(cfg: Config, s: VmState, ev: dict) -> Result:
    """Drop one extra reference per page. Assumption A-unpin-orphan: a page with no
    modelled pin is a no-op (its reference may belong to a folio punched away)."""
    if "MMAP" not in s.gmem_flags:
        return Result(s, ret("ENODEV"))  # nothing could have been pinned through an mmap
    span = _covered(cfg, s, ev["offset"], ev["size"])
    if span is None:
        return Result(s, ret("EINVAL"))
    changes = {i: s.pages[i]._replace(pins=s.pages[i].pins - 1) for i in span if s.pages[i].pins}
    return Result(s.replace_pages(changes), ret(0))


def punch_hole_plan(cfg: Config, s: VmState, ev: dict) -> Result | Plan:
    """fallocate(PUNCH_HOLE|KEEP_SIZE): free the folios, keep the attributes.

    Offset and length must be page aligned (EINVAL; selftest invalid_punch_hole); at or
    past the end of the file it succeeds. The next fault gets a zero page (selftest
    truncate); on SNP a re-faulted private page must be validated again.
    Assumption A-punch-drops-pins: references on a punched folio no longer count
    against the index (they hold the detached folio). Half of it is code: the post-v8
    kvm_gmem_has_outstanding_references looks only at folios still in the mapping
    (filemap_get_folios), and kvm_gmem_punch_hole truncates with no refcount check
    (virt/kvm/guest_memfd.c); that truncation detaches a referenced folio is
    mm/truncate.c, not read.
    """
    ps, offset, size = cfg.page_size, ev["offset"], ev["size"]
    # vfs_fallocate (fs/open.c, Linux 6.18) checks first: offset and len are loff_t, so a
    # u64 at or above 2**63 is negative: offset < 0 or len <= 0 is EINVAL, and an end past
    # s_maxbytes (LLONG_MAX) is EFBIG; then kvm_gmem_fallocate's alignment check (seen by kvm-run).
    if offset > LOFF_MAX or size == 0 or size > LOFF_MAX:
        return Result(s, ret("EINVAL"))
    if offset + size > LOFF_MAX:
        return Result(s, ret("EFBIG"))
    if size == 0 or offset % ps or size % ps:
        return Result(s, ret("EINVAL"))
    first = offset // ps
    last = min((offset + size) // ps, len(s.pages))
    platform = PLATFORMS[cfg.platform]
    release = platform.invalidate
    if platform.free_by_filter and not any(s.pages[i].private for i in range(first, max(first, last))):
        # CCA: no KVM-private page in the range, so the invalidation filter is
        # KVM_FILTER_SHARED only and nothing undelegates (Cca in platforms.py). This
        # looks at the range's pages: the fast engine steps such a punch page by page.
        release = _keep

    def free(page: Page) -> tuple[Page, frozenset]:
        # kvm_gmem_punch_hole (virt/kvm/guest_memfd.c, kvm-x86 5e38e1bd4e7b and the
        # post-v8 copy): kvm_gmem_invalidate_start zaps the range's stage-2 mappings
        # (TDX: the S-EPT entry goes, TDH.MEM.PAGE.REMOVE), then
        # truncate_inode_pages_range drops the folio, whose free_folio hook
        # (kvm_gmem_free_folio -> kvm_arch_gmem_reclaim; SNP: sev_gmem_invalidate,
        # rmp_make_shared) gives the page back to the host only after the TE let it go.
        # The platform's invalidate is that release; FREED_TE_OWNED says it did not.
        released = release(page) if page.allocated else page
        freed, _ = _free_folio(page)
        return freed, (frozenset({FREED_TE_OWNED}) if released.te != TE_NONE else NO_EFFECTS)
    return Plan(range(first, max(first, last)), (Each(free, "invalidate, free"),), ret(0))


def _keep(page: Page) -> Page:
    return page


def _free_folio(page: Page) -> tuple[Page, frozenset]:
    """The index after its folio is freed: only the attribute stays.

    What the TE loses: kvm_gmem_punch_hole first invalidates the range with both filters
    (kvm_gmem_get_all_gfns_filter, post-v8 virt/kvm/guest_memfd.c; every series), so a
    platform whose zap releases the page (Platform.zap_releases_te: TDX's S-EPT removal)
    has let it go before truncation; SNP's RMP entry survives the zap and is returned to
    hypervisor-owned when the folio is freed (sev_gmem_invalidate via free_folio /
    kvm_arch_gmem_reclaim). Either way the freed folio belongs to no TE."""
    return Page(private=page.private), NO_EFFECTS


def punch_hole(cfg: Config, s: VmState, ev: dict) -> Result:
    plan = punch_hole_plan(cfg, s, ev)
    return plan if isinstance(plan, Result) else run_plan(cfg, s, plan)


def populate(cfg: Config, s: VmState, ev: dict) -> Result:
    """kvm_gmem_populate via KVM_SEV_SNP_LAUNCH_UPDATE / KVM_TDX_INIT_MEM_REGION.

    Per page, in order: the proposal's destination check (EINVAL), the proposal's
    conversion if it has one, __kvm_gmem_get_pfn (v8 zeroes a page not up to date:
    "KVM: guest_memfd: Zero page while getting pfn"), the platform's post_populate.
    It stops at the first failing page; the platform turns (error, pages done) into the
    ioctl's return.
    """
    r = _populate(cfg, s, ev)
    if isinstance(r, Result):
        return r
    post, err, done, effects = r
    return Result(post, ret(PLATFORMS[cfg.platform].populate_ret(err, done), done=done), effects)


def _populate_checks(cfg: Config, s: VmState, ev: dict) -> Result | None:
    """populate's checks before its loop over the pages: a Result where one refuses the
    call, else None."""
    platform = PLATFORMS[cfg.platform]
    if platform.populate_ioctl is None:
        return Result(s, ret("ENOTTY"))  # Assumption A-sw-no-launch: no launch ioctls
    if platform.populate_requires_source and ev.get("src") != "buffer":
        # CCA: kvm_arm_rmi_populate refuses source_uaddr == 0 with its argument checks,
        # before the Realm's state is looked at (Cca in platforms.py).
        return Result(s, ret(platform.no_source_errno, done=0))
    ps, offset, size = cfg.page_size, ev["offset"], ev["size"]
    if size == 0 or offset % ps or size % ps:
        return Result(s, ret("EINVAL", done=0))
    if s.finalized:
        # After the argument checks (snp_launch_update's len/flags/type checks; TDX's
        # order does not matter: both answers are EINVAL). TDX: tdx_vcpu_unlocked_ioctl
        # and tdx_vcpu_init_mem_region refuse a RUNNABLE TD with EINVAL ("Once TD is
        # finalized, the initial guest memory is fixed"). SNP: no launch-state check
        # (kvm-x86 sev.c 1a27afa0511e; "[PATCH] KVM: SEV: Track SNP launch state and
        # disallow invalid userspace interactions" would add one, not merged there):
        # kvm_gmem_populate fails on the first page and snp_launch_update returns EIO
        # (Snp.finalized_populate_errno; the firmware's refusal is assumption
        # A-snp-launch-state). Not modelled: SNP's memslot check runs before it too.
        # CCA: realm_ensure_created refuses an active Realm with EBUSY.
        return Result(s, ret(platform.finalized_populate_errno, done=0))
    first = offset // ps
    if first >= len(s.pages) or s.pages[first].noslot:
        # The start gfn has no guest_memfd memslot: EINVAL before any page
        # (snp_launch_update: gfn_to_memslot + kvm_slot_can_be_private, sev.c;
        # kvm_gmem_populate: kvm_slot_has_gmem, virt/kvm/guest_memfd.c, which is also
        # what tdx_vcpu_init_mem_region's first call meets).
        return Result(s, ret("EINVAL", done=0))
    return None


def _populate_page(cfg: Config, s: VmState, pages: list, ev: dict, i: int) -> tuple[str | None, bool, frozenset]:
    """populate's work on page i (pages: the file's pages, updated in place): (the error
    that stops the call or None, whether the call ends here without one, effects). The
    loop of _populate calls it page by page; an interleaved populate one page a step
    (gmemlab.model.threads), with the other threads' steps in between."""
    platform = PLATFORMS[cfg.platform]
    proposal = cfg.rules
    series = cfg.features
    # Assumption A-unknown-src: a recording's src "unknown" is replayed in place (the
    # in-place series' sev.c passes src = NULL for a guest_memfd memslot that supports
    # shared memory); the trace still says it is unknown.
    src = ev["value"] if ev.get("src") == "buffer" else None
    effects: set[str] = set()
    err = None
    if i >= len(pages) or pages[i].noslot:
        # The range ran past the end of the guest_memfd memslot (gpa == offset, so
        # the end of the file is the end of the slot unless replace_memslot moved
        # it). SNP: kvm_gmem_populate clamped npages to the slot, so the call ends
        # here without an error; TDX: the next one-page call finds no slot, EINVAL
        # (Platform.populate_clamps_to_slot).
        if not platform.populate_clamps_to_slot:
            err = "EINVAL"
        return err, True, frozenset(effects)
    page = pages[i]
    if page.poisoned:
        # __kvm_gmem_get_pfn: folio_test_hwpoison -> -EHWPOISON, kvm_gmem_populate stops.
        return "EHWPOISON", True, frozenset(effects)
    unprepared = not page.uptodate
    if series.populate_gets_folio_first:
        # v13 __kvm_gmem_populate: __kvm_gmem_get_pfn (allocate; zero if not up to date)
        # runs before the destination's private check, so a refused page is left
        # allocated and zeroed.
        page = _get_pfn(cfg, s, page, zero=series.zero_in_get_pfn)
        pages[i] = page
    if page.private != proposal.populate_wants_private:
        err = "EINVAL"
        return err, True, frozenset(effects)
    convert_now = proposal.populate_converts and not cfg.convert_after_populate
    convert_later = proposal.populate_converts and cfg.convert_after_populate
    if convert_now:
        page, err = _populate_convert(s, page, ev, proposal.populate_busy_errno)
        pages[i] = page
        if err:
            return err, True, frozenset(effects)
    if src is None and cfg.refuse_unprepared_populate and unprepared:
        err = "EOPNOTSUPP"  # the v9 alternative (knob), instead of the zeroing
        return err, True, frozenset(effects)
    if not series.populate_gets_folio_first:
        page = _get_pfn(cfg, s, page, zero=series.zero_in_get_pfn)
    before = page
    if src is None and cfg.in_place_off and platform.legacy_null_src_errno:
        # Private memory tracked per VM: the platform's post_populate refuses a NULL
        # source (Platform.legacy_null_src_errno).
        page, err = page, platform.legacy_null_src_errno
    else:
        page, err = platform.post_populate(page, src)
    if not err and series.populate_marks_uptodate:
        page = page._replace(uptodate=True)  # folio_mark_uptodate after post_populate (v5-v8)
    pages[i] = page
    if err:
        return err, True, frozenset(effects)  # the folio stays allocated; the TE did not take it
    if not page.private:
        effects.add(TE_TOOK_SHARED)
    if src is None:
        if before.content == STALE:
            effects.add(STALE_EXPOSED)
        if before.content != before.loaded:
            effects.add(MEASURED_NOT_LOADED)
    else:
        page = page._replace(loaded=src)
        pages[i] = page
        if page.private:
            effects.add(PLATFORM_COPIED)
    if convert_later:
        page, err = _populate_convert(s, page, ev, proposal.populate_busy_errno)
        pages[i] = page
        if err:
            return err, True, frozenset(effects)
    return None, False, frozenset(effects)


def _populate(cfg: Config, s: VmState, ev: dict) -> Result | tuple[VmState, str | None, int, frozenset]:
    """populate up to the platform's return: a Result for the checks before the loop,
    else (state, kvm_gmem_populate's error or None, pages done, effects)."""
    r = _populate_checks(cfg, s, ev)
    if r is not None:
        return r
    ps = cfg.page_size
    first = ev["offset"] // ps
    pages = list(s.pages)
    effects: frozenset = NO_EFFECTS
    err, done = None, 0
    for i in range(first, first + ev["size"] // ps):
        err, ends, eff = _populate_page(cfg, s, pages, ev, i)
        effects |= eff
        if ends:
            break
        done += 1
    return s._replace(pages=tuple(pages)), err, done, effects


def _populate_convert(s: VmState, page: Page, ev: dict, busy_errno: str) -> tuple[Page, str | None]:
    """populate-converts: the conversion's own work on one page (allocate tracking,
    unmap, refcount check), with conversion's errors (ENOMEM, and for a busy page the
    proposal's errno: EAGAIN as conversion answers)."""
    if ev.get(FAIL) == "ENOMEM":
        return page, "ENOMEM"
    page, _ = _unmap(page)
    if _busy(page):
        return page, busy_errno
    page = page._replace(private=True)
    if page.allocated and "NO_DIRECT_MAP" in s.gmem_flags:
        page = page._replace(dmap=False)
    return page, None


def memory_failure(cfg: Config, s: VmState, ev: dict) -> Result:
    """A memory error in the page's folio (mm/memory-failure.c: memory_failure marks it
    PG_hwpoison and unmaps it from every process, then the mapping's error handler runs):
    kvm_gmem_error_folio (virt/kvm/guest_memfd.c) takes the invalidate lock shared,
    invalidates the folio's range (kvm_gmem_invalidate_begin/end: the stage-2 mappings
    go, Platform.zap_private for a private page) and leaves the folio in the file
    (MF_DELAYED). An index with no folio has nothing to fail."""
    i = ev["offset"] // cfg.page_size
    if i >= len(s.pages) or not s.pages[i].allocated or s.pages[i].poisoned:
        return Result(s, OK)
    page = s.pages[i]
    if page.private:
        page = PLATFORMS[cfg.platform].zap_private(page)
    return Result(s.replace_pages({i: page._replace(poisoned=True, mapped=())}), OK)


def lru_drain_plan(cfg: Config, s: VmState, ev: dict) -> Result | Plan:
    """The per-CPU LRU batches drain: a batch fills up, its CPU runs lru_add_drain, or
    someone calls lru_add_drain_all (mm/swap.c). Every batch reference goes (Page.lru).
    No call of the VMM does it: an event of the kernel, as another process's pin is one
    of the environment; a recorded trace has none. Always {"ok": true}."""
    return Plan(range(len(s.pages)), (Skip(lambda p: not p.lru, "batches empty?"), Each(_drained, "drain")), OK)


def _drained(page: Page) -> tuple[Page, frozenset]:
    return (page._replace(lru=False) if page.lru else page), NO_EFFECTS


def lru_drain(cfg: Config, s: VmState, ev: dict) -> Result:
    return run_plan(cfg, s, lru_drain_plan(cfg, s, ev))


def finalize(cfg: Config, s: VmState, ev: dict) -> Result:
    """KVM_SEV_SNP_LAUNCH_FINISH / KVM_TDX_FINALIZE_VM.

    A second finalize is EINVAL: tdx_td_finalize refuses a RUNNABLE TD; for SNP,
    assumption A-snp-launch-state: snp_launch_finish (kvm-x86 sev.c 1a27afa0511e) has no
    launch-state check and runs snp_launch_update_vmsa again over VMSAs the guest now
    owns, an outcome the code does not settle; the model answers EINVAL, as the
    unmerged "Track SNP launch state" patch would.
    """
    platform = PLATFORMS[cfg.platform]
    if platform.populate_ioctl is None:
        return Result(s, ret("ENOTTY"))
    if s.finalized:
        # CCA: finalize is the Realm's activation at the first KVM_RUN
        # (kvm_activate_realm), which returns 0 when it is already active.
        return Result(s, ret(platform.refinalize_errno))
    return Result(s._replace(finalized=True), ret(0))


def _guest_may_run(cfg: Config, s: VmState) -> bool:
    # Assumption A-run-after-launch: snp/tdx vCPUs do not run before launch is finalized.
    # Assumption A-cca-activate: on cca, finalize is the activation at the first KVM_RUN.
    return s.finalized or not PLATFORMS[cfg.platform].has_te


def _guest_access(cfg: Config, s: VmState, ev: dict, write: bool) -> Result:
    """A vCPU reads or writes one page with the given private/shared view."""
    if not _guest_may_run(cfg, s):
        return Result(s, ret("EINVAL"))
    i = ev["offset"] // cfg.page_size
    platform = PLATFORMS[cfg.platform]
    if i >= len(s.pages) or s.pages[i].noslot:
        return Result(s, _noslot_exit(platform, ev["private"]))
    page = s.pages[i]
    if page.poisoned:
        # kvm_gmem_get_pfn: a hwpoisoned folio is -EHWPOISON, which KVM_RUN returns (the
        # comment in kvm_gmem_error_folio: "KVM can either terminate the VM or propagate
        # the error to userspace"); a shared access faults the host mapping: SIGBUS there.
        return Result(s, ret("EHWPOISON"))
    if platform.has_te and ev["private"] != page.private:
        # The view disagrees with the attribute: KVM_EXIT_MEMORY_FAULT. On sw_protected
        # KVM takes the access type from the attribute, so there is no mismatch.
        return Result(s, {"exit": "MEMORY_FAULT"})
    if platform.has_te and not page.private and page.te != TE_NONE:
        # Assumption A-shared-access-te-page: a shared access to a page the TE holds
        # cannot be mapped and exits to userspace. Not what the code read does:
        # kvm_faultin_pfn (arch/x86/kvm/mmu/mmu.c, kvm-x86 04f2bbf1c779) maps a shared
        # access to a KVM-shared gfn, and on SNP sev_handle_rmp_fault (sev.c) only warns
        # ("Unexpected RMP fault for non-private GPA") for the RMP fault that follows.
        return Result(s, {"exit": "MEMORY_FAULT"})
    page = _guest_fault(cfg, s, page)
    if page.private and platform.has_te and page.te == TE_PENDING:
        return Result(s.replace_pages({i: page}), {"exception": platform.guest_exception})
    if write:
        page = page._replace(content=ev["value"])
        return Result(s.replace_pages({i: page}), OK)
    effects = frozenset({STALE_EXPOSED}) if page.content == STALE else NO_EFFECTS
    value = page.content if page.content <= 255 else None
    return Result(s.replace_pages({i: page}), {"ok": True, "value": value}, effects)


def _noslot_exit(platform, private: bool) -> dict:
    """A guest access to a gpa outside every memslot (arch/x86/kvm/mmu/mmu.c, kvm-x86 /
    Linux 6.18): a private access exits with KVM_EXIT_MEMORY_FAULT (kvm_mmu_faultin_pfn's
    private/shared mismatch check -- kvm_mem_is_private is false where no memslot is --
    and kvm_handle_noslot_fault's own is_private check); a shared one is emulated MMIO,
    KVM_EXIT_MMIO (SNP: the guest's #VC handler asks for MMIO through the GHCB; TDX: the
    shared-GPA EPT misconfiguration becomes #VE and a TDVMCALL MMIO request). On
    sw_protected and default the access type is the attribute (see _guest_access), and
    assumption A-noslot-shared: with no memslot there is no attribute, so shared: MMIO.
    """
    if platform.has_te and private:
        return {"exit": "MEMORY_FAULT"}
    return {"exit": "MMIO"}


def guest_read(cfg, s, ev):
    return _guest_access(cfg, s, ev, write=False)


def guest_write(cfg, s, ev):
    return _guest_access(cfg, s, ev, write=True)


def guest_accept(cfg: Config, s: VmState, ev: dict) -> Result:
    """SNP PVALIDATE / TDX TDG.MEM.PAGE.ACCEPT over a range, page by page.

    A page KVM tracks as shared exits with KVM_EXIT_MEMORY_FAULT (the pages before it
    stay accepted). Accepting an accepted page changes nothing. On sw_protected there is
    nothing to accept (assumption A-sw-accept-noop).
    """
    if not _guest_may_run(cfg, s):
        return Result(s, ret("EINVAL"))
    span = _covered(cfg, s, ev["offset"], ev["size"])
    if span is None:
        return Result(s, {"exit": "MMIO"} if ev["size"] else ret("EINVAL"))
    platform = PLATFORMS[cfg.platform]
    if not platform.has_te:
        return Result(s, OK)
    changes: dict[int, Page] = {}
    for i in span:
        page = s.pages[i]
        if not page.private or page.noslot:
            # A shared page, or a private access where no memslot is (_noslot_exit).
            return Result(s.replace_pages(changes), {"exit": "MEMORY_FAULT"})
        changes[i] = platform.accept(_guest_fault(cfg, s, page))
    return Result(s.replace_pages(changes), OK)


def map_gpa_range(cfg: Config, s: VmState, ev: dict) -> Result:
    """The guest's KVM_HC_MAP_GPA_RANGE: an exit to userspace, which answers with
    set_attributes (a separate event).

    __kvm_emulate_hypercall refuses an unaligned gpa, npages == 0 or an overflowing
    range with -KVM_EINVAL before exiting (arch/x86/kvm/x86.c); the range is not checked
    against the memslots.
    """
    if not _guest_may_run(cfg, s):
        return Result(s, ret("EINVAL"))
    ps = cfg.page_size
    if ev["offset"] % ps or ev["size"] == 0 or ev["size"] % ps:
        return Result(s, ret("EINVAL"))
    return Result(s, ret(0))


def replace_memslot(cfg: Config, s: VmState, ev: dict) -> Result:
    """KVM_SET_USER_MEMORY_REGION2: delete the guest_memfd's memslot, add it back over
    [offset, offset + size) of the file (gpa == offset, guest_memfd_offset == offset);
    size 0 only deletes it. With "new_gmem" (a list of KVM_CREATE_GUEST_MEMFD flags) the
    new memslot is bound to a new guest_memfd of the same size created with those flags
    (create_gmem's rule), which the trace follows from then on (assumption A-one-gmem).

    Checks (virt/kvm/kvm_main.c __kvm_set_memory_region and virt/kvm/guest_memfd.c
    kvm_gmem_bind, kvm-x86 / Linux 6.18): memory_size, guest_phys_addr and
    guest_memfd_offset must be page aligned, and offset + size must lie within the file:
    EINVAL. Nothing else is looked at: not the attributes, not the references. So
    replacing a shared range's memory with a guest_memfd created without INIT_SHARED
    makes the guest's view of it private with no refcount check, whatever pins the old
    memory ("truly enforcing in-place conversion is flat out impossible", Sean
    Christopherson, <akUbz_kJvYulaboo@google.com>); the effect SLOT_REPLACED_PINNED names
    it. Assumption A-memslot-replace-te: the TE's state of the pages that stay is left as
    it is (SNP: the RMP entry belongs to the pfn and kvm_gmem_unbind does not reclaim it;
    TDX: the S-EPT removal that zapping the deleted memslot does is not modelled).
    """
    ps, offset, size = cfg.page_size, ev["offset"], ev["size"]
    if offset % ps or size % ps or offset + size > len(s.pages) * ps:
        return Result(s, ret("EINVAL"))
    effects: frozenset = NO_EFFECTS
    base = s
    if ev.get("new_gmem") is not None:
        r = create_gmem(cfg, s, {"op": "create_gmem", "size": len(s.pages) * ps, "flags": ev["new_gmem"]})
        if r.outcome != ret(0):
            return Result(s, r.outcome)
        base = r.state._replace(finalized=s.finalized)
        held = any(not p.private and (p.pins or p.mapped)
                   for p in s.pages[offset // ps:(offset + size) // ps])
        turned = any(not s.pages[i].private and base.pages[i].private
                     for i in range(offset // ps, (offset + size) // ps))
        if held and turned:
            effects = frozenset({SLOT_REPLACED_PINNED})
    lo, hi = offset // ps, (offset + size) // ps
    pages = tuple(p._replace(noslot=not lo <= i < hi) if p.noslot != (not lo <= i < hi) else p
                  for i, p in enumerate(base.pages))
    return Result(base._replace(pages=pages), ret(0), effects)


OPS: dict[str, Callable[[Config, VmState, dict], Result]] = {
    "create_gmem": create_gmem,
    "set_attributes": set_attributes,
    "host_write": host_write,
    "host_read": host_read,
    "pin": pin,
    "unpin": unpin,
    "punch_hole": punch_hole,
    "populate": populate,
    "finalize": finalize,
    "guest_read": guest_read,
    "guest_write": guest_write,
    "guest_accept": guest_accept,
    "map_gpa_range": map_gpa_range,
    "replace_memslot": replace_memslot,
    # Without a thread, GUP-fast is a pin: with nothing running beside it, its fast path
    # and its slow path end alike (gmemlab.model.threads has its steps).
    "gup_fast": pin,
    "memory_failure": memory_failure,
    "lru_drain": lru_drain,
    "run": lambda cfg, s, ev: Result(s, {"idle": True}),   # a run without a thread runs nothing
}


def huge_folio_rule(cfg: Config, pre: VmState, ev: dict, r: Result) -> Result:
    """Which huge folios the step splits, and which merge back (knob huge_folios).

    Per huge folio of the geometry (state.folio_spans of Config.folio_pages):

    Split. A folio must be split when its pages stop sharing one attribute (a conversion
    of part of it), when the TE takes a page of it while KVM tracks it as shared
    ("prep'ing/encrypting everything while it's in a shared state means gmem will split
    the hugepage", Michael Roth, "Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support
    for KVM_SET_MEMORY_ATTRIBUTES2", 2026-04-07), and when a hole is punched into part of
    it. Converting or populating it whole keeps it. The TE taking a shared page counts
    also when it happened inside the call only (effect TE_TOOK_SHARED): a whole-range
    populate under convert_after_populate leaves every page private and TE-held, but
    each was taken while shared. The pages taken are those the TE did not hold before
    the step and holds after it (populate is the only op with that effect, and one call
    takes pages of one attribute only: Proposal.populate_wants_private).

    Merge. Assumption A-huge-merge-on-conversion: a split folio is one folio again after
    a step that converts a page of it (its attribute changes), or that punches every page
    of it out, when afterwards all its pages share one attribute, the TE holds none of
    them while KVM tracks it as shared, and none has an extra reference or a host
    mapping. Merging zeroes the pages that hold memory never up to date: "On merging, the
    non-uptodate parts have to be zeroed" (Ackerley Tng, v8 review; docs/domain.md):
    content ZERO and uptodate, as __kvm_gmem_get_pfn's zeroing does (assumption A-init:
    that is initialization, not a write of a private page's contents). Pages with no
    memory (never faulted, or punched) stay so: the merged folio backs them as the
    fresh file's folio backs pages not yet faulted in.

    This is the one rule of step() that reads pages an event does not name (and, for a
    merge, writes them): the knob is not page-local (gmemlab.model.vocab).
    """
    s = r.state
    if ev["op"] == "create_gmem" or ev.get("new_gmem") is not None or len(pre.pages) != len(s.pages):
        return r   # a new file: create_gmem made its folios whole
    spans = folio_spans(len(s.pages), cfg.folio_pages)
    folios, pages = list(s.folios), list(s.pages)
    took = TE_TOOK_SHARED in r.effects
    punched = ev["op"] == "punch_hole" and r.outcome.get("ret") == 0
    for f, span in enumerate(spans[:len(folios)]):
        before, after = pre.pages[span.start:span.stop], s.pages[span.start:span.stop]
        if before == after:
            continue
        if folios[f]:
            folios[f] = not (len({p.private for p in after}) > 1
                             or any(p.te != TE_NONE and not p.private for p in after)
                             or (took and any(a.te == TE_NONE and b.te != TE_NONE for a, b in zip(before, after)))
                             or (punched and any(p.allocated for p in after)))
            continue
        converted = any(a.private != b.private for a, b in zip(before, after))
        emptied = punched and not any(p.allocated for p in after)
        if (converted or emptied) and _mergeable(after):
            folios[f] = True
            for i in span:
                if pages[i].allocated and not pages[i].uptodate:
                    pages[i] = pages[i]._replace(content=ZERO, uptodate=True)
    folios = tuple(folios)
    if folios == s.folios:
        return r
    return r._replace(state=s._replace(folios=folios, pages=tuple(pages)))


def _mergeable(pages: tuple) -> bool:
    """Assumption A-huge-merge-on-conversion: the pages of a split folio can be one folio
    again: one attribute, no page the TE holds while KVM tracks it as shared, and no
    reference beyond guest_memfd's own (no pin, no host mapping), as the split itself
    needs the 4 KiB folios' references to be guest_memfd's only."""
    return (len({p.private for p in pages}) == 1
            and not any(p.te != TE_NONE and not p.private for p in pages)
            and not any(p.pins or p.mapped for p in pages))


# The series' own rules, as step.py defines them: an engine may rely on what it knows of
# these (which are page-local, and for PLANS run their plan); a rule patched into OPS
# or replaced by a proposal is not one of them.
BUILTIN_OPS = dict(OPS)

# The ops whose rule is a plan over a range (see run_plan): op -> the plan function's
# name, looked up when asked, so that a patched plan function is the one used.
PLANS = {"set_attributes": "set_attributes_plan", "punch_hole": "punch_hole_plan",
         "lru_drain": "lru_drain_plan"}


def rule(cfg: Config, op: str) -> Callable[[Config, VmState, dict], Result]:
    """The function that decides op under cfg: the proposal's own rule if it replaces
    the op (a designer's variant), else the series' rule."""
    return cfg.rules.ops.get(op) or OPS[op]


def builtin(cfg: Config, op: str) -> bool:
    """Whether op is decided under cfg by the series' own rule (see BUILTIN_OPS)."""
    return rule(cfg, op) is BUILTIN_OPS.get(op)


def plan_of(cfg: Config, op: str):
    """The op's plan function under cfg, or None where the rule is not a plan (an op
    without one, or a rule replaced by a proposal or patched into OPS)."""
    if op not in PLANS or not builtin(cfg, op):
        return None
    return globals()[PLANS[op]]


def cause(cfg: Config, s: VmState, ev: dict) -> str | None:
    """Why the call failed, in the kernel's own terms, or None if it did not fail.

    What a caller is told is not always why: the platform ioctls turn
    kvm_gmem_populate's error into their own return (snp_launch_update: EIO for any
    error on the first page, 0 with partial progress after it; sev.c), so for populate
    the cause is the error inside kvm_gmem_populate and a populate that stopped short
    failed even when it returns 0. For every other call, and for a populate rule a
    proposal replaces, the cause is the errno (or signal) the call returns.

    >>> from gmemlab.model.state import Config, VmState
    >>> cfg = Config(proposal="populate-converts", platform="snp")
    >>> s = step(cfg, VmState(), {"op": "create_gmem", "size": 4096, "flags": ("MMAP", "INIT_SHARED")}).state
    >>> s = step(cfg, s, {"op": "pin", "offset": 0, "size": 4096}).state
    >>> pop = {"op": "populate", "offset": 0, "size": 4096, "src": None}
    >>> step(cfg, s, pop).outcome["ret"], cause(cfg, s, pop)
    ('EIO', 'EAGAIN')
    """
    if s.created and ev["op"] == "populate" and builtin(cfg, "populate"):
        r = _populate(cfg, s, ev)
        if not isinstance(r, Result):
            return r[1]
    else:
        r = step(cfg, s, ev)
    out = r.outcome
    if out.get("ret", 0) != 0:
        return out["ret"]
    return out.get("signal") or out.get("exception")


def step(cfg: Config, s: VmState, ev: dict) -> Result:
    """Apply one event. Ops other than create_gmem need a live guest_memfd (EBADF). An
    event with a "thread" is a step of that thread (gmemlab.model.threads)."""
    op = ev["op"]
    if "thread" in ev:
        if not s.created and op != "create_gmem":
            return Result(s, ret("EBADF") if op != "run" else {"idle": True})
        return threads.step(cfg, s, ev)
    if not s.created and op != "create_gmem":
        return Result(s, ret("EBADF"))
    return settle(cfg, s, ev, rule(cfg, op)(cfg, s, ev))


def settle(cfg: Config, s: VmState, ev: dict, r: Result) -> Result:
    """What every step of the call ev goes through after its rule (a thread's steps of
    it too, gmemlab.model.threads): the huge folios' geometry."""
    if r.state.folios:
        r = huge_folio_rule(cfg, s, ev, r)
    return r


# Imported last: the threads' steps are made of this module's functions.
from gmemlab.model import threads  # noqa: E402
