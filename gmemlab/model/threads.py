"""Interleavings: a call made by a thread runs as steps, at the kernel's lock boundaries.

Without a "thread" an event is one atomic step (the rest of the model). With one, the
thread makes the call: the event itself is the call's first step, which only records
the call (the thread decides what it calls: nothing else can see it), and each
``{"op": "run", "thread": T}`` takes one more step of T's call; the step that ends
the call returns the call's outcome, the others ``{"pending": true}``. A step that
must wait for a lock another thread holds returns ``{"blocked": true}`` and changes
nothing. A thread has one call in flight at a time: an event for a thread that has
one returns ``{"busy": true}``, a run for a thread that has none ``{"idle": true}``.

The steps of each call, and the lock they take (the file's invalidate lock,
``VmState.lock``: the thread holding it exclusively):

- KVM_SET_MEMORY_ATTRIBUTES2 and fallocate(PUNCH_HOLE): the call's checks (its plan,
  gmemlab.model.step: a call the checks refuse ends there), then the invalidate lock
  taken exclusively (filemap_invalidate_lock in the conversion and in
  kvm_gmem_punch_hole, virt/kvm/guest_memfd.c), then one step per phase of the plan
  (step.run_phase: the unmap, the reference check, the attribute update with the
  platform hooks); the step that ends the call drops the lock. The phases are the
  model's own: reordering them (the check_before_unmap knob) reaches both modes.
- populate (kvm_gmem_populate): its checks, then for each page the lock taken and the
  page done (step._populate_page), the lock dropped between pages ("populate
  (exclusive, and released between pages)"); the populate_holds_lock knob keeps it
  from the first page to the last.
- gup_fast (pin_user_pages_fast): no lock. The page table entry is read; where it maps
  the page, the reference is taken on the folio found (gup_fast_pte_range:
  try_grab_folio), then the entry is read again: if it changed, the reference is
  dropped and the slow path follows (the pin's fault takes the invalidate lock shared:
  kvm_gmem_fault, filemap_invalidate_lock_shared). The gup_fast_no_recheck knob leaves
  out the read again. Where nothing maps the page, the slow path at once. One page a
  call.
- Every other call is one step. A host access or a pin that faults (its process does
  not map every page) takes the invalidate lock shared (kvm_gmem_fault), so it waits
  while another thread holds it exclusively; one that does not fault takes no lock.
  Assumption A-guest-fault-waits: a guest access waits as well (a vCPU fault inside an
  invalidation retries, mmu_invalidate_in_progress, until it ends). The rest (create,
  finalize, unpin, ...) takes no lock. A memory error (memory_failure, with the
  memory_failures knob) is one step of the kernel's handler, thread "mce": it takes the
  invalidate lock shared (kvm_gmem_error_folio), so it waits for a conversion too.

Transition properties see a run step as a step of its call (invariants.Transition.call).
"""

from __future__ import annotations

from gmemlab.model import step as M
from gmemlab.model.state import Call, Config, VmState

PENDING, BLOCKED = {"pending": True}, {"blocked": True}

# The calls whose rule is a plan over a range (step.PLANS): checks, lock, one step a phase.
PLANNED = ("set_attributes", "punch_hole")
# Calls that fault the pages they touch in a host process (kvm_gmem_fault: invalidate
# lock shared) unless the process maps them already.
HOST_FAULTS = ("host_read", "host_write", "pin")
# Assumption A-guest-fault-waits (see the module docstring).
GUEST_WAITS = ("guest_read", "guest_write", "guest_accept")
# kvm_gmem_error_folio takes the invalidate lock shared (virt/kvm/guest_memfd.c).
SHARED_LOCK = ("memory_failure",)


def _calls(s: VmState) -> dict:
    return {c.thread: c for c in s.threads}


def _with(s: VmState, call: Call | None, thread: str) -> VmState:
    """s with thread's call replaced by call (None: the thread is idle again)."""
    rest = tuple(c for c in s.threads if c.thread != thread)
    return s._replace(threads=tuple(sorted(rest + ((call,) if call else ()), key=lambda c: c.thread)))


def _locked_by_other(s: VmState, thread: str) -> bool:
    return s.lock != "" and s.lock != thread


def _faults(cfg: Config, s: VmState, ev) -> bool:
    """Whether a host access or pin faults a page in: some page of its range is not
    mapped by its process (step._host_fault maps what it faults)."""
    ps = cfg.page_size
    first = ev["offset"] // ps
    last = first + max(1, ev.get("size", ps) // ps)
    proc = ev.get("process", "vmm")
    return any(proc not in s.pages[i].mapped for i in range(first, min(last, len(s.pages))))


def step(cfg: Config, s: VmState, ev) -> M.Result:
    """One step of a thread (see the module docstring)."""
    thread = ev["thread"]
    call = _calls(s).get(thread)
    if ev["op"] != "run":
        if call is not None:
            return M.Result(s, {"busy": True})
        return M.Result(_with(s, Call(thread, ev.without("thread")), thread), PENDING)
    if call is None:
        return M.Result(s, {"idle": True})
    r = _advance(cfg, s, call)
    return r if r.state is s else M.settle(cfg, s, call.event, r)


def _end(s: VmState, thread: str, r: M.Result, held: bool) -> M.Result:
    """The call ends with r: the thread is idle again and drops the lock it held."""
    post = _with(r.state, None, thread)
    if held:
        post = post._replace(lock="")
    return r._replace(state=post)


def _take_lock(s: VmState, call: Call) -> M.Result:
    if _locked_by_other(s, call.thread):
        return M.Result(s, BLOCKED)
    post = _with(s, call._replace(k=call.k + 1, locked=True), call.thread)
    return M.Result(post._replace(lock=call.thread), PENDING)


def _advance(cfg: Config, s: VmState, call: Call) -> M.Result:
    ev, op, thread = call.event, call.event["op"], call.thread
    if op in PLANNED and M.plan_of(cfg, op) is not None:
        return _planned(cfg, s, call)
    if op == "populate" and M.builtin(cfg, "populate"):
        return _populate(cfg, s, call)
    if op == "gup_fast":
        return _gup_fast(cfg, s, call)
    # one step: the call itself, once the lock it needs is free
    if op in HOST_FAULTS and _faults(cfg, s, ev) or op in GUEST_WAITS or op in SHARED_LOCK:
        if _locked_by_other(s, thread):
            return M.Result(s, BLOCKED)
    return _end(s, thread, M.step(cfg, s, ev), False)


def _planned(cfg: Config, s: VmState, call: Call) -> M.Result:
    """Checks; the lock; one phase a step (step.run_phase)."""
    plan = M.plan_of(cfg, call.event["op"])(cfg, s, call.event)
    if call.k == 0:
        if isinstance(plan, M.Result):
            return _end(s, call.thread, plan, False)      # the checks refused it
        return _take_lock(s, call)
    if isinstance(plan, M.Result):
        # Only another thread's call could make the checks answer otherwise now (the
        # calls that change what they read are the VMM's own: finalize, create).
        return _end(s, call.thread, plan, call.locked)
    post, outcome, effects = M.run_phase(cfg, s, plan, call.k - 1)
    if outcome is not None or call.k == len(plan.phases):
        return _end(post, call.thread, M.Result(post, outcome or plan.outcome, effects), call.locked)
    return M.Result(_with(post, call._replace(k=call.k + 1), call.thread), PENDING, effects)


def _populate(cfg: Config, s: VmState, call: Call) -> M.Result:
    """Checks; then per page the lock and the page (step._populate_page)."""
    ev, thread = call.event, call.thread
    if call.k == 0:
        r = M._populate_checks(cfg, s, ev)
        if r is not None:
            return _end(s, thread, r, False)
        return M.Result(_with(s, call._replace(k=1), thread), PENDING)
    if not call.locked:
        return _take_lock(s, call)
    ps = cfg.page_size
    first, n = ev["offset"] // ps, ev["size"] // ps
    pages = list(s.pages)
    err, ends, effects = M._populate_page(cfg, s, pages, ev, first + call.done)
    post = s._replace(pages=tuple(pages))
    done = call.done + (0 if ends else 1)
    if ends or done == n:
        platform = M.PLATFORMS[cfg.platform]
        return _end(post, thread, M.Result(post, M.ret(platform.populate_ret(err, done), done=done), effects), True)
    if cfg.populate_holds_lock:
        nxt = call._replace(k=call.k + 1, done=done)
        return M.Result(_with(post, nxt, thread), PENDING, effects)
    nxt = call._replace(k=call.k + 1, done=done, locked=False)
    return M.Result(_with(post, nxt, thread)._replace(lock=""), PENDING, effects)


def _gup_fast(cfg: Config, s: VmState, call: Call) -> M.Result:
    """pin_user_pages_fast on one page (gup_fast_pte_range, mm/gup.c): k 0 reads the page
    table entry; k 1 takes the reference on the folio it found (try_grab_folio: none if
    the folio was freed meanwhile); k 2 reads the entry again and keeps the reference
    only if it is unchanged; k 3 is the slow path (fault and pin: step.pin)."""
    ev, thread = call.event, call.thread
    i = ev["offset"] // cfg.page_size
    proc = ev.get("process", "vmm")
    if ev["size"] != cfg.page_size or i >= len(s.pages) or "MMAP" not in s.gmem_flags:
        # Not one page of a mappable file: the slow path's answer (pin), as one step.
        return _end(s, thread, M.step(cfg, s, ev.replace(op="pin")), False)
    page = s.pages[i]
    slow = call._replace(k=3)
    if call.k == 0:
        seen = proc in page.mapped and not page.private
        return M.Result(_with(s, call._replace(k=1) if seen else slow, thread), PENDING)
    if call.k == 1:
        if not page.allocated:
            return M.Result(_with(s, slow, thread), PENDING)
        post = s.replace_pages({i: page._replace(pins=page.pins + 1)})
        return M.Result(_with(post, call._replace(k=2), thread), PENDING)
    if call.k == 2:
        if cfg.gup_fast_no_recheck or proc in page.mapped:
            return _end(s, thread, M.Result(s, M.ret(0)), False)
        # The entry changed: the reference goes back (as unpin drops one: a page whose
        # folio was punched meanwhile holds none of it, assumption A-unpin-orphan), and
        # the slow path follows.
        post = s.replace_pages({i: page._replace(pins=page.pins - 1)}) if page.pins else s
        return M.Result(_with(post, slow, thread), PENDING)
    # the slow path: fault (invalidate lock shared) and pin
    if _faults(cfg, s, ev) and _locked_by_other(s, thread):
        return M.Result(s, BLOCKED)
    return _end(s, thread, M.step(cfg, s, ev.replace(op="pin")), False)


# What each step of GUP-fast does, by the call's k (_gup_fast).
GUP_FAST_STEPS = ("read the PTE", "take the reference", "read the PTE again", "slow path: fault, pin")


def step_name(cfg: Config, s: VmState, thread: str) -> str:
    """What thread's next step does, for a reader (the lanes of a counterexample): the
    branch _advance takes for its call in s, named: a planned call's checks and lock,
    then its plan's phase names (step.Skip/Stop/Each); populate's checks, lock and
    pages; GUP-fast's look, reference and second look. "" for a thread with no call in
    flight and for a call of one step."""
    call = _calls(s).get(thread)
    if call is None:
        return ""
    ev, op = call.event, call.event["op"]
    if op in PLANNED and M.plan_of(cfg, op) is not None:
        if call.k == 0:
            return "checks, take the lock"
        plan = M.plan_of(cfg, op)(cfg, s, ev)
        return "checks" if isinstance(plan, M.Result) else plan.phases[call.k - 1].name
    if op == "populate" and M.builtin(cfg, "populate"):
        if call.k == 0:
            return "checks"
        if not call.locked:
            return "take the lock"
        page = ev["offset"] // cfg.page_size + call.done
        last = call.done + 1 == ev["size"] // cfg.page_size
        keeps = cfg.populate_holds_lock and not last
        return f"page {page}" + ("" if keeps else ", drop the lock")
    if op == "gup_fast":
        one_page = (ev["size"] == cfg.page_size and ev["offset"] // cfg.page_size < len(s.pages)
                    and "MMAP" in s.gmem_flags)
        if not one_page:
            return GUP_FAST_STEPS[3]
        if call.k == 2 and cfg.gup_fast_no_recheck:
            return "keep the reference (no second look)"
        return GUP_FAST_STEPS[call.k]
    return ""


def speculative_refs(cfg: Config, s: VmState) -> dict:
    """page index -> references GUP-fast calls hold between taking them and reading the
    page table again (k 2 of _gup_fast): assumption A-speculative-ref
    (invariants._private_not_pinned)."""
    held: dict[int, int] = {}
    for c in s.threads:
        if c.event["op"] == "gup_fast" and c.k == 2:
            i = c.event["offset"] // cfg.page_size
            held[i] = held.get(i, 0) + 1
    return held
