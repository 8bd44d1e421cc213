"""Breadth-first exploration of every state a proposal can reach.

The checker is apart from the model: it knows the step function, the properties and
the action set, nothing else. It works on plain data (a list of states, arrays of
edges) and returns data; networkx graphs are built on request (gmemlab.explore.graph).
Breadth-first order makes every counterexample and witness a shortest one.

Actions. From a fresh guest_memfd of N pages (created with MMAP, with and without
INIT_SHARED) the explorer tries, in every state and in a fixed order: every op on each
single page, for each host process and each argument value the bounds allow, and the
range calls (set_attributes, punch_hole, populate, guest_accept) on each single page and
on the whole file. ``Bounds(ranges="all")`` adds every contiguous range.

Symmetry. With single-page and whole-file calls only, the semantics do not depend on
where a page sits, except through the order in which a whole-file call walks the pages:
set_attributes and punch_hole end in the same state whatever the order, so the set of
reachable states is closed under permuting pages, and states are stored sorted by page
(a canonical representative). populate and guest_accept stop at the first failing page,
so their whole-file form is order-dependent: with symmetry on, they are explored page by
page only, and so they are with symmetry off (the same action set: a test shows both
give the same verdicts). ``ranges="all"`` turns symmetry off.

Engines. The reference loop (``_explore_reference``) calls step() on every (state,
action). The batched engine (gmemlab.explore.fastbfs, gmemlab.explore.pagetable) finds
the very same exploration -- ids, parents, transitions in order, first violations and
witnesses -- some 50-100 times faster, by evaluating step() once per (action, VM-wide
fields, page value) and doing the search on numpy arrays; ``explore`` uses it wherever
it applies (tests/test_fastbfs.py holds the two to each other).
"""

from __future__ import annotations

import sys
import time
from array import array
from dataclasses import dataclass, field

from gmemlab.errors import UsageError
from gmemlab.invariants import ALWAYS, SOMETIMES, Transition, launched_and_running
from gmemlab.model.proposals import PROPOSALS
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import FAIL, step


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

    def __post_init__(self):
        if not 1 <= self.pages <= 8:
            raise UsageError(f"pages must be 1..8, got {self.pages}")
        if self.ranges not in ("page+file", "all"):
            raise UsageError(f"ranges must be 'page+file' or 'all', got {self.ranges!r}")


def create_events(cfg: Config, b: Bounds) -> list[dict]:
    """The create_gmem calls the exploration starts from."""
    size = b.pages * cfg.page_size
    flag_sets = [["MMAP", "INIT_SHARED"], ["MMAP"]]
    if b.no_direct_map:
        flag_sets += [f + ["NO_DIRECT_MAP"] for f in flag_sets]
    return [{"op": "create_gmem", "size": size, "flags": tuple(f), "process": "vmm"} for f in flag_sets]


def _ranges(cfg: Config, b: Bounds, whole: bool) -> list[tuple[int, int]]:
    ps, n = cfg.page_size, b.pages
    if b.ranges == "all":
        return [(i * ps, (j - i) * ps) for i in range(n) for j in range(i + 1, n + 1)]
    out = [(i * ps, ps) for i in range(n)]
    if whole and n > 1:
        out.append((0, n * ps))
    return out


def actions(cfg: Config, b: Bounds) -> list[dict]:
    """Every event the explorer tries in every state, in a fixed order."""
    ps = cfg.page_size
    acts: list[dict] = []
    flag_options = [()] if cfg.series != "v5" else [(), ("ZERO",), ("PRESERVE",)]
    for off, size in _ranges(cfg, b, whole=True):
        for attr in ("private", "shared"):
            for flags in flag_options:
                acts.append({"op": "set_attributes", "offset": off, "size": size,
                             "attributes": attr, "flags": flags, "process": "vmm"})
    for off, size in _ranges(cfg, b, whole=True):
        acts.append({"op": "punch_hole", "offset": off, "size": size, "process": "vmm"})
    for i in range(b.pages):
        for proc in b.processes:
            acts.append({"op": "host_write", "offset": i * ps, "value": b.host_value, "process": proc})
            acts.append({"op": "host_read", "offset": i * ps, "process": proc})
        acts.append({"op": "pin", "offset": i * ps, "size": ps, "process": "vmm"})
        acts.append({"op": "unpin", "offset": i * ps, "size": ps, "process": "vmm"})
    if cfg.has_te:
        for off, size in _ranges(cfg, b, whole=False):
            acts.append({"op": "populate", "offset": off, "size": size, "src": None, "process": "vmm"})
            acts.append({"op": "populate", "offset": off, "size": size, "src": "buffer",
                         "value": b.source_value, "process": "vmm"})
        acts.append({"op": "finalize", "process": "vmm"})
        for off, size in _ranges(cfg, b, whole=False):
            acts.append({"op": "guest_accept", "offset": off, "size": size, "process": "vmm"})
    if cfg.allocation_failures:
        # The same conversions (and populate-converts' populates) with the allocation failing.
        converts = PROPOSALS[cfg.proposal].populate_converts
        acts += [{**a, FAIL: "ENOMEM"} for a in list(acts)
                 if a["op"] == "set_attributes" or (a["op"] == "populate" and converts)]
    for i in range(b.pages):
        for private in ((True, False) if cfg.has_te else (True,)):
            acts.append({"op": "guest_read", "offset": i * ps, "private": private, "process": "vmm"})
            acts.append({"op": "guest_write", "offset": i * ps, "private": private,
                         "value": b.guest_value, "process": "vmm"})
    return acts


def _pin_bounded(b: Bounds):
    def ok(s: VmState) -> bool:
        return all(p.pins <= b.max_pins for p in s.pages)
    return ok


def canonical(s: VmState) -> tuple[VmState, tuple[int, ...]]:
    """The page-sorted representative and order[j] = the index its page j came from."""
    order = tuple(sorted(range(len(s.pages)), key=s.pages.__getitem__))
    return s._replace(pages=tuple(s.pages[i] for i in order)), order


def map_event(ev: dict, order: tuple[int, ...], page_size: int, npages: int) -> dict:
    """An event on a canonical state, moved onto the concrete state it stands for."""
    if "offset" not in ev or ev["op"] == "create_gmem":
        return ev
    size = ev.get("size", page_size)
    if size == npages * page_size and ev["offset"] == 0:
        return ev
    ev = dict(ev)
    ev["offset"] = order[ev["offset"] // page_size] * page_size
    return ev


@dataclass
class Discovery:
    """Where a property was first decided: the state (and for transitions the action)."""

    state: int
    action: int | None = None   # index into ``actions``; None for a state property


@dataclass
class Exploration:
    config: Config
    bounds: Bounds
    symmetry: bool
    actions: list
    creates: list
    states: list = field(default_factory=list)          # state id -> VmState (canonical if symmetry)
    parent: list = field(default_factory=list)          # state id -> (parent id, action) ; -1 for roots
    depth: array = field(default_factory=lambda: array("i"))
    src: array = field(default_factory=lambda: array("i"))
    dst: array = field(default_factory=lambda: array("i"))
    act: array = field(default_factory=lambda: array("i"))
    violations: dict = field(default_factory=dict)      # always name -> Discovery
    witnesses: dict = field(default_factory=dict)       # sometimes name -> Discovery
    stuck: int | None = None                            # first state that cannot reach the goal
    seconds: float = 0.0
    engine: str = "reference"                           # which engine explored (see explore)
    pagetable: object = None                            # the batched engine's memo (fastbfs)

    @property
    def transitions(self) -> int:
        return len(self.src)

    def outcome(self, sid: int, action: int) -> dict:
        """The model's outcome of an action in a stored state (recomputed, not stored)."""
        return step(self.config, self.states[sid], self.actions[action]).outcome

    def action_outcomes(self, ops: tuple | None = None) -> list[tuple[int, dict]]:
        """Every distinct (action, outcome) pair over the transitions (of the actions whose
        op is in ``ops``, if given), by action, then first appearance: what summaries such
        as compare.error_channels need, without a step() per transition."""
        wanted = {a for a, ev in enumerate(self.actions) if ops is None or ev["op"] in ops}
        if self.pagetable is not None:
            from gmemlab.explore.fastbfs import action_outcomes
            return action_outcomes(self, wanted)
        seen: dict[tuple, tuple[int, dict]] = {}
        for sid, a in zip(self.src, self.act):
            if a not in wanted:
                continue
            out = self.outcome(sid, a)
            seen.setdefault((a, repr(sorted(out.items()))), (a, out))
        return sorted(seen.values(), key=lambda p: p[0])

    def path_events(self, sid: int, action: int | None = None) -> list[dict]:
        """The concrete trace events (with the model's outcomes as "expect") that reach
        state sid, and then take action (if given): a replayable counterexample."""
        chain = []
        while sid != -1:
            psid, a = self.parent[sid]
            chain.append(a)
            sid = psid
        chain.reverse()
        if action is not None:
            chain.append(action)
        return self.chain_events(chain)

    def chain_events(self, chain: list[int]) -> list[dict]:
        """Concrete events for a chain [create index, action, action, ...] from a root."""
        cfg, n, ps = self.config, self.bounds.pages, self.config.page_size
        steps = [self.creates[chain[0]]] + [self.actions[a] for a in chain[1:]]
        out, state = [], VmState()
        order = tuple(range(n))
        for k, ev in enumerate(steps):
            concrete = map_event(ev, order, ps, n) if self.symmetry and k > 0 else ev
            state, outcome, _ = step(cfg, state, concrete)
            e = {key: v for key, v in concrete.items() if key != FAIL}  # "expect" says ENOMEM
            e["expect"] = outcome
            out.append(e)
            if self.symmetry:
                order = canonical(state)[1]
        return out

    def counterexample(self, name: str) -> list[dict] | None:
        if name == "no_stuck_state":
            return None if self.stuck is None else self.path_events(self.stuck)
        d = self.violations.get(name)
        return None if d is None else self.path_events(d.state, d.action)

    def witness(self, name: str) -> list[dict] | None:
        d = self.witnesses.get(name)
        return None if d is None else self.path_events(d.state, d.action)

    def holds(self, name: str) -> bool:
        return self.counterexample(name) is None if name == "no_stuck_state" else name not in self.violations

    def to_json(self) -> dict:
        """The object INTERFACES.md specifies for ``explore --json`` (plus witnesses)."""
        from gmemlab.traces.format import event_json
        inv = {}
        for p in ALWAYS:
            cx = self.counterexample(p.name)
            inv[p.name] = {"holds": cx is None,
                           "counterexample": None if cx is None else [event_json(e) for e in cx]}
        wit = {p.name: (self.witnesses.get(p.name) is not None) for p in SOMETIMES}
        return {"states": len(self.states), "transitions": self.transitions,
                "invariants": inv, "sometimes": wit,
                "config": {"proposal": self.config.proposal, "platform": self.config.platform,
                           "series": self.config.series, "pages": self.bounds.pages,
                           "symmetry": self.symmetry,
                           "knobs": [k for k in ("refuse_unprepared_populate", "convert_after_populate",
                                                 "no_direct_map_series") if getattr(self.config, k)]}}


def judge_state(x: "Exploration", sid: int, s: VmState, always: list, sometimes: list) -> None:
    """Record the first state that breaks each always-property and the first witness of
    each sometimes-property (states arrive in BFS order, so the first is a shallowest)."""
    for p in always:
        if p.name not in x.violations and not p.on_state(x.config, s):
            x.violations[p.name] = Discovery(sid)
    for p in sometimes:
        if p.name not in x.witnesses and p.on_state(x.config, s):
            x.witnesses[p.name] = Discovery(sid)


class _Progress:
    """A one-line progress report on stderr, at most a few times a second."""

    def __init__(self, on: bool):
        self.on, self.last = on, 0.0

    def __call__(self, states: int, frontier: int, depth: int, force: bool = False):
        if not self.on:
            return
        now = time.monotonic()
        if force or now - self.last > 0.25:
            self.last = now
            sys.stderr.write(f"\rexplore: {states:,} states, depth {depth}, frontier {frontier:,}   ")
            sys.stderr.flush()

    def done(self):
        if self.on:
            sys.stderr.write("\n")


ENGINES = ("auto", "batched", "reference")


def explore(cfg: Config, bounds: Bounds = Bounds(), symmetry: bool = True,
            progress: bool = False, max_states: int = 5_000_000, engine: str = "auto") -> Exploration:
    """Explore every reachable state; decide every property.

    Two engines find the same exploration (states, ids, parents, transitions in order,
    first violations and witnesses, first stuck state): "reference", the loop below
    that calls step() on every transition, and "batched" (gmemlab.explore.fastbfs),
    which looks step() up per page value and works on batches of states with numpy.
    "auto" takes the batched one where it applies (ranges "page+file" and page-local
    knobs; see gmemlab.explore.pagetable) and the reference loop otherwise, and at one
    page (a few hundred states, where the batched engine's fixed costs are the whole
    bill and the reference loop is a little faster).

    >>> r = explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1))
    >>> r.holds("te_private_implies_kvm_private"), r.holds("private_not_host_mapped")
    (False, True)
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if bounds.no_direct_map and not cfg.no_direct_map_series:
        from dataclasses import replace
        cfg = replace(cfg, no_direct_map_series=True)
    if bounds.ranges == "all":
        symmetry = False
    t0 = time.monotonic()
    acts = actions(cfg, bounds)
    creates = create_events(cfg, bounds)
    show = _Progress(progress)
    x = None
    if engine == "batched" or (engine == "auto" and bounds.pages > 1):
        x = _explore_batched(cfg, bounds, symmetry, acts, creates, show, max_states, engine == "batched")
    if x is None:
        x = Exploration(cfg, bounds, symmetry, acts, creates)
        _explore_reference(x, show, max_states)
    show(len(x.states), 0, x.depth[-1] if len(x.depth) else 0, force=True)
    show.done()
    x.seconds = time.monotonic() - t0
    return x


def _explore_batched(cfg, bounds, symmetry, acts, creates, show, max_states, required):
    """The batched engine's exploration, or None where it does not apply."""
    why = None
    try:
        from gmemlab.explore.fastbfs import explore_batched
        from gmemlab.explore.pagetable import NotLocal, supported
    except ImportError as e:  # numpy missing
        why = f"numpy is not installed ({e})"
    else:
        if bounds.ranges != "page+file":
            why = "ranges 'all' names ranges that are neither one page nor the whole file"
        elif not supported(cfg):
            why = "a knob that is not page-local (see gmemlab.explore.pagetable.LOCAL_FIELDS)"
        else:
            x = Exploration(cfg, bounds, symmetry, acts, creates)
            try:
                explore_batched(x, symmetry, show, max_states)
                x.engine = "batched"
                return x
            except NotLocal as e:
                why = str(e)
    if required:
        raise UsageError(f"the batched explorer does not apply: {why}")
    return None


def _explore_reference(x: Exploration, show, max_states: int) -> None:
    """The reference loop: step() on every (state, action), one state at a time."""
    cfg, bounds, symmetry, acts, creates = x.config, x.bounds, x.symmetry, x.actions, x.creates
    index: dict[VmState, int] = {}
    state_props = [p for p in ALWAYS if p.on_state is not None]
    trans_props = [p for p in ALWAYS if p.on_transition is not None]
    some_state = [p for p in SOMETIMES if p.on_state is not None]
    some_trans = [p for p in SOMETIMES if p.on_transition is not None]
    pin_ok = _pin_bounded(bounds)
    canon = canonical if symmetry else (lambda s: (s, None))

    def add(s: VmState, parent: int, action: int, d: int) -> int:
        sid = len(x.states)
        index[s] = sid
        x.states.append(s)
        x.parent.append((parent, action))
        x.depth.append(d)
        judge_state(x, sid, s, state_props, some_state)
        return sid

    for k, ev in enumerate(creates):
        s = canon(step(cfg, VmState(), ev).state)[0]
        if s not in index:
            add(s, -1, k, 1)

    head = 0
    while head < len(x.states):
        sid = head
        head += 1
        s = x.states[sid]
        d = x.depth[sid]
        for a, ev in enumerate(acts):
            post, outcome, effects = step(cfg, s, ev)
            if not pin_ok(post):
                continue
            t = Transition(s, ev, outcome, post, effects)
            for p in trans_props:
                if p.name not in x.violations and not p.on_transition(cfg, t):
                    x.violations[p.name] = Discovery(sid, a)
            for p in some_trans:
                if p.name not in x.witnesses and p.on_transition(cfg, t):
                    x.witnesses[p.name] = Discovery(sid, a)
            post = canon(post)[0]
            tid = index.get(post)
            if tid is None:
                tid = add(post, sid, a, d + 1)
                if len(x.states) > max_states:
                    raise UsageError(f"more than {max_states:,} states: use fewer pages or processes")
            x.src.append(sid)
            x.dst.append(tid)
            x.act.append(a)
        show(len(x.states), len(x.states) - head, d)
    x.stuck = _first_stuck(cfg, x)


def _first_stuck(cfg: Config, x: Exploration) -> int | None:
    """The first (so shallowest) state from which no path reaches the goal."""
    n = len(x.states)
    preds: list[list[int]] = [[] for _ in range(n)]
    for s, t in zip(x.src, x.dst):
        if s != t:
            preds[t].append(s)
    good = bytearray(n)
    stack = [i for i, s in enumerate(x.states) if launched_and_running(cfg, s)]
    for i in stack:
        good[i] = 1
    while stack:
        t = stack.pop()
        for s in preds[t]:
            if not good[s]:
                good[s] = 1
                stack.append(s)
    return next((i for i in range(n) if not good[i]), None)
