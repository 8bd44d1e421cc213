"""The one search driver: breadth-first, a batch of states at a time.

It owns all the bookkeeping -- roots, the order of ids, parents, depth, the first
violation of every always-property, the first witness of every sometimes-property,
the stuck states -- and asks an engine (gmemlab.explore.engines) only for the
successors of a batch. So every engine gives the same exploration: the same states
under the same ids, the same transitions in the same order, the same discoveries;
``explore --json`` is the same byte for byte.

- A state is one int64 key (KeyLayout: the context id, then the page ids, bit fields
  sized to the pages). With symmetry a row is kept sorted in Page order
  (gmemlab.explore.core.canonical).
- A batch is every state found but not yet expanded (at most ``BATCH_TRANSITIONS``
  transitions' worth). The engine gives each transition's successor key in (state,
  action) order; the table (gmemlab.explore.table) gives each its state id, new states
  numbered in that order: what a one-state-at-a-time breadth-first loop would give.
- The store, per state: the key (8 bytes), the parent (4) and the action from it (2),
  the goal bit (1), its slot in the table (12 at most 70% full), and for the states
  that are not goal states their ways out (no_stuck_state reads them: the reverse
  reachability of gmemlab.explore.core.first_stuck). Depth is the level a state's id
  falls in. Edges are not stored: ``edges`` recomputes them when a reader asks.
- Properties: a transition property is judged on each kept transition (within the
  boundary), a state property on each new state, and the first of the two in
  (state, action) order is the one recorded: a shortest counterexample or witness.
- Budgets: ``max_states`` and ``max_memory`` (bytes of the store) end the search
  cleanly with what it found (``incomplete``).
"""

from __future__ import annotations

import functools
import sys
import time
from array import array

import numpy as np

from gmemlab.errors import UsageError
from gmemlab.explore.core import Discovery, Exploration, Parents, States, canonical, first_stuck
from gmemlab.explore.engines import ENGINES, Codec
from gmemlab.explore.table import GROWTH, assign_with, new_table
from gmemlab.model.state import VmState
from gmemlab.model.step import step
from gmemlab.spec import Spec

CID_BITS = 8
BATCH_TRANSITIONS = 1 << 21


class KeyLayout:
    """A state as one int64: the context id in the top bits below the sign bit (CID_BITS
    of them; more where contexts are many: the calls threads have in flight are VM-wide
    fields, gmemlab.model.threads), then each page id in ``page_bits`` bits, page 0
    highest. The store keeps nothing else of a state; rows and contexts are decoded from
    keys when a batch is expanded."""

    def __init__(self, n: int, many_contexts: bool = False):
        self.n = n
        self.page_bits = (63 - CID_BITS) // n if not many_contexts else min((63 - CID_BITS) // n, 12)
        self.cid_bits = 63 - n * self.page_bits
        self.shift = np.array([(n - 1 - j) * self.page_bits for j in range(n)], np.int64)
        self.cshift = n * self.page_bits
        self.pmask = (1 << self.page_bits) - 1

    def check(self, codec) -> None:
        if len(codec.pages) > self.pmask + 1:
            raise UsageError(f"{len(codec.pages):,} page values do not fit a state key at {self.n} pages: "
                             "use fewer pages")
        if len(codec.ctxs) > (1 << self.cid_bits):
            raise UsageError(f"{len(codec.ctxs):,} VM-wide contexts do not fit a state key at {self.n} pages: "
                             "use fewer pages or threads")

    def encode(self, rows: np.ndarray, cids: np.ndarray) -> np.ndarray:
        key = cids.astype(np.int64) << self.cshift
        for j in range(self.n):
            key |= rows[:, j].astype(np.int64) << int(self.shift[j])
        return key

    def decode(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = ((keys[:, None] >> self.shift[None, :]) & self.pmask).astype(np.int32)
        return rows, (keys >> self.cshift).astype(np.int32)


class _Grow:
    """An append-only numpy buffer (grows by GROWTH)."""

    def __init__(self, dtype, width: int | None = None):
        self.width = width
        self.a = np.empty((1024, width) if width else 1024, dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        m = len(values)
        if self.n + m > len(self.a):
            cap = max(int(GROWTH * len(self.a)), self.n + m)
            b = np.empty((cap, self.width) if self.width else cap, self.a.dtype)
            b[:self.n] = self.a[:self.n]
            self.a = b
        self.a[self.n:self.n + m] = values
        self.n += m

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]

    @property
    def nbytes(self) -> int:
        return self.a.nbytes


class Progress:
    """A one-line progress report on stderr, at most a few times a second; or, given a
    callable, ``on(states, frontier, depth, done)`` after every batch and once at the end
    (done=True): the workbook's panel draws its progress bar from it, and an exception it
    raises ends the search there (the panel so stops an exploration no longer wanted)."""

    def __init__(self, on):
        self.on, self.last = on, 0.0
        self.report = on if callable(on) else None

    def __call__(self, states: int, frontier: int, depth: int, force: bool = False):
        if self.report is not None:
            self.report(states, frontier, depth, force)
            return
        if not self.on:
            return
        now = time.monotonic()
        if force or now - self.last > 0.25:
            self.last = now
            sys.stderr.write(f"\rexplore: {states:,} states, depth {depth}, frontier {frontier:,}   ")
            sys.stderr.flush()

    def done(self):
        if self.on and self.report is None:
            sys.stderr.write("\n")


def search(spec: Spec, engine: str = "fast", progress=False, max_states: int = 5_000_000,
           table=None, max_memory: int | None = None) -> Exploration:
    """Explore every state the spec reaches; decide every property.

    progress: a line on stderr (True), or a callable (see Progress). table: where the
    keys found so far live (``lookup(keys) -> state ids or -1``, ``add(sorted new keys,
    their ids)``, ``close()``); by default gmemlab.explore.table.new_table(). max_states,
    max_memory (bytes of the state store, see Exploration.store_bytes): past either the
    search ends cleanly with what it found (``incomplete``).
    """
    t0 = time.monotonic()
    cfg, n = spec.config, spec.pages
    codec = Codec()
    eng = ENGINES[engine](spec, codec)
    x = Exploration(spec, engine=engine, backend=eng)
    show = Progress(progress)
    lay = KeyLayout(n, many_contexts=bool(spec.bounds.interleave))

    # property name -> [property, always?, state bit or None, transition bit or None]
    judged: dict[str, list] = {}
    for k, p in enumerate(eng.state_props):
        judged.setdefault(p.name, [p, p.kind == "always", None, None])[2] = k
    for b, (p, _) in enumerate(eng.trans):
        judged.setdefault(p.name, [p, p.kind == "always", None, None])[3] = b

    def book(always: bool) -> dict:
        return x.violations if always else x.witnesses

    # The store, per state: its key, its parent and the action from it, whether it is a
    # goal state. Depth is not stored: ids are in breadth-first order, so depth d is
    # the ids from level[d - 1] on.
    keys, par, pact, goal = _Grow(np.int64), _Grow(np.int32), _Grow(np.int16), _Grow(bool)
    level = [0]
    visited = new_table() if table is None else table
    assign = getattr(visited, "assign", None) or functools.partial(assign_with, visited)
    # The successors of the expanded states that are not goal states (all no_stuck_state
    # needs): their ids, successor counts, successors (self loops left out).
    ng_ids, ng_cnt, ng_dst = _Grow(np.int32), _Grow(np.int32), _Grow(np.int32)
    stores = (keys, par, pact, goal, ng_ids, ng_cnt, ng_dst)

    def store_bytes() -> int:
        return sum(b.nbytes for b in stores) + getattr(visited, "nbytes", 0)

    # The roots: one per create_gmem event (duplicates dropped), judged for real.
    for k, ev in enumerate(spec.creates):
        s = step(cfg, VmState(), ev).state
        if spec.symmetric:
            s = canonical(s)[0]
        if len(s.pages) != n:
            raise UsageError("create_gmem did not make a file of the bounds' size")
        c, r = codec.row(s)
        lay.check(codec)
        key = lay.encode(np.array([r], np.int32), np.array([c], np.int32))
        if visited.lookup(key)[0] >= 0:
            continue
        sid = keys.n
        visited.add(key, np.array([sid], np.int32))
        keys.extend(key)
        par.extend(np.array([-1], np.int32))
        pact.extend(np.array([k], np.int16))
        goal.extend(np.array([spec.goal(cfg, s)]))
        for name, (p, always, kbit, _) in judged.items():
            if kbit is not None and name not in book(always) and p.on_state(cfg, s) != always:
                book(always)[name] = Discovery(sid)

    A = len(spec.actions)
    if A >= 1 << 15:
        raise UsageError(f"{A:,} actions: more than the explorer's store takes (32,767)")
    fmax = max(1, BATCH_TRANSITIONS // A)
    ntrans = 0
    head = 0
    while head < keys.n:
        F = min(keys.n - head, fmax)
        sids = head + np.arange(F, dtype=np.int32)
        want = 0
        for name, (p, always, _, b) in judged.items():
            if b is not None and name not in book(always):
                want |= 1 << b
        dense, invalid, tfirst = eng.successor_keys(keys.view[head:head + F], lay, want, spec.symmetric)
        dst, new_first = assign(dense, head, A, keys.n, ~goal.view[head:head + F])
        nnew = len(new_first)
        if nnew:
            nk = dense[new_first]
            p_ = (head + new_first // A).astype(np.int32)
            # depth: the parents' depths are non-decreasing, so are their children's
            # (and the parents are stored states: at most one level begins per batch)
            deeper = np.flatnonzero(np.searchsorted(level, p_, side="right") + 1 > len(level))
            if deeper.size:
                level.append(keys.n + int(deeper[0]))
            keys.extend(nk)
            par.extend(p_)
            pact.extend((new_first % A).astype(np.int16))
            nr, nc = lay.decode(nk)
            all_bits, any_bits = eng.state_bits(nr, nc)
            goal.extend((all_bits & eng.goal_bit) != 0)
        keep = None if invalid is None else ~invalid.ravel()
        ntrans += F * A if keep is None else int(keep.sum())
        # no_stuck_state's part: the non-goal states' ways out
        ng = np.flatnonzero(~goal.view[head:head + F])
        if ng.size:
            out = dst.reshape(F, A)[ng]
            moves = out != sids[ng, None]
            if keep is not None:
                moves &= keep.reshape(F, A)[ng]
            ng_ids.extend(sids[ng])
            ng_cnt.extend(moves.sum(1).astype(np.int32))
            ng_dst.extend(out[moves])

        # Properties: the first transition or new state, in (state, action) order. A new
        # state comes right after the transition that found it (2f+1 against 2f).
        for name, (p, always, kbit, b) in judged.items():
            if name in book(always):
                continue
            tkey = 2 * tfirst[b] if b is not None and b in tfirst else None
            found = None
            if kbit is not None and nnew:
                cand = ((all_bits >> kbit) & 1) == 0 if always else ((any_bits >> kbit) & 1) != 0
                base = keys.n - nnew
                for m in np.flatnonzero(cand).tolist():
                    if tkey is not None and 2 * int(new_first[m]) + 1 > tkey:
                        break
                    if p.on_state(cfg, codec.state(int(nc[m]), nr[m].tolist())) != always:
                        found = base + m
                        break
            if found is not None:
                book(always)[name] = Discovery(found)
            elif tkey is not None:
                t = tkey // 2
                book(always)[name] = Discovery(head + t // A, t % A)
        head += F
        show(keys.n, keys.n - head, int(np.searchsorted(level, head - 1, side="right")))
        if head < keys.n and (keys.n > max_states or (max_memory is not None and store_bytes() > max_memory)):
            # End cleanly with what was found: the discoveries so far are real, but what
            # was not expanded decides nothing (no "holds", no stuck state).
            x.incomplete = True
            x.stopped_by = "max_states" if keys.n > max_states else "max_memory"
            break

    x.store_bytes = store_bytes()
    x.states = States(codec, lay, keys.view)
    x.parent = Parents(par.view, pact.view)
    x.depth_max = len(level) if keys.n else 0
    x.ntransitions, x.expanded = ntrans, head
    x.stuck = None if x.incomplete else first_stuck(ng_ids.view, ng_cnt.view, ng_dst.view, goal.view.copy())
    if hasattr(visited, "close"):
        visited.close()
    show(keys.n, 0, x.max_depth, force=True)
    show.done()
    x.seconds = time.monotonic() - t0
    return x


def edges(x: Exploration) -> tuple[array, array, array]:
    """Every transition of an exploration within the boundary, self loops included, in
    (source, action) order: recomputed by its engine from the stored keys (the search
    keeps only what no_stuck_state needs). Only the expanded states have edges."""
    eng, lay, keys = x.backend, x.states.layout, x.states.keys
    order = np.argsort(keys, kind="stable").astype(np.int32)
    sk = keys[order]
    A = len(x.actions)
    fmax = max(1, BATCH_TRANSITIONS // A)
    act_tile = np.tile(np.arange(A, dtype=np.int32), fmax)
    src_out, dst_out, act_out = array("i"), array("i"), array("i")
    for head in range(0, x.expanded, fmax):
        F = min(x.expanded - head, fmax)
        sids = head + np.arange(F, dtype=np.int32)
        dense, invalid, _ = eng.successor_keys(keys[head:head + F], lay, 0, x.symmetry)
        src, dst, act = np.repeat(sids, A), np.repeat(sids, A), act_tile[:F * A]
        have = np.flatnonzero(dense >= 0)
        k = dense[have]
        pos = np.minimum(np.searchsorted(sk, k), len(sk) - 1)
        if not (sk[pos] == k).all():
            raise RuntimeError("a successor the search did not store: the model changed since")
        dst[have] = order[pos]
        if invalid is not None:
            keep = ~invalid.ravel()
            src, dst, act = src[keep], dst[keep], act[keep]
        for out, a in ((src_out, src), (dst_out, dst), (act_out, act)):
            out.frombytes(memoryview(np.ascontiguousarray(a, np.int32)).cast("B"))
    return src_out, dst_out, act_out
