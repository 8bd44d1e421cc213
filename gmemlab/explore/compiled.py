"""The fast engine's single-page actions, compiled (numba): one pass over a batch.

The tables are the fast engine's own (gmemlab.explore.engines.FastEngine: NEW, TB, PINOK,
filled from step()); this pass only reads them, so it knows no rule of the model. For
each state of the batch (a key, gmemlab.explore.search.KeyLayout) and each single-page
action: the page's new value from NEW, within the boundary where PINOK holds (pins), the
transition-property bits from TB, and the successor's key (the row re-sorted by Page
order under symmetry, as Codec.replace_sorted does). A (context, page value) the tables
do not know yet marks its state ``miss``: the engine fills the tables from step() and
runs the pass again. Without numba the engine does the same with numpy.
"""

from __future__ import annotations

import os
import threading

import numpy as np

try:
    if os.environ.get("GMEMLAB_NO_NUMBA"):
        raise ImportError("GMEMLAB_NO_NUMBA is set")
    from numba import njit
except ImportError:   # pragma: no cover - tests run both ways through GMEMLAB_NO_NUMBA
    njit = None

AVAILABLE = njit is not None
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def over_rows(F: int, run) -> int:
    """run(lo, hi, j) over [0, F) split into chunks, one per core, each in a thread made
    for the call (the passes drop the GIL; no pool outlives the call, so a process
    forked later inherits no thread it lacks). Returns the number of chunks."""
    k = min(CORES, max(1, F >> 12))
    cuts = [F * j // k for j in range(k + 1)]
    threads = [threading.Thread(target=run, args=(cuts[j], cuts[j + 1], j)) for j in range(1, k)]
    for t in threads:
        t.start()
    run(cuts[0], cuts[1], 0)
    for t in threads:
        t.join()
    return k

if AVAILABLE:
    @njit(cache=True, nogil=True)
    def page_pass(lo, hi, keys, A, acts, pos, NEW, TB, PINOK, want, rank, symmetric, shift, pmask, cshift,
                  dense, invalid, tfirst, miss):
        """Fill dense (successor keys, (state, action) order), invalid, tfirst (first flat
        index per transition-property bit) and miss for the batch's single-page actions."""
        n = len(shift)
        row = np.empty(n, np.int64)
        tmp = np.empty(n, np.int64)
        for f in range(lo, hi):
            key = keys[f]
            c = key >> cshift
            for i in range(n):
                row[i] = (key >> shift[i]) & pmask
            for j in range(len(acts)):
                a, i = acts[j], pos[j]
                old = row[i]
                new = NEW[a, c, old]
                if new < 0:
                    miss[f] = True
                    break
                t = f * A + a
                if not PINOK[new]:
                    invalid[t] = True
                    continue
                tb = TB[a, c, old] & want
                b = 0
                while tb:
                    if tb & 1 and t < tfirst[b]:
                        tfirst[b] = t
                    tb >>= 1
                    b += 1
                if new == old:
                    continue
                if symmetric and n > 1:
                    # the row is sorted by rank: take the old page out, put the new one in place
                    m = 0
                    placed = False
                    for q in range(n):
                        if q == i:
                            continue
                        if not placed and rank[new] < rank[row[q]]:
                            tmp[m] = new
                            m += 1
                            placed = True
                        tmp[m] = row[q]
                        m += 1
                    if not placed:
                        tmp[m] = new
                    k2 = c << cshift
                    for q in range(n):
                        k2 |= tmp[q] << shift[q]
                else:
                    k2 = (key & ~(pmask << shift[i])) | (new << shift[i])
                dense[t] = k2


if AVAILABLE:
    # Phase kinds, as plan_pass reads them (gmemlab.model.step: Skip, Stop, Each).
    SKIP, STOP, EACH = 0, 1, 2

    @njit(cache=True, nogil=True)
    def plan_pass(f0, f1, keys, shift, pmask, cshift, lo, hi, kinds, VAL, EFF, PINOK, rank, symmetric,
                  post, code, effp, okey, valid, miss):
        """One range action's plan over the batch, phase by phase as step.run_plan runs
        it: for each state its unsorted post row, its code (-1: the plan's outcome; else
        the stopping phase's value (1 + errno index) * n + the page), each page's effect
        bits, the successor's key (sorted by rank under symmetry), within the boundary
        (PINOK on every page). lo/hi[cid]: the plan's span (lo = -1: no plan, the
        call's immediate answer, code -2); kinds[cid, k] (-1 past the last phase);
        VAL/EFF[k, cid, pid]: the phase's value (-1: not known yet -> miss)."""
        n = len(shift)
        tmp = np.empty(n, np.int64)
        for f in range(f0, f1):
            key = keys[f]
            c = key >> cshift
            for i in range(n):
                post[f, i] = (key >> shift[i]) & pmask
                effp[f, i] = 0
            code[f] = -1
            if lo[c] < 0:
                code[f] = -2
            else:
                for k in range(kinds.shape[1]):
                    kind = kinds[c, k]
                    if kind < 0:
                        break
                    if kind == SKIP:
                        allskip = True
                        for i in range(lo[c], hi[c]):
                            v = VAL[k, c, post[f, i]]
                            if v < 0:
                                miss[f] = True
                            elif v == 0:
                                allskip = False
                        if miss[f] or allskip:
                            break
                    elif kind == STOP:
                        for i in range(lo[c], hi[c]):
                            v = VAL[k, c, post[f, i]]
                            if v < 0:
                                miss[f] = True
                                break
                            if v > 0:
                                code[f] = v * n + i
                                break
                        if miss[f] or code[f] >= 0:
                            break
                    else:
                        for i in range(lo[c], hi[c]):
                            p = post[f, i]
                            v = VAL[k, c, p]
                            if v < 0:
                                miss[f] = True
                                break
                            effp[f, i] |= EFF[k, c, p]
                            post[f, i] = v
                        if miss[f]:
                            break
            if miss[f]:
                continue
            valid[f] = True
            for i in range(n):
                if not PINOK[post[f, i]]:
                    valid[f] = False
                tmp[i] = post[f, i]
            if symmetric:
                for i in range(1, n):            # insertion sort by rank (n is small)
                    x = tmp[i]
                    j = i - 1
                    while j >= 0 and rank[tmp[j]] > rank[x]:
                        tmp[j + 1] = tmp[j]
                        j -= 1
                    tmp[j + 1] = x
            k2 = c << cshift
            for i in range(n):
                k2 |= tmp[i] << shift[i]
            okey[f] = k2


if AVAILABLE:
    @njit(cache=True, nogil=True)
    def part_bits_pass(lo, hi, keys, shift, pmask, cshift, post, oid, effp, valid, radix, sk, sb, tb, miss):
        """A range action's transition-property bits, page by page: each page's part
        (context, pre, post, outcome, effects), keyed in mixed radix, looked up among
        the parts judged so far (sk sorted, sb their bits); an unknown part marks its
        state ``miss`` (the engine judges it from the model)."""
        n = len(shift)
        for f in range(lo, hi):
            tb[f] = 0
            if not valid[f]:
                continue
            key = keys[f]
            c = key >> cshift
            for i in range(n):
                pre = (key >> shift[i]) & pmask
                part = (((c * radix[1] + pre) * radix[2] + post[f, i]) * radix[3] + oid[f]) * radix[4] + effp[f, i]
                j = np.searchsorted(sk, part)
                if j < len(sk) and sk[j] == part:
                    tb[f] |= sb[j]
                else:
                    miss[f] = True
                    break
