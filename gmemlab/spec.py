"""The model instance: a configuration and bounds, and everything that was checked.

What stateright calls a Model: the initial states (here: the create_gmem calls they
come from), the actions tried in every state, in a fixed order, the boundary (states
past it are not explored), and the properties (always, sometimes, and the goal that
no_stuck_state must reach). The search driver (gmemlab.explore.search) and its engines
read all of it from a Spec and from nothing else, so there is one answer to "what was
explored".

Actions. From a fresh guest_memfd of N pages (created with MMAP, with and without
INIT_SHARED; with NO_DIRECT_MAP too when that series is on) every op is tried on each
single page, for each host process and each argument value the bounds allow, and the
range calls (set_attributes, punch_hole, populate; guest_accept page by page) on each
single page and on the whole file. ``Bounds(ranges="all")`` adds every contiguous range.

Symmetry. With single-page and whole-file calls only, the semantics do not depend on
where a page sits, except through the order in which a whole-file call walks the pages:
set_attributes and punch_hole end in the same state whatever the order (their plans'
phases are functions of one page, gmemlab.model.step.run_plan), so the set of reachable
states is closed under permuting pages and a state may be stored sorted by page. The
error_offset of a whole-file EAGAIN names the first pinned page of the concrete state,
which Exploration.chain_events recomputes on the concrete path. populate and
guest_accept stop at the first failing page, so their whole-file form is
order-dependent (``order_dependent``). guest_accept is tried page by page only.
populate is also tried on the whole file, as VMMs call it, and then symmetry is off:

- Reachable states alone would survive the reduction: the whole-file populate's loop
  body reads one page (and the VM-wide flags), so its result on a permuted state is the
  permutation of a state that single-page populates reach, one page at a time, in the
  permuted order (the pages done, then the failing page's partial work).
- What does not survive is everything measured per transition: from a canonical state
  the reduced search tries the whole-file populate in one page order only, so a
  permuted order's single step (say "two pages done, then EINVAL", where the canonical
  order fails at once with EIO) is found only as several single-page steps. Outcomes
  of that call (partial progress, error_information's causes), transition invariants
  judged on it, counterexample lengths and, with the huge_folios knob, the huge folio
  (several single-page conversions split it where one whole-file conversion does not:
  step.huge_folio_rule) would all differ from the unreduced search.
- A sound reduction would try the order-dependent call on every arrangement of the
  canonical state's pages and keep the concrete permutation for chain_events; until
  then the search is exact: Spec turns symmetry off whenever an order-dependent action
  is in the set (snp, tdx and cca from 2 pages; sw_protected and default keep it).
  tests/test_spec_symmetry.py holds reduced and unreduced searches to the same answers.

``ranges="all"`` turns symmetry off too.

>>> s = Spec(Config(platform="sw_protected"), Bounds(pages=1))
>>> [e["flags"] for e in s.creates]
[('MMAP', 'INIT_SHARED'), ('MMAP',)]
>>> sorted({a["op"] for a in s.actions})[:3]
['guest_read', 'guest_write', 'host_read']
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from gmemlab.errors import UsageError
from gmemlab.invariants import ALWAYS, SOMETIMES, launched_and_running
from gmemlab.model.events import Event, event
from gmemlab.model.state import Config, VmState, folio_spans
from gmemlab.model.step import FAIL
from gmemlab.model.vocab import MAX_PAGES


@dataclass(frozen=True)
class Bounds:
    """What the explorer varies: the size of the file and the argument values."""

    pages: int = 2
    processes: tuple = ("vmm",)          # host processes that may map the file
    host_value: int = ord("A")           # what userspace loads
    guest_value: int = ord("A")          # what the guest writes
    source_value: int = ord("A")         # the legacy populate source's contents
    max_pins: int = 1                    # extra references per page
    no_direct_map: bool = False          # also create the file with NO_DIRECT_MAP
    ranges: str = "page+file"            # or "all": every contiguous range
    # With the huge_folios knob: pages per huge folio (Config.folio_pages; 0: one folio
    # over the file). Spec copies a non-zero value into the Config the model reads.
    folio_pages: int = 0
    # Interleavings (gmemlab.model.threads): 0, every call one atomic step (the default);
    # 1-3, the calls are made by that many threads, each call a begin and its steps
    # (THREADS: who makes which calls), the threads' steps in every order. reduce:
    # partial-order reduction of the begins (Spec.ample); off only to check it.
    interleave: int = 0
    reduce: bool = True

    def __post_init__(self):
        if type(self.pages) is not int or not 1 <= self.pages <= MAX_PAGES:
            raise UsageError(f"pages must be 1..{MAX_PAGES}, got {self.pages!r}")
        if self.ranges not in ("page+file", "all"):
            raise UsageError(f"ranges must be 'page+file' or 'all', got {self.ranges!r}")
        if type(self.folio_pages) is not int or self.folio_pages < 0:
            raise UsageError(f"folio_pages must be an integer >= 0, got {self.folio_pages!r}")
        if type(self.interleave) is not int or not 0 <= self.interleave <= len(THREADS):
            raise UsageError(f"interleave must be 0 (atomic calls) or 1..{len(THREADS)} threads, "
                             f"got {self.interleave!r}")


# Who makes which calls when calls interleave (Bounds.interleave threads): the VMM's
# thread converts, populates, punches and finalizes; a second thread of the VMM's
# process touches the file through its mmap and pins it with GUP-fast (an I/O thread,
# vhost, a DMA setup); a third is a vCPU. With fewer threads the first takes the calls
# of the missing ones, so one thread makes every call of the atomic model.
THREADS = ("vmm", "io", "vcpu")
# With the memory_failures knob, the kernel's memory-failure handler is one more thread
# beside them (memory_failure -> kvm_gmem_error_folio runs in whatever context found the
# error, not in a thread of the VMM).
HANDLER = "mce"
# A drain of the LRU batches (transient_refs) runs on whichever CPU drains; with two
# threads or more, the I/O thread's, so that it can fall between a conversion's steps.
_HOST_OPS = ("host_write", "host_read", "pin", "unpin", "gup_fast", "lru_drain")
_GUEST_OPS = ("guest_read", "guest_write", "guest_accept")


def thread_of(op: str, threads: int) -> str:
    """The thread making op's calls with ``threads`` threads (see THREADS)."""
    if op == "memory_failure":
        return HANDLER
    if op in _GUEST_OPS and threads >= 3:
        return "vcpu"
    if op in _HOST_OPS and threads >= 2:
        return "io"
    return "vmm"


def order_dependent(cfg: Config, ev: Event) -> bool:
    """Whether the action stops at the first failing page of a range of more than one
    page, so that its result depends on where each page sits: populate and guest_accept
    (gmemlab.model.step; set_attributes and punch_hole are plans whose phases are
    functions of one page and end in the same state whatever the order)."""
    return ev["op"] in ("populate", "guest_accept") and ev.get("size", 0) > cfg.page_size


class Spec:
    """config + bounds -> initial events, actions, boundary, properties.

    The NO_DIRECT_MAP series and the bounds' NO_DIRECT_MAP file go together: either one
    turns both on (a file created with the flag needs the series, and the series is
    only exercised by such a file).
    """

    def __init__(self, config: Config, bounds: Bounds = Bounds(), symmetry: bool = True):
        no_direct_map = bounds.no_direct_map or config.no_direct_map_series
        self.config = dataclasses.replace(config, no_direct_map_series=no_direct_map)
        if bounds.folio_pages:
            # The huge folios' geometry is the explorer's to vary, the model's to read.
            self.config = dataclasses.replace(self.config, folio_pages=bounds.folio_pages)
        self.bounds = dataclasses.replace(bounds, no_direct_map=no_direct_map)
        self.creates: list[Event] = self._creates()
        self.actions: list[Event] = self._actions()
        # Symmetry is off where an action walks pages in an order that matters (see the
        # class docstring, "Symmetry"): a whole-range populate.
        # Sorting pages also forgets which huge folio holds which page: only one folio
        # over the whole file (no tail) keeps step.huge_folio_rule blind to positions.
        spans = folio_spans(self.bounds.pages, self.config.folio_pages)
        geometry_blind = not self.config.huge_folios or [len(x) for x in spans] in ([], [self.bounds.pages])
        # Threads' calls name their pages (Call.event), which sorting would not move.
        self.symmetric = (symmetry and geometry_blind and self.bounds.ranges == "page+file"
                          and not self.bounds.interleave
                          and not any(order_dependent(self.config, a) for a in self.actions))
        self.always = [p for p in ALWAYS if not p.graph]
        self.sometimes = list(SOMETIMES)
        self.goal = launched_and_running

    @property
    def pages(self) -> int:
        return self.bounds.pages

    def within(self, s: VmState) -> bool:
        """The boundary: at most max_pins extra references on a page."""
        return all(p.pins <= self.bounds.max_pins for p in s.pages)

    def allowed(self, s: VmState, ev: Event, post: VmState) -> bool:
        """Whether the step s --ev--> post is explored: post within the boundary, and a
        thread begins no call that, run from s, would leave it (its thread would wait
        forever: only the io thread pins, so what it pins is known when it begins)."""
        if not self.within(post):
            return False
        if "thread" in ev and ev["op"] != "run" and post.threads != s.threads:
            from gmemlab.model.step import step
            return self.within(step(self.config, s, ev.without("thread")).state)
        return True

    def _creates(self) -> list[Event]:
        size = self.bounds.pages * self.config.page_size
        flag_sets = [("MMAP", "INIT_SHARED"), ("MMAP",)]
        if self.bounds.no_direct_map:
            flag_sets += [f + ("NO_DIRECT_MAP",) for f in flag_sets]
        creates = [event("create_gmem", size=size, flags=f) for f in flag_sets]
        # A create the model refuses (INIT_SHARED with the knob in_place_off on snp/tdx) is
        # no root: ask the model rather than restate its rule.
        from gmemlab.model.state import VmState
        from gmemlab.model.step import step
        return [e for e in creates if step(self.config, VmState(), e).state.created]

    def _ranges(self, whole: bool) -> list[tuple[int, int]]:
        ps, n = self.config.page_size, self.bounds.pages
        if self.bounds.ranges == "all":
            return [(i * ps, (j - i) * ps) for i in range(n) for j in range(i + 1, n + 1)]
        out = [(i * ps, ps) for i in range(n)]
        if whole and n > 1:
            out.append((0, n * ps))
        return out

    def _actions(self) -> list[Event]:
        cfg, b, ps = self.config, self.bounds, self.config.page_size
        acts: list[Event] = []
        flag_options = [()] if not cfg.features.content_modes else [(), ("ZERO",), ("PRESERVE",)]
        for off, size in self._ranges(whole=True):
            for attr in ("private", "shared"):
                for flags in flag_options:
                    acts.append(event("set_attributes", offset=off, size=size, attributes=attr, flags=flags))
        for off, size in self._ranges(whole=True):
            acts.append(event("punch_hole", offset=off, size=size))
        for i in range(b.pages):
            for proc in b.processes:
                acts.append(event("host_write", offset=i * ps, value=b.host_value, process=proc))
                acts.append(event("host_read", offset=i * ps, process=proc))
            acts.append(event("pin", offset=i * ps, size=ps))
            if not cfg.pins_forever:      # knob: nothing drops a reference once taken
                acts.append(event("unpin", offset=i * ps, size=ps))
        if cfg.has_te:
            # populate on each page and on the whole file (VMMs populate the whole image
            # in one call: partial progress and the huge-folio metric depend on it).
            for off, size in self._ranges(whole=True):
                acts.append(event("populate", offset=off, size=size, src=None))
                acts.append(event("populate", offset=off, size=size, src="buffer", value=b.source_value))
            acts.append(event("finalize"))
            for off, size in self._ranges(whole=False):
                acts.append(event("guest_accept", offset=off, size=size))
        if cfg.allocation_failures:
            # The same conversions (and populate-converts' populates) with the allocation failing.
            converts = cfg.rules.populate_converts
            acts += [a.replace(**{FAIL: "ENOMEM"}) for a in list(acts)
                     if a["op"] == "set_attributes" or (a["op"] == "populate" and converts)]
        if cfg.memory_failures:
            # knob: a memory error in each page's folio (step.memory_failure)
            acts += [event("memory_failure", offset=i * ps) for i in range(b.pages)]
        if cfg.transient_refs:
            # knob: the LRU batches drain (step.lru_drain_plan)
            acts.append(event("lru_drain"))
        for i in range(b.pages):
            for private in ((True, False) if cfg.has_te else (True,)):
                acts.append(event("guest_read", offset=i * ps, private=private))
                acts.append(event("guest_write", offset=i * ps, private=private, value=b.guest_value))
        if b.interleave:
            acts = self._threaded(acts)
        return acts

    def _threaded(self, acts: list[Event]) -> list[Event]:
        """The atomic actions as calls of the threads (THREADS), each thread's "run" after
        them. With more than one thread, the io thread pins through GUP-fast (the slow
        path is in its steps) rather than through a pin that is one step."""
        n, ps = self.bounds.interleave, self.config.page_size
        out = []
        for a in acts:
            if a["op"] == "pin" and n >= 2:
                a = a.replace(op="gup_fast")
            out.append(a.replace(thread=thread_of(a["op"], n)))
        return out + [event("run", thread=t) for t in self.thread_names]

    @functools.cached_property
    def thread_names(self) -> tuple:
        """The threads of an interleaved exploration, in the order Spec.ample tries them."""
        n = self.bounds.interleave
        return THREADS[:n] + ((HANDLER,) if n and self.config.memory_failures else ())

    def ample(self, s: VmState) -> frozenset | None:
        """Partial-order reduction: the actions to take in s, or None for all of them.

        A begin (a call event of a thread: gmemlab.model.threads) only records the call
        in its thread's slot: no other thread's step reads or writes that slot, so it is
        independent of every step of the others, and no property reads the slots, so it
        is invisible. Where a thread is idle, its begins are all it can do, so they are
        a persistent set: the first idle thread's begins are taken, the other threads'
        steps wait for the next state (the same steps, in an order that differs only by
        where the begin sits). Every cycle has a step that is no begin (a call must run
        to make its thread idle again), and those are taken only where no thread is
        idle, with every action: so no step is put off forever. tests/test_threads.py
        holds the reduced search to the unreduced one.
        """
        if not (self.bounds.interleave and self.bounds.reduce) or not s.created:
            return None
        busy = {c.thread for c in s.threads}
        for t in self.thread_names:
            if t not in busy:
                return self._begins[t]
        return None

    @functools.cached_property
    def _begins(self) -> dict:
        return {t: frozenset(k for k, a in enumerate(self.actions) if a.get("thread") == t and a["op"] != "run")
                for t in self.thread_names}
