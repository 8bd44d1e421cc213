"""The explorer's fast path: the same breadth-first search, a batch of states at a time.

It finds exactly what gmemlab.explore.bfs's reference loop finds -- the same states
under the same ids, the same parent of each, the same transitions in the same order,
the same first violation and witness of each property, the same first stuck state --
but evaluates step() once per (action, VM-wide fields, page value) through a
PageTable, and does the rest with numpy over a batch of states at once:

- A state is a context id and a row of page ids; its fingerprint is one int64
  (context, then the page ids, up to 20 bits each: 63 bits in all, so up to 5 pages
  with 2,048 page values; past that NotLocal sends explore() to the reference loop).
  With symmetry a row is kept sorted in Page order, which is what bfs.canonical does.
- A batch is every state found but not yet expanded (at most ``BATCH_TRANSITIONS``
  transitions' worth). For each action, the batch's successors are looked up; the
  successors that are not self loops are sorted by fingerprint, deduplicated (the
  first occurrence in (state, action) order wins, as in the one-at-a-time loop) and
  looked up among the states found so far (a sorted array of fingerprints).
- Properties are decided the way the reference loop decides them: a transition
  property is judged on each transition kept (within the pin bound), a state property
  on each new state, and the first of the two in (state, action) order is the one
  recorded. State properties are first judged per page (PageTable.page_bits); a
  state that some page alone (or the context alone) breaks, or for a "sometimes"
  property satisfies, is then judged for real, so only such states cost a call.
- no_stuck_state: the goal (launched_and_running) holds where it holds on the context
  and on every page alone (it is "finalized and no page TE-private while shared");
  reverse reachability runs over the edge arrays (first_stuck).
- The transitions go straight into the Exploration's int32 arrays; states are decoded
  into VmStates only when read (States, Parents).
"""

from __future__ import annotations

from array import array

import numpy as np

from gmemlab.errors import UsageError
from gmemlab.explore.pagetable import NotLocal, PageTable
from gmemlab.invariants import ALWAYS, SOMETIMES, launched_and_running
from gmemlab.model.state import VmState
from gmemlab.model.step import step

CID_BITS = 6
BATCH_TRANSITIONS = 1 << 21


class _Grow:
    """A growable numpy array (amortized doubling) of rows of a fixed shape."""

    def __init__(self, dtype, width: int | None = None):
        shape = (1024,) if width is None else (1024, width)
        self.a = np.zeros(shape, dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        k = len(values)
        if self.n + k > len(self.a):
            cap = max(2 * len(self.a), self.n + k)
            b = np.zeros((cap,) + self.a.shape[1:], self.a.dtype)
            b[:self.n] = self.a[:self.n]
            self.a = b
        self.a[self.n:self.n + k] = values
        self.n += k

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


class States:
    """The explored states by id, decoded on access (a list's reading interface)."""

    def __init__(self, table: PageTable, rows: np.ndarray, cids: np.ndarray):
        self._t, self._rows, self._cids = table, rows, cids

    def __len__(self) -> int:
        return len(self._cids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._t.state(int(self._cids[i]), self._rows[i].tolist())

    def __iter__(self):
        state, rows, cids = self._t.state, self._rows.tolist(), self._cids.tolist()
        for c, r in zip(cids, rows):
            yield state(c, r)


class Parents:
    """parent[sid] = (parent id or -1 for a root, action or create index), decoded on access."""

    def __init__(self, parent: np.ndarray, action: np.ndarray):
        self._p, self._a = parent, action

    def __len__(self) -> int:
        return len(self._p)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return int(self._p[i]), int(self._a[i])

    def __iter__(self):
        return zip(self._p.tolist(), self._a.tolist())


def _int32_array(a: np.ndarray) -> array:
    out = array("i")
    out.frombytes(memoryview(np.ascontiguousarray(a, dtype=np.int32)).cast("B"))
    return out


def explore_batched(x, symmetry: bool, show, max_states: int) -> None:
    """Fill the Exploration ``x`` (config, bounds, actions and creates already set)."""
    from gmemlab.explore.bfs import Discovery, canonical, judge_state

    cfg, n = x.config, x.bounds.pages
    page_bits = min(20, (63 - CID_BITS) // n)
    if page_bits < 6:
        raise NotLocal(f"{n} pages do not fit a 63-bit fingerprint")
    shift = [(n - 1 - j) * page_bits for j in range(n)]
    cshift = n * page_bits
    pmask = (1 << page_bits) - 1

    always_state = [p for p in ALWAYS if p.on_state is not None]
    some_state = [p for p in SOMETIMES if p.on_state is not None]
    trans = [(p, True) for p in ALWAYS if p.on_transition is not None] + \
            [(p, False) for p in SOMETIMES if p.on_transition is not None]
    state_fns = [p.on_state for p in always_state + some_state] + [launched_and_running]
    goal_k = len(state_fns) - 1
    # property name -> (always?, state verdict index or None, transition bit or None)
    judged: dict[str, list] = {}
    for k, p in enumerate(always_state + some_state):
        judged.setdefault(p.name, [p, p.kind == "always", None, None])[2] = k
    for b, (p, _) in enumerate(trans):
        judged.setdefault(p.name, [p, p.kind == "always", None, None])[3] = b

    A = len(x.actions)
    T = PageTable(cfg, n, x.bounds.max_pins, x.actions, trans, state_fns)

    rows, cids = _Grow(np.int32, n), _Grow(np.int32)
    par, pact, depth, goal = _Grow(np.int32), _Grow(np.int32), _Grow(np.int32), _Grow(bool)

    def fingerprint(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        if len(T.pages) > pmask + 1 or len(T.ctxs) > (1 << CID_BITS):
            raise NotLocal("too many page values for the fingerprint")
        key = c.astype(np.int64) << cshift
        for j in range(n):
            key |= r[:, j].astype(np.int64) << shift[j]
        return key

    def decided(name: str, always: bool) -> bool:
        return name in (x.violations if always else x.witnesses)

    # The roots: one per create_gmem event, judged for real like the reference loop.
    root_keys: list[int] = []
    for k, ev in enumerate(x.creates):
        s = step(cfg, VmState(), ev).state
        if symmetry:
            s = canonical(s)[0]
        if len(s.pages) != n:
            raise NotLocal("create_gmem did not make a file of the bounds' size")
        c, r = T.row(s)
        key = int(fingerprint(np.array([r], np.int32), np.array([c], np.int32))[0])
        if key in root_keys:
            continue
        sid = len(root_keys)
        root_keys.append(key)
        rows.extend(np.array([r], np.int32))
        cids.extend(np.array([c], np.int32))
        par.extend(np.array([-1], np.int32))
        pact.extend(np.array([k], np.int32))
        depth.extend(np.array([1], np.int32))
        goal.extend(np.array([launched_and_running(cfg, s)]))
        judge_state(x, sid, s, always_state, some_state)
    visited = _Visited(np.array(root_keys, np.int64), np.arange(len(root_keys), dtype=np.int32))
    src_out, dst_out, act_out = array("i"), array("i"), array("i")
    outdeg = _Grow(np.int32)
    fmax = max(1, BATCH_TRANSITIONS // A)
    act_tile = np.tile(np.arange(A, dtype=np.int32), fmax)
    dst_buf = np.empty(fmax * A, np.int32)
    goal_bit = 1 << goal_k
    page_acts = np.array([a for a in range(A) if T.kind[a] == "page"], np.int64)
    page_pos = np.array([T.pos[a] for a in page_acts], np.int64)
    other_acts = [a for a in range(A) if T.kind[a] != "page"]
    head = 0
    while head < rows.n:
        F = min(rows.n - head, fmax)
        R = rows.view[head:head + F]
        C = cids.view[head:head + F]
        sids = head + np.arange(F, dtype=np.int32)
        want = 0
        for name, (p, always, k, b) in judged.items():
            if b is not None and not decided(name, always):
                want |= 1 << b
        flat_parts, key_parts = [], []
        invalid = None          # (F, A): transitions past the pin bound, dropped
        tfirst: dict[int, int] = {}   # transition bit -> first (state, action) in the batch
        # the single-page actions, all at once
        old, new, pvalid, ptb = T.page_batch(page_acts, page_pos, R, C, want)
        ns_all = new != old
        if pvalid is not None:
            if not pvalid.all():
                invalid = np.zeros((F, A), bool)
                invalid[:, page_acts] = ~pvalid
            ns_all &= pvalid
        if ptb is not None:
            tb = ptb if pvalid is None else np.where(pvalid, ptb, 0)
            present = int(np.bitwise_or.reduce(tb, axis=None)) & want
            for b in range(present.bit_length()):
                if present >> b & 1:
                    fs, js = np.nonzero((tb >> b) & 1)
                    first_flat = int((fs * A + page_acts[js]).min())
                    tfirst[b] = min(tfirst.get(b, first_flat), first_flat)
        for i in range(n):
            cols = np.flatnonzero(page_pos == i)
            fs, js = np.nonzero(ns_all[:, cols])
            if not fs.size:
                continue
            vals = new[fs, cols[js]]
            if symmetry and n > 1:
                rank, unrank = T.ranks()
                pr = unrank[_insert_sorted(rank[R[fs]], rank[vals], i)]
            else:
                pr = R[fs].copy()
                pr[:, i] = vals
            flat_parts.append(fs * A + page_acts[cols[js]])
            key_parts.append(fingerprint(pr, C[fs]))
        for a in other_acts:
            s_ = T.successors(a, R, C, want)
            ns = ~s_.same
            if s_.valid is not None and not s_.valid.all():
                if invalid is None:
                    invalid = np.zeros((F, A), bool)
                invalid[:, a] = ~s_.valid
                ns &= s_.valid
            if s_.tbits is not None:
                tb = s_.tbits if s_.valid is None else np.where(s_.valid, s_.tbits, 0)
                present = int(np.bitwise_or.reduce(tb)) & want
                for b in range(present.bit_length()):
                    if present >> b & 1:
                        f = int(np.flatnonzero((tb >> b) & 1)[0])
                        tfirst[b] = min(tfirst.get(b, f * A + a), f * A + a)
            idx = np.flatnonzero(ns)
            if not idx.size:
                continue
            if s_.page >= 0 and symmetry and n > 1:
                rank, unrank = T.ranks()
                pr = _insert_sorted(rank[R[idx]], rank[s_.new[idx]], s_.page)
                key = fingerprint(unrank[pr], C[idx])
            else:
                pr, pc = s_.rows(idx)
                if symmetry and n > 1:
                    rank, unrank = T.ranks()
                    pr = unrank[np.sort(rank[pr], axis=1)]
                key = fingerprint(pr, pc)
            flat_parts.append(idx * A + a)
            key_parts.append(key)

        dst = dst_buf[:F * A]
        dst.reshape(F, A)[:] = sids[:, None]
        nnew = 0
        if flat_parts:
            flat = np.concatenate(flat_parts)
            k = np.concatenate(key_parts)
            o = np.argsort(k)
            ks = k[o]
            brk = np.empty(len(ks), bool)
            brk[0] = True
            np.not_equal(ks[1:], ks[:-1], out=brk[1:])
            starts = np.flatnonzero(brk)
            U = ks[starts]
            first = np.minimum.reduceat(flat[o], starts)   # first (state, action) of each key
            inv = np.empty(len(o), np.int64)
            inv[o] = np.cumsum(brk) - 1
            sidU = visited.lookup(U)
            newg = np.flatnonzero(sidU < 0)
            if newg.size:
                newg_o = newg[np.argsort(first[newg], kind="stable")]
                nnew = len(newg_o)
                sidU[newg_o] = rows.n + np.arange(nnew, dtype=np.int32)
                new_first = first[newg_o]
                nk = U[newg_o]
                nr = np.empty((nnew, n), np.int32)
                for j in range(n):
                    nr[:, j] = (nk >> shift[j]) & pmask
                nc = (nk >> cshift).astype(np.int32)
                p_ = sids[new_first // A]
                rows.extend(nr)
                cids.extend(nc)
                par.extend(p_)
                pact.extend((new_first % A).astype(np.int32))
                depth.extend(depth.view[p_] + 1)
                sv, sp = T.page_bits(nr, nc)
                sp_and = np.bitwise_and.reduce(sp, axis=1)
                sp_or = np.bitwise_or.reduce(sp, axis=1)
                goal.extend((sv & sp_and & goal_bit) != 0)
                visited.add(U[newg], sidU[newg])
            dst[flat] = sidU[inv]
        if invalid is None:
            src_out.frombytes(memoryview(np.repeat(sids, A)).cast("B"))
            dst_out.frombytes(memoryview(dst).cast("B"))
            act_out.frombytes(memoryview(act_tile[:F * A]).cast("B"))
            outdeg.extend(np.full(F, A, np.int32))
        else:
            keep = ~invalid.ravel()
            deg = (A - invalid.sum(1)).astype(np.int32)
            src_out.frombytes(memoryview(np.repeat(sids, deg)).cast("B"))
            dst_out.frombytes(memoryview(dst[keep]).cast("B"))
            act_out.frombytes(memoryview(act_tile[:F * A][keep]).cast("B"))
            outdeg.extend(deg)

        # Properties: the first transition or new state, in (state, action) order.
        for name, (p, always, k, b) in judged.items():
            if decided(name, always):
                continue
            tkey = 2 * tfirst[b] if b is not None and b in tfirst else None
            found_state = None
            if k is not None and nnew:
                cand = ((sv & sp_and) >> k & 1) == 0 if always else (sp_or >> k & 1) != 0
                nr_, nc_ = rows.view[-nnew:], cids.view[-nnew:]
                for m in np.flatnonzero(cand).tolist():
                    if tkey is not None and 2 * int(new_first[m]) + 1 > tkey:
                        break
                    if p.on_state(cfg, T.state(int(nc_[m]), nr_[m].tolist())) != always:
                        found_state = rows.n - nnew + m
                        break
            book = x.violations if always else x.witnesses
            if found_state is not None:
                book[name] = Discovery(found_state)
            elif tkey is not None:
                t = tkey // 2
                book[name] = Discovery(head + t // A, t % A)
        head += F
        show(rows.n, rows.n - head, int(depth.view[head - 1]))
        if rows.n > max_states:
            raise UsageError(f"more than {max_states:,} states: use fewer pages or processes")

    x.states = States(T, rows.view, cids.view)
    x.parent = Parents(par.view, pact.view)
    x.depth = _int32_array(depth.view)
    x.src, x.dst, x.act = src_out, dst_out, act_out
    x.stuck = first_stuck(outdeg.view, np.frombuffer(dst_out, np.int32), goal.view.copy())
    x.pagetable = T


def action_outcomes(x, wanted: set[int]) -> list[tuple[int, dict]]:
    """Every distinct (action, outcome) pair over the transitions of a batched exploration,
    for the actions in ``wanted`` (what Exploration.action_outcomes finds by step())."""
    T: PageTable = x.pagetable
    rows, cids = x.states._rows, x.states._cids
    A = len(x.actions)
    fmax = max(1, BATCH_TRANSITIONS // A)
    firsts: list[dict[int, int]] = [{} for _ in range(A)]   # action -> outcome id -> first state
    for head in range(0, len(cids), fmax):
        R, C = rows[head:head + fmax], cids[head:head + fmax]
        for a in sorted(wanted):
            s_ = T.successors(a, R, C, 0)
            oid = s_.outcomes()[0]
            where = np.arange(len(C)) if s_.valid is None else np.flatnonzero(s_.valid)
            u, i = np.unique(oid[where], return_index=True)
            for o, f in zip(u.tolist(), (head + where[i]).tolist()):
                firsts[a].setdefault(o, f)
    return [(a, dict(T.outcomes[o])) for a in sorted(wanted)
            for o, _ in sorted(firsts[a].items(), key=lambda kv: kv[1])]


class _Visited:
    """The fingerprints found so far, sorted, with their state ids (two buffers, merged)."""

    def __init__(self, keys: np.ndarray, sids: np.ndarray):
        o = np.argsort(keys)
        self.n = len(keys)
        cap = max(1024, 2 * self.n)
        self.k, self.s = np.empty(cap, np.int64), np.empty(cap, np.int32)
        self.k[:self.n], self.s[:self.n] = keys[o], sids[o]
        self.k2, self.s2 = np.empty(cap, np.int64), np.empty(cap, np.int32)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """State id of each (sorted) key, -1 where not found."""
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


def _insert_sorted(r: np.ndarray, v: np.ndarray, i: int) -> np.ndarray:
    """Rows r (sorted) with column i replaced by v, sorted again (all in rank space)."""
    m, n = r.shape
    rest = np.delete(r, i, axis=1)
    pos = (rest < v[:, None]).sum(1)
    out = np.empty_like(r)
    for j in range(n):
        below = rest[:, j] if j < n - 1 else v
        above = rest[:, j - 1] if j > 0 else v
        out[:, j] = np.where(pos > j, below, np.where(pos == j, v, above))
    return out


def first_stuck(outdeg: np.ndarray, dst: np.ndarray, good: np.ndarray) -> int | None:
    """The first state from which no path reaches a goal state (good: the goal states).

    The search emits edges sorted by source, so the out-edges of each state are one
    slice (outdeg: their count). Blocks of states are visited from the last found to
    the first (deeper states are usually nearer the goal), each block's states that are
    not yet known good look at their successors, until a whole sweep learns nothing.
    """
    nstates = len(outdeg)
    if good.all():
        return None
    ptr = np.zeros(nstates + 1, np.int64)
    np.cumsum(outdeg, out=ptr[1:])
    block = 1 << 16
    changed = True
    while changed:
        changed = False
        for hi in range(nstates, 0, -block):
            lo = max(0, hi - block)
            while True:
                todo = lo + np.flatnonzero(~good[lo:hi])
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
                good[todo[anyhit]] = True
                changed = True
    bad = np.flatnonzero(~good)
    return int(bad[0]) if bad.size else None
