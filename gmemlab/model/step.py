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
                                 Config, Page, VmState, fresh_gmem)

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


def _get_pfn(s: VmState, page: Page, zero: bool) -> Page:
    """__kvm_gmem_get_pfn: allocate the folio if needed; zero it if asked and not up to date.

    A folio nobody zeroed holds stale host data (docs/domain.md, Populate). The direct map is
    tracked only for a NO_DIRECT_MAP file, whose private folios leave it (assumption
    A-direct-map: removal on allocation as private and on conversion to private,
    restoration on conversion to shared).
    """
    if not page.allocated:
        dmap = "NO_DIRECT_MAP" in s.gmem_flags and not page.private
        page = page._replace(allocated=True, uptodate=False, content=STALE, dmap=dmap)
    if zero and not page.uptodate:
        # Assumption A-init: initializing a folio that holds no data yet is not "writing
        # a private page's contents" (kvm_never_writes_private); every series does it on
        # the guest fault (kvm_gmem_get_pfn).
        page = page._replace(uptodate=True, content=ZERO)
    return page


def _host_fault(s: VmState, page: Page, process: str) -> Page:
    """kvm_gmem_fault_user_mapping on a shared page: allocate zeroed, map in the process."""
    page = _get_pfn(s, page, zero=True)
    if process not in page.mapped:
        page = page._replace(mapped=tuple(sorted(page.mapped + (process,))))
    return page


def _guest_fault(cfg: Config, s: VmState, page: Page) -> Page:
    """kvm_gmem_get_pfn on the guest fault path: zero if not up to date, prepare if private."""
    page = _get_pfn(s, page, zero=True)
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
    return Result(fresh_gmem(size // cfg.page_size, flags, huge=cfg.huge_folios), ret(0))


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


class Skip(NamedTuple):
    pred: Callable[[Page], bool]


class Stop(NamedTuple):
    check: Callable[[Page], str | None]


class Each(NamedTuple):
    update: Callable[[Page], tuple[Page, frozenset]]


class Plan(NamedTuple):
    span: range            # the page indices the phases run over
    phases: tuple          # Skip | Stop | Each, in order
    outcome: dict          # what the call returns when no phase stops it


def run_plan(cfg: Config, s: VmState, plan: Plan) -> Result:
    """Run a plan's phases over its range (see above)."""
    pages = list(s.pages)
    effects: set[str] = set()

    def done(outcome):
        return Result(s._replace(pages=tuple(pages)), outcome, frozenset(effects))
    for phase in plan.phases:
        if isinstance(phase, Skip):
            if all(phase.pred(pages[i]) for i in plan.span):
                return done(plan.outcome)
        elif isinstance(phase, Stop):
            for i in plan.span:
                errno = phase.check(pages[i])
                if errno is not None:
                    return done(ret(errno, error_offset=i * cfg.page_size))
        else:
            for i in plan.span:
                pages[i], eff = phase.update(pages[i])
                effects |= eff
    return done(plan.outcome)


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
    # v6 dropped the content modes; v7 requires flags == 0. v5: ZERO|PRESERVE is EINVAL.
    if flags and (cfg.series != "v5" or len(flags) > 1):
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
    phases: list = [Skip(lambda p: p.private == to_private)]
    if ev.get(FAIL) == "ENOMEM":
        # The tracking entries could not be allocated: ENOMEM with error_offset = start,
        # before anything is unmapped or converted (docs/domain.md, uAPI facts). Nothing in
        # the state says when an allocation fails: the event does (see FAIL).
        phases.append(Stop(lambda p: "ENOMEM"))
    if to_private:
        # Unmap the range from every host page table first: this happens even when the
        # call then fails (selftest elevated_refcount; docs/domain.md). Then the first page
        # with unexpected references fails the call with EAGAIN, no attribute changed.
        phases.append(Each(_unmap))
        phases.append(Stop(_busy))
    scramble = cfg.series == "v5" and mode is None and not platform.has_te
    no_direct_map = "NO_DIRECT_MAP" in s.gmem_flags

    def convert(page: Page) -> tuple[Page, frozenset]:
        if page.private == to_private:
            return page, NO_EFFECTS
        before, effects = page, NO_EFFECTS
        page = page._replace(private=to_private)
        if not to_private:
            page = platform.invalidate(page)
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
    phases.append(Each(convert))
    return Plan(span, tuple(phases), ret(0))


def _unmap(page: Page) -> tuple[Page, frozenset]:
    """unmap_mapping_pages: the page leaves every host page table."""
    return (page._replace(mapped=()) if page.mapped else page), NO_EFFECTS


def _busy(page: Page) -> str | None:
    """The refcount check: a page with unexpected references (GUP pins, vmsplice, IOMMU)."""
    return "EAGAIN" if page.pins else None


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
    page = _host_fault(s, page, ev.get("process", "vmm"))
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
    process = ev.get("process", "vmm")
    changes, effects = {}, set()
    for i in span:
        page = _host_fault(s, s.pages[i], process)
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
    against the index (they hold the detached folio).
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
    return Plan(range(first, max(first, last)), (Each(_free_folio),), ret(0))


def _free_folio(page: Page) -> tuple[Page, frozenset]:
    """The index after its folio is freed: only the attribute stays."""
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


def _populate(cfg: Config, s: VmState, ev: dict) -> Result | tuple[VmState, str | None, int, frozenset]:
    """populate up to the platform's return: a Result for the checks before the loop,
    else (state, kvm_gmem_populate's error or None, pages done, effects)."""
    platform = PLATFORMS[cfg.platform]
    if platform.populate_ioctl is None:
        return Result(s, ret("ENOTTY"))  # Assumption A-sw-no-launch: no launch ioctls
    if s.finalized:
        # TDX: tdx_vcpu_init_mem_region refuses a finalized TD with EINVAL ("Once TD is
        # finalized, the initial guest memory is fixed"). SNP has no such check in
        # mainline (a LAUNCH_* call after FINISH can fault the host); assumption
        # A-snp-launch-state: the fix proposed in "[PATCH] KVM: SEV: Track SNP launch
        # state and disallow invalid userspace interactions" (EINVAL).
        return Result(s, ret("EINVAL", done=0))
    span = _span(cfg, s, ev["offset"], ev["size"])
    if span is None:
        return Result(s, ret("EINVAL", done=0))
    proposal = cfg.rules
    src = ev["value"] if ev.get("src") == "buffer" else None
    pages = list(s.pages)
    effects: set[str] = set()
    err, done = None, 0
    for i in span:
        page = pages[i]
        if page.private != proposal.populate_wants_private:
            err = "EINVAL"
            break
        convert_now = proposal.populate_converts and not cfg.convert_after_populate
        convert_later = proposal.populate_converts and cfg.convert_after_populate
        if convert_now:
            page, err = _populate_convert(s, page, ev, proposal.populate_busy_errno)
            pages[i] = page
            if err:
                break
        if src is None and cfg.refuse_unprepared_populate and not page.uptodate:
            err = "EOPNOTSUPP"  # the v9 alternative (knob)
            break
        page = _get_pfn(s, page, zero=cfg.series == "v8")
        before = page
        page, err = platform.post_populate(page, src)
        pages[i] = page
        if err:
            break  # the folio stays allocated; the TE did not take it
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
                break
        done += 1
    return s._replace(pages=tuple(pages)), err, done, frozenset(effects)


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


def finalize(cfg: Config, s: VmState, ev: dict) -> Result:
    """KVM_SEV_SNP_LAUNCH_FINISH / KVM_TDX_FINALIZE_VM.

    A second finalize is EINVAL: tdx_td_finalize refuses a RUNNABLE TD; for SNP,
    assumption A-snp-launch-state (see populate).
    """
    if PLATFORMS[cfg.platform].populate_ioctl is None:
        return Result(s, ret("ENOTTY"))
    if s.finalized:
        return Result(s, ret("EINVAL"))
    return Result(s._replace(finalized=True), ret(0))


def _guest_may_run(cfg: Config, s: VmState) -> bool:
    # Assumption A-run-after-launch: snp/tdx vCPUs do not run before launch is finalized.
    return s.finalized or not PLATFORMS[cfg.platform].has_te


def _guest_access(cfg: Config, s: VmState, ev: dict, write: bool) -> Result:
    """A vCPU reads or writes one page with the given private/shared view."""
    if not _guest_may_run(cfg, s):
        return Result(s, ret("EINVAL"))
    i = ev["offset"] // cfg.page_size
    if i >= len(s.pages):
        return Result(s, {"exit": "MMIO"})  # no memslot there: KVM_EXIT_MMIO
    platform = PLATFORMS[cfg.platform]
    page = s.pages[i]
    if platform.has_te and ev["private"] != page.private:
        # The view disagrees with the attribute: KVM_EXIT_MEMORY_FAULT. On sw_protected
        # KVM takes the access type from the attribute, so there is no mismatch.
        return Result(s, {"exit": "MEMORY_FAULT"})
    if platform.has_te and not page.private and page.te != TE_NONE:
        # Assumption A-shared-access-te-page: a shared access to a page the TE holds
        # cannot be mapped and exits to userspace.
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
        if not page.private:
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
}


def huge_folio_rule(pre: VmState, ev: dict, r: Result) -> Result:
    """Whether the huge folio survives the step (knob huge_folios; a metric).

    A huge folio must be split when its pages stop sharing one attribute, when the TE
    takes a page of it while KVM tracks it as shared ("prep'ing/encrypting everything
    while it's in a shared state means gmem will split the hugepage", Michael Roth, "Re:
    [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for KVM_SET_MEMORY_ATTRIBUTES2",
    2026-04-07), and when a hole is punched into part of it. Converting or populating it
    whole keeps it.
    """
    s = r.state
    pages = s.pages
    split = (len({p.private for p in pages}) > 1
             or any(p.te != TE_NONE and not p.private for p in pages)
             or (ev["op"] == "punch_hole" and r.outcome.get("ret") == 0 and pre.pages != pages
                 and any(p.allocated for p in pages)))
    return r._replace(state=s._replace(huge=False)) if split else r


# The series' own rules, as step.py defines them: an engine may rely on what it knows of
# these (which are page-local, and for PLANS run their plan); a rule patched into OPS
# or replaced by a proposal is not one of them.
BUILTIN_OPS = dict(OPS)

# The ops whose rule is a plan over a range (see run_plan): op -> the plan function's
# name, looked up when asked, so that a patched plan function is the one used.
PLANS = {"set_attributes": "set_attributes_plan", "punch_hole": "punch_hole_plan"}


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
    """Apply one event. Ops other than create_gmem need a live guest_memfd (EBADF)."""
    op = ev["op"]
    if not s.created and op != "create_gmem":
        return Result(s, ret("EBADF"))
    r = rule(cfg, op)(cfg, s, ev)
    if r.state.huge:
        r = huge_folio_rule(s, ev, r)
    return r
