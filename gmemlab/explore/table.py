"""The table of the states found so far: key -> state id, and the one operation the
search driver needs of it, ``assign``: the state id of every successor of a batch,
new states numbered in the order a one-state-at-a-time breadth-first search meets
them ((state, action) order).

Two tables give the same answers (tests/test_table.py holds them to it):

- HashTable: open addressing over int64 keys, the whole batch in one compiled pass
  (numba): no sort, no merge. The default where numba is installed.
- SortedTable: the keys sorted, with their ids; a batch is sorted, looked up by binary
  search and merged in (numpy only). The fallback, and the shape of every table that
  lives elsewhere (gmemlab.explore.partitioned: ``lookup`` and ``add``).
"""

from __future__ import annotations

import numpy as np

# numba (or GMEMLAB_NO_NUMBA), the cores and the per-call threads are the compiled
# passes' own: one place says whether the explorer is compiled and how it splits work.
from gmemlab.explore.compiled import njit, over_rows

GROWTH = 1.5          # sorted buffers grow by half
MAX_LOAD = 0.7        # the hash table doubles past this load


def assign_with(table, dense: np.ndarray, head: int, A: int, next_id: int,
                need: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The generic assign over ``lookup``/``add`` (see the module docstring).

    dense: the successor key of each transition of the batch, in (state, action) order
    (state head + i // A, action i % A), -1 where the transition stays in its state or
    leaves the boundary. Returns (dst: each transition's state id, its own state where
    dense is -1; new: the indices into dense of the first transition reaching each new
    state, in the order of their new ids next_id, next_id + 1, ...). need: which states'
    dst the caller reads (HashTable.assign skips the others); all of them here.
    """
    dst = head + np.arange(len(dense), dtype=np.int32) // A
    flat = np.flatnonzero(dense >= 0)
    if not flat.size:
        return dst, flat
    k = dense[flat]
    o = np.argsort(k, kind="stable")              # equal keys keep (state, action) order
    ks = k[o]
    brk = np.empty(len(ks), bool)
    brk[0] = True
    np.not_equal(ks[1:], ks[:-1], out=brk[1:])
    starts = np.flatnonzero(brk)
    U, first = ks[starts], flat[o[starts]]        # each key and its first transition
    sid = table.lookup(U)
    new = np.flatnonzero(sid < 0)
    new = new[np.argsort(first[new], kind="stable")]
    sid[new] = next_id + np.arange(len(new), dtype=np.int32)
    byk = np.sort(new)
    table.add(U[byk], sid[byk])
    inv = np.empty(len(o), np.int64)
    inv[o] = np.cumsum(brk) - 1
    dst[flat] = sid[inv]
    return dst, first[new]


class SortedTable:
    """The keys found so far, sorted, with their state ids: a lookup is a binary search,
    an insertion a merge in place (from the end, a chunk at a time, so that no second
    copy of the table is ever made)."""

    CHUNK = 1 << 16

    def __init__(self):
        self.n = 0
        self.k, self.s = np.empty(1024, np.int64), np.empty(1024, np.int32)

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
        if n + m > len(self.k):
            cap = max(int(GROWTH * len(self.k)), n + m)
            k, s = np.empty(cap, np.int64), np.empty(cap, np.int32)
            k[:n], s[:n] = self.k[:n], self.s[:n]
            self.k, self.s = k, s
        k, s = self.k, self.s
        at = np.searchsorted(k[:n], keys)          # where each new key goes among the old
        hi, lo = n, int(at[0]) if m else n         # old keys below at[0] stay where they are
        while hi > lo:
            a = max(lo, hi - self.CHUNK)
            idx = np.arange(a, hi) + np.searchsorted(keys, k[a:hi])   # each moves up past the new keys below it
            k[idx], s[idx] = k[a:hi].copy(), s[a:hi].copy()
            hi = a
        k[at + np.arange(m)], s[at + np.arange(m)] = keys, sids
        self.n = n + m

    def assign(self, dense, head, A, next_id, need=None):
        return assign_with(self, dense, head, A, next_id, need)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.s.nbytes

    def close(self) -> None:
        self.k, self.s, self.n = self.k[:0], self.s[:0], 0


if njit is not None:
    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)    # Fibonacci hashing: key * 2^64/phi, top bits

    @njit(cache=True, nogil=True)
    def _slot(key, bits):
        return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(64 - bits))

    @njit(cache=True, nogil=True)
    def _find(key, tk, bits):
        """The slot of key, or the empty slot where it would go."""
        mask = len(tk) - 1
        h = _slot(key, bits)
        while tk[h] != -1 and tk[h] != key:
            h = (h + 1) & mask
        return h

    @njit(cache=True, nogil=True)
    def _probe(dense, start, stop, head, A, tk, tv, bits, need, dst, miss):
        """Read only, over dense[start:stop]: each successor found gives its id to dst
        (where need[state]), each not found (new, perhaps twice) is listed in miss from
        miss[start] on; returns how many. Most successors were found before: this is
        most of the work, so it runs on every core (``probe``)."""
        m = 0
        src, a = start // A, start % A            # counted, not divided, per transition
        for i in range(start, stop):
            key = dense[i]
            if key < 0:
                if need[src]:
                    dst[i] = head + src
            else:
                h = _find(key, tk, bits)
                if tk[h] == key:
                    if need[src]:
                        dst[i] = tv[h]
                else:
                    miss[start + m] = i
                    m += 1
            a += 1
            if a == A:
                a = 0
                src += 1
        return m

    @njit(cache=True, nogil=True)
    def _assign(dense, idxs, k, A, next_id, limit, tk, tv, bits, need, dst, new, nnew):
        """The successors not found by the probe, in (state, action) order from
        idxs[k]: a key not in the table yet gets the next id. Stops (returning where)
        before the ids reach ``limit``, for the table to grow."""
        while k < len(idxs):
            i = idxs[k]
            h = _find(dense[i], tk, bits)
            if tk[h] == -1:
                if next_id >= limit:
                    return k, nnew
                tk[h] = dense[i]
                tv[h] = next_id
                new[nnew] = i
                nnew += 1
                next_id += 1
            if need[i // A]:
                dst[i] = tv[h]
            k += 1
        return k, nnew

    @njit(cache=True, nogil=True)
    def _insert(keys, sids, tk, tv, bits):
        for i in range(len(keys)):
            h = _find(keys[i], tk, bits)
            tk[h] = keys[i]
            tv[h] = sids[i]

    @njit(cache=True, nogil=True)
    def _lookup(keys, tk, tv, bits, out):
        for i in range(len(keys)):
            h = _find(keys[i], tk, bits)
            out[i] = tv[h] if tk[h] == keys[i] else -1


def probe(dense, head, A, tk, tv, bits, need, dst) -> np.ndarray:
    """_probe over dense split across the cores on state boundaries (compiled.over_rows:
    threads made for the call). Returns the indices not found, in order."""
    miss = np.empty(len(dense), np.int64)
    found: dict[int, tuple[int, int]] = {}

    def run(lo, hi, j):
        found[j] = (lo * A, _probe(dense, lo * A, hi * A, head, A, tk, tv, bits, need, dst, miss))
    k = over_rows(len(dense) // A, run)
    return np.concatenate([miss[start:start + n] for start, n in (found[j] for j in range(k))])


class HashTable:
    """Open addressing (linear probing, Fibonacci hashing) over int64 keys, their ids
    apart (the probe reads keys only); at most MAX_LOAD full. ``assign``: a parallel
    read-only probe, then one sequential pass for the new keys."""

    def __init__(self, bits: int = 12):
        if njit is None:
            raise RuntimeError("HashTable needs numba")
        self.bits, self.n = bits, 0
        self.tk, self.tv = np.full(1 << bits, -1, np.int64), np.full(1 << bits, -1, np.int32)

    def _grow(self) -> None:
        used = self.tk != -1
        keys, sids = self.tk[used], self.tv[used]
        self.bits += 1
        self.tk, self.tv = np.full(1 << self.bits, -1, np.int64), np.full(1 << self.bits, -1, np.int32)
        _insert(keys, sids, self.tk, self.tv, self.bits)

    def assign(self, dense: np.ndarray, head: int, A: int, next_id: int,
               need: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As assign_with; need (one bool per state of the batch): whose successor ids
        dst must give (default all; the others' entries are undefined)."""
        if need is None:
            need = np.ones(len(dense) // A + 1, bool)
        dst = np.empty(len(dense), np.int32)
        idxs = probe(dense, head, A, self.tk, self.tv, self.bits, need, dst)
        new = np.empty(len(idxs), np.int64)
        k, nnew = 0, 0
        while True:
            room = int(MAX_LOAD * len(self.tk)) - self.n       # keys it may take before it grows
            start = next_id + nnew
            k, got = _assign(dense, idxs, k, A, start, start + room, self.tk, self.tv, self.bits,
                             need, dst, new, nnew)
            self.n += got - nnew
            nnew = got
            if k == len(idxs):
                return dst, new[:nnew]
            self._grow()

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        out = np.empty(len(keys), np.int32)
        _lookup(np.asarray(keys, np.int64), self.tk, self.tv, self.bits, out)
        return out

    def add(self, keys: np.ndarray, sids: np.ndarray) -> None:
        """Insert (absent) keys with their ids."""
        while self.n + len(keys) > MAX_LOAD * len(self.tk):
            self._grow()
        _insert(np.asarray(keys, np.int64), np.asarray(sids, np.int32), self.tk, self.tv, self.bits)
        self.n += len(keys)

    @property
    def nbytes(self) -> int:
        return self.tk.nbytes + self.tv.nbytes

    def close(self) -> None:
        self.tk, self.tv, self.n = self.tk[:0], self.tv[:0], 0


def new_table():
    """The default table: HashTable where numba is installed, else SortedTable."""
    return HashTable() if njit is not None else SortedTable()
