"""The one search driver: breadth-first, a batch of states at a time.

It owns all the bookkeeping -- roots, deduplication and the order of ids, parents,
depth, the first violation of every always-property, the first witness of every
sometimes-property, the edges, the stuck states -- and asks an engine
(gmemlab.explore.engines) only for the successors of a batch. So every engine gives
the same exploration: the same states under the same ids, the same transitions in the
same order, the same discoveries; ``explore --json`` is the same byte for byte.

- A state is a context id and a row of page ids; its key is one int64 (context, then
  the page ids, bit fields sized to the pages). With symmetry a row is kept sorted in
  Page order (gmemlab.explore.core.canonical).
- A batch is every state found but not yet expanded (at most ``BATCH_TRANSITIONS``
  transitions' worth). Its successors that are not self loops are sorted by key and
  deduplicated, the first in (state, action) order winning, and looked up among the
  states found so far (a sorted array of keys). New states get ids in that order:
  what a one-state-at-a-time breadth-first loop would give.
- Properties: a transition property is judged on each kept transition (within the
  boundary), a state property on each new state, and the first of the two in
  (state, action) order is the one recorded: a shortest counterexample or witness.
- no_stuck_state: reverse reachability to the goal over the edge arrays.
"""

from __future__ import annotations

import sys
import time
from array import array

import numpy as np

from gmemlab.errors import UsageError
from gmemlab.explore.core import Discovery, Exploration, Parents, States, canonical, first_stuck
from gmemlab.explore.engines import ENGINES, Codec
from gmemlab.model.state import VmState
from gmemlab.model.step import step
from gmemlab.spec import Spec

CID_BITS = 8
BATCH_TRANSITIONS = 1 << 21


class _Grow:
    """An append-only numpy buffer (amortized doubling)."""

    def __init__(self, dtype, width: int | None = None):
        self.width = width
        self.a = np.empty((1024, width) if width else 1024, dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        m = len(values)
        if self.n + m > len(self.a):
            cap = max(2 * len(self.a), self.n + m)
            b = np.empty((cap, self.width) if self.width else cap, self.a.dtype)
            b[:self.n] = self.a[:self.n]
            self.a = b
        self.a[self.n:self.n + m] = values
        self.n += m

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


class _Visited:
    """The keys found so far, sorted, with their state ids (two buffers, merged)."""

    def __init__(self):
        self.n = 0
        self.k, self.s = np.empty(1024, np.int64), np.empty(1024, np.int32)
        self.k2, self.s2 = np.empty(1024, np.int64), np.empty(1024, np.int32)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """State id of each key, -1 where not found."""
        if not self.n:
            return np.full(len(keys), -1, np.int32)
        k = self.k[:self.n]
        pos = np.minimum(np.searchsorted(k, keys), self.n - 1)
        return np.where(k[pos] == keys, self.s[pos], -1).astype(np.int32)

    def add(self, keys: np.ndarray, sids: np.ndarray) -> None:
        """Merge new (sorted, absent) keys in."""
        n, m = self.n, len(keys)
        if n + m > len(self.k2):
            cap = 2 * (n + m)
            self.k2, self.s2 = np.empty(cap, np.int64), np.empty(cap, np.int32)
        at = np.searchsorted(self.k[:n], keys) + np.arange(m)
        old = np.ones(n + m, bool)
        old[at] = False
        self.k2[:n + m][old] = self.k[:n]
        self.s2[:n + m][old] = self.s[:n]
        self.k2[at], self.s2[at] = keys, sids
        self.k, self.k2, self.s, self.s2 = self.k2, self.k, self.s2, self.s
        self.n = n + m


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


def search(spec: Spec, engine: str = "fast", progress=False,
           max_states: int = 5_000_000) -> Exploration:
    """Explore every state the spec reaches; decide every property. progress: a line on
    stderr (True), or a callable (see Progress)."""
    t0 = time.monotonic()
    cfg, n = spec.config, spec.pages
    codec = Codec()
    eng = ENGINES[engine](spec, codec)
    x = Exploration(spec, engine=engine, backend=eng)
    show = Progress(progress)
    page_bits = (63 - CID_BITS) // n
    shift = [(n - 1 - j) * page_bits for j in range(n)]
    cshift = n * page_bits
    pmask = (1 << page_bits) - 1

    def key_of(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        if len(codec.pages) > pmask + 1 or len(codec.ctxs) > (1 << CID_BITS):
            raise UsageError(f"{len(codec.pages):,} page values do not fit a state key at {n} pages: "
                             "use fewer pages")
        key = c.astype(np.int64) << cshift
        for j in range(n):
            key |= r[:, j].astype(np.int64) << shift[j]
        return key

    # property name -> [property, always?, state bit or None, transition bit or None]
    judged: dict[str, list] = {}
    for k, p in enumerate(eng.state_props):
        judged.setdefault(p.name, [p, p.kind == "always", None, None])[2] = k
    for b, (p, _) in enumerate(eng.trans):
        judged.setdefault(p.name, [p, p.kind == "always", None, None])[3] = b

    def book(always: bool) -> dict:
        return x.violations if always else x.witnesses

    rows, cids = _Grow(np.int32, n), _Grow(np.int32)
    par, pact, depth, goal = _Grow(np.int32), _Grow(np.int32), _Grow(np.int32), _Grow(bool)
    visited = _Visited()

    # The roots: one per create_gmem event (duplicates dropped), judged for real.
    for k, ev in enumerate(spec.creates):
        s = step(cfg, VmState(), ev).state
        if spec.symmetric:
            s = canonical(s)[0]
        if len(s.pages) != n:
            raise UsageError("create_gmem did not make a file of the bounds' size")
        c, r = codec.row(s)
        key = key_of(np.array([r], np.int32), np.array([c], np.int32))
        if visited.lookup(key)[0] >= 0:
            continue
        sid = rows.n
        visited.add(key, np.array([sid], np.int32))
        rows.extend(np.array([r], np.int32))
        cids.extend(np.array([c], np.int32))
        par.extend(np.array([-1], np.int32))
        pact.extend(np.array([k], np.int32))
        depth.extend(np.array([1], np.int32))
        goal.extend(np.array([spec.goal(cfg, s)]))
        for name, (p, always, kbit, _) in judged.items():
            if kbit is not None and name not in book(always) and p.on_state(cfg, s) != always:
                book(always)[name] = Discovery(sid)

    A = len(spec.actions)
    src_out, dst_out, act_out = array("i"), array("i"), array("i")
    outdeg = _Grow(np.int32)
    fmax = max(1, BATCH_TRANSITIONS // A)
    act_tile = np.tile(np.arange(A, dtype=np.int32), fmax)
    head = 0
    while head < rows.n:
        F = min(rows.n - head, fmax)
        R, C = rows.view[head:head + F], cids.view[head:head + F]
        sids = head + np.arange(F, dtype=np.int32)
        want = 0
        for name, (p, always, _, b) in judged.items():
            if b is not None and name not in book(always):
                want |= 1 << b
        ex = eng.expand(R, C, want, spec.symmetric)
        dst = np.repeat(sids, A)
        nnew = 0
        if len(ex.flat):
            k = key_of(ex.rows, ex.cids)
            o = np.argsort(k)
            ks = k[o]
            brk = np.empty(len(ks), bool)
            brk[0] = True
            np.not_equal(ks[1:], ks[:-1], out=brk[1:])
            starts = np.flatnonzero(brk)
            U = ks[starts]
            first = np.minimum.reduceat(ex.flat[o], starts)   # first (state, action) of each key
            inv = np.empty(len(o), np.int64)
            inv[o] = np.cumsum(brk) - 1
            sidU = visited.lookup(U)
            newg = np.flatnonzero(sidU < 0)
            if newg.size:
                newg_o = newg[np.argsort(first[newg], kind="stable")]
                nnew = len(newg_o)
                sidU[newg_o] = rows.n + np.arange(nnew, dtype=np.int32)
                new_first = first[newg_o]
                pick = o[starts[newg_o]]
                nr, nc = ex.rows[pick], ex.cids[pick]
                p_ = sids[new_first // A]
                rows.extend(nr)
                cids.extend(nc)
                par.extend(p_)
                pact.extend((new_first % A).astype(np.int32))
                depth.extend(depth.view[p_] + 1)
                all_bits, any_bits = eng.state_bits(nr, nc)
                goal.extend((all_bits & eng.goal_bit) != 0)
                visited.add(U[newg], sidU[newg])
            dst[ex.flat] = sidU[inv]
        if ex.invalid is None:
            src_out.frombytes(memoryview(np.repeat(sids, A)).cast("B"))
            dst_out.frombytes(memoryview(dst).cast("B"))
            act_out.frombytes(memoryview(act_tile[:F * A]).cast("B"))
            outdeg.extend(np.full(F, A, np.int32))
        else:
            keep = ~ex.invalid.ravel()
            deg = (A - ex.invalid.sum(1)).astype(np.int32)
            src_out.frombytes(memoryview(np.repeat(sids, deg)).cast("B"))
            dst_out.frombytes(memoryview(dst[keep]).cast("B"))
            act_out.frombytes(memoryview(act_tile[:F * A][keep]).cast("B"))
            outdeg.extend(deg)

        # Properties: the first transition or new state, in (state, action) order. A new
        # state comes right after the transition that found it (2f+1 against 2f).
        for name, (p, always, kbit, b) in judged.items():
            if name in book(always):
                continue
            tkey = 2 * ex.tfirst[b] if b is not None and b in ex.tfirst else None
            found = None
            if kbit is not None and nnew:
                cand = ((all_bits >> kbit) & 1) == 0 if always else ((any_bits >> kbit) & 1) != 0
                base = rows.n - nnew
                for m in np.flatnonzero(cand).tolist():
                    if tkey is not None and 2 * int(new_first[m]) + 1 > tkey:
                        break
                    if p.on_state(cfg, codec.state(int(cids.view[base + m]), rows.view[base + m].tolist())) != always:
                        found = base + m
                        break
            if found is not None:
                book(always)[name] = Discovery(found)
            elif tkey is not None:
                t = tkey // 2
                book(always)[name] = Discovery(head + t // A, t % A)
        head += F
        show(rows.n, rows.n - head, int(depth.view[head - 1]))
        if rows.n > max_states and head < rows.n:
            # End cleanly with what was found: the discoveries so far are real, but what
            # was not expanded decides nothing (no "holds", no stuck state).
            x.incomplete = True
            break

    x.states = States(codec, rows.view, cids.view)
    x.parent = Parents(par.view, pact.view)
    x.depth = _int32_array(depth.view)
    x.src, x.dst, x.act = src_out, dst_out, act_out
    x.stuck = None if x.incomplete else first_stuck(outdeg.view, np.frombuffer(dst_out, np.int32),
                                                    goal.view.copy())
    show(rows.n, 0, x.max_depth, force=True)
    show.done()
    x.seconds = time.monotonic() - t0
    return x


def _int32_array(a: np.ndarray) -> array:
    out = array("i")
    out.frombytes(memoryview(np.ascontiguousarray(a, dtype=np.int32)).cast("B"))
    return out
