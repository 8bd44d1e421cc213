"""What an exploration found, as plain data: states, edges, discoveries.

The search driver (gmemlab.explore.search) fills an Exploration; everything else
(compare, graphs, the CLI, the workbook) reads it. States are stored as a context id and
a row of page ids (gmemlab.explore.engines.Codec) and decoded into VmStates only when
read; edges are recomputed by the engine when first read (int32 arrays in (source, action) order).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np

from gmemlab.model.state import VmState
from gmemlab.model.step import step
from gmemlab.spec import Spec


def canonical(s: VmState) -> tuple[VmState, tuple[int, ...]]:
    """The page-sorted representative and order[j] = the index its page j came from."""
    order = tuple(sorted(range(len(s.pages)), key=s.pages.__getitem__))
    return s._replace(pages=tuple(s.pages[i] for i in order)), order


def map_event(ev, order: tuple[int, ...], page_size: int, npages: int):
    """An event on a canonical state, moved onto the concrete state it stands for."""
    if "offset" not in ev or ev["op"] == "create_gmem":
        return ev
    size = ev.get("size", page_size)
    if size == npages * page_size and ev["offset"] == 0:
        return ev
    return ev.replace(offset=order[ev["offset"] // page_size] * page_size)


@dataclass
class Discovery:
    """Where a property was first decided: the state (and for transitions the action)."""

    state: int
    action: int | None = None   # index into ``actions``; None for a state property


class States:
    """The explored states: one int64 key each (gmemlab.explore.search.KeyLayout: a
    context id and a row of page ids), decoded into VmStates only when read."""

    def __init__(self, codec, layout, keys: np.ndarray):
        self.codec, self.layout, self.keys = codec, layout, keys
        self._decoded = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        rows, cids = self.layout.decode(self.keys[i:i + 1])
        return self.codec.state(int(cids[0]), rows[0].tolist())

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _decode(self):
        if self._decoded is None:
            self._decoded = self.layout.decode(self.keys)
        return self._decoded

    @property
    def rows(self) -> np.ndarray:
        """(states, pages) page ids (decoded on first use, then kept)."""
        return self._decode()[0]

    @property
    def cids(self) -> np.ndarray:
        """Each state's context id."""
        return self._decode()[1]


class Parents:
    """state id -> (parent id, action); a root's parent is -1 and its action the index
    of the create_gmem event it comes from."""

    def __init__(self, parent: np.ndarray, action: np.ndarray):
        self.parent, self.action = parent, action

    def __len__(self) -> int:
        return len(self.parent)

    def __getitem__(self, i):
        return int(self.parent[i]), int(self.action[i])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


@dataclass
class Exploration:
    """What a search found. Edges are not kept by the search (they would be most of its
    memory): ``src``, ``dst``, ``act`` recompute them with the engine on first use."""

    spec: Spec
    engine: str = "fast"                                  # the engine that answered successors
    states: States | list = field(default_factory=list)   # state id -> VmState (canonical if symmetric)
    parent: Parents | list = field(default_factory=list)
    violations: dict = field(default_factory=dict)        # always name -> Discovery
    witnesses: dict = field(default_factory=dict)         # sometimes name -> Discovery
    stuck: int | None = None                              # first state that cannot reach the goal
    seconds: float = 0.0
    incomplete: bool = False                              # stopped at a budget: only what was found counts
    stopped_by: str | None = None                         # which: "max_states" or "max_memory"
    backend: object = None                                # the engine object (outcomes, edges on request)
    ntransitions: int = 0                                 # transitions within the boundary
    depth_max: int = 0                                    # the deepest breadth-first level
    expanded: int = 0                                     # states whose successors were computed
    store_bytes: int = 0                                  # the search's state store at its end
    _edges: tuple | None = field(default=None, repr=False)

    def _edge_arrays(self) -> tuple:
        if self._edges is None:
            from gmemlab.explore.search import edges
            self._edges = edges(self)
        return self._edges

    @property
    def src(self) -> array:
        """Each transition's source state id, in (source, action) order."""
        return self._edge_arrays()[0]

    @property
    def dst(self) -> array:
        return self._edge_arrays()[1]

    @property
    def act(self) -> array:
        """Each transition's action (an index into ``actions``)."""
        return self._edge_arrays()[2]

    # The Spec's parts, under the names the readers use.
    @property
    def config(self):
        return self.spec.config

    @property
    def bounds(self):
        return self.spec.bounds

    @property
    def actions(self):
        return self.spec.actions

    @property
    def creates(self):
        return self.spec.creates

    @property
    def symmetry(self) -> bool:
        return self.spec.symmetric

    @property
    def transitions(self) -> int:
        return self.ntransitions

    @property
    def max_depth(self) -> int:
        return self.depth_max

    def outcome(self, sid: int, action: int) -> dict:
        """The model's outcome of an action in a stored state (recomputed, not stored)."""
        return step(self.config, self.states[sid], self.actions[action]).outcome

    def action_outcomes(self, ops: tuple | None = None) -> list[tuple[int, dict]]:
        """Every distinct (action, outcome) pair over the transitions (of the actions whose
        op is in ``ops``, if given), by action, then first appearance."""
        wanted = [a for a, ev in enumerate(self.actions) if ops is None or ev["op"] in ops]
        return self.backend.action_outcomes(self, wanted)

    def path_events(self, sid: int, action: int | None = None) -> list:
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

    def chain_events(self, chain: list[int]) -> list:
        """Concrete events for a chain [create index, action, action, ...] from a root.

        With symmetry the stored states are page-sorted: each action is moved onto the
        concrete state through the sorting permutation, and stepped there, so "expect"
        (an EAGAIN's error_offset included) is what the concrete call returns.
        """
        from gmemlab.traces.walk import trace_of, walk
        n, ps = self.bounds.pages, self.config.page_size
        steps = [self.creates[chain[0]]] + [self.actions[a] for a in chain[1:]]

        def concrete():
            yield steps[0]
            for ev in steps[1:]:
                # the page order of the state the walk reached (identity without symmetry)
                order = canonical(w.state)[1] if self.symmetry else tuple(range(n))
                yield map_event(ev, order, ps, n)
        w = walk(self.config, concrete(), engine="pages")
        return trace_of(w, self.config)

    def counterexample(self, name: str) -> list | None:
        if name == "no_stuck_state":
            return None if self.stuck is None else self.path_events(self.stuck)
        d = self.violations.get(name)
        return None if d is None else self.path_events(d.state, d.action)

    def witness(self, name: str) -> list | None:
        d = self.witnesses.get(name)
        return None if d is None else self.path_events(d.state, d.action)

    def holds(self, name: str) -> bool:
        return self.stuck is None if name == "no_stuck_state" else name not in self.violations

    def to_json(self) -> dict:
        """The object ``explore --json`` prints (docs/cli.md), plus witnesses and config.
        The same for every engine, byte for byte."""
        from gmemlab.invariants import ALWAYS, SOMETIMES
        from gmemlab.traces.format import event_json
        inv = {}
        for p in ALWAYS:
            cx = self.counterexample(p.name)
            if cx is None and self.incomplete:
                continue   # not found yet is not "holds"
            inv[p.name] = {"holds": cx is None,
                           "counterexample": None if cx is None else [event_json(e) for e in cx]}
        wit = {p.name: (self.witnesses.get(p.name) is not None) for p in SOMETIMES}
        cfg = self.config
        done = {} if not self.incomplete else {"complete": False}
        return {"states": len(self.states), "transitions": self.transitions, "depth": self.max_depth,
                **done, "invariants": inv, "sometimes": wit,
                "config": {"proposal": cfg.proposal, "platform": cfg.platform, "series": cfg.series,
                           "pages": self.bounds.pages, "symmetry": self.symmetry, "knobs": cfg.knobs}}


def first_stuck(ids: np.ndarray, counts: np.ndarray, dst: np.ndarray, good: np.ndarray) -> int | None:
    """The first state from which no path reaches a goal state (good: the goal states).

    Only the states that are not goal states need their ways out: ``ids`` (ascending),
    each one's number of successors ``counts`` and the successors ``dst`` (one slice per
    state, in order; self loops may be left out). Blocks of them are visited from the
    last found to the first (deeper states are usually nearer the goal), each block's
    states not yet known good look at their successors, until a whole sweep learns
    nothing.
    """
    if good.all():
        return None
    ptr = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    block = 1 << 16
    changed = True
    while changed:
        changed = False
        for hi in range(len(ids), 0, -block):
            lo = max(0, hi - block)
            while True:
                todo = lo + np.flatnonzero(~good[ids[lo:hi]])
                lens = ptr[todo + 1] - ptr[todo]
                total = int(lens.sum())
                if total == 0:
                    break
                ends = np.cumsum(lens)
                idx = np.arange(total, dtype=np.int64) + np.repeat(ptr[todo] - (ends - lens), lens)
                hit = good[dst[idx]]
                nz = lens > 0
                anyhit = np.zeros(todo.size, bool)
                anyhit[nz] = np.logical_or.reduceat(hit, (ends - lens)[nz])
                if not anyhit.any():
                    break
                good[ids[todo[anyhit]]] = True
                changed = True
    bad = np.flatnonzero(~good)
    return int(bad[0]) if bad.size else None
