"""Guest-scale replay: the state as runs of equal pages, the page step applied per run.

A 64 GiB guest has 16M pages; a tuple of 16M Pages per event is out of the question. The
range engine keeps the guest_memfd as an interval map (``RunMap``: sorted run starts and
the Page of each run, neighbouring runs never equal) and applies each event with the ONE
step function of gmemlab.model.step, on a small compressed VmState:

1. The window. An event with an offset can only touch the pages its byte range
   [offset, offset + size) reaches (one page for an access); the window is that page
   range clipped to the file. The runs it meets are clipped to it.
2. The compressed state. Each clipped run of L equal pages becomes two compressed pages:
   its head (its first page) and, when L > 1, its tail (the L - 1 others). Every range
   op of step.py walks its pages in order, and what it does to a page depends only on
   that page, the VM-wide fields and the config; so equal pages get equal results, and a
   call that stops does so at the first page of a run (a page equal to the one before
   it cannot fail where that one succeeded), which is always a head. The head/tail split
   then carries whatever the call did to the stopping page alone (populate leaves it
   allocated) and whatever it did to all pages before stopping (to-private unmaps the
   whole range before its refcount check), without knowing which op it was.
3. The compressed event. Byte addresses map to compressed addresses page-wise: a page of
   the window to the compressed page holding it, the page just past the window to the
   compressed end, a page p past the end of the file to (compressed size + p - npages);
   the offset within a page is kept. That keeps every predicate step.py checks on real
   coordinates: alignment (offsets within a page are kept), size == 0 (the map is
   strictly increasing across the pages an event names), and the bounds (the compressed
   file ends exactly where the window meets the real end of file). So step.py's own
   validation runs and gives what it gives on the page-level state; nothing of it is
   re-implemented here. create_gmem, which names no pages, gets a size with the same
   sign, alignment and zero-ness (size % page_size, or one page when aligned), and the
   new file is one run of what step made of its one page.
   One rule of step() reads the whole file: with the huge_folios knob,
   step.huge_folio_rule looks at every page of each huge folio of the geometry (where it
   sits, not only which values there are) and a merge zeroes pages the event did not
   name. While the file has huge folios (VmState.folios) every event but create_gmem
   therefore runs on the page-level state (RangeEngine._apply_expanded): exact, and as
   slow as step() on the whole file.
4. Back to real coordinates: error_offset (a compressed address) maps back through the
   same table (the real offset of that run's first page); populate's "done" becomes the
   real number of pages of the compressed pages completed; the compressed post pages
   are written back over their runs and merged with equal neighbours.

The common event names one page (every access; a call on 4 KiB). Its window is that
page alone, with no context while no whole-file rule applies, so the compressed
transition is determined by the VM-wide fields, the page's value and the event's step
fields: RangeEngine._apply_page keeps, per such key, what step() gave and what the
write-back does (the new page, the change of the invariant counts), and applies a
repeat with one lookup and an edit of at most two entries of the run map
(RunMap.set_page). Nothing is decided there that step() did not decide.

Invariants (gmemlab.invariants). The state ones are all "no page such that ...", so a
state satisfies one exactly when the VM-wide fields alone do (no pages) and each page
alone does: the engine keeps, per state invariant, the number of real pages that break
it, updated by each write-back (and recounted when a VM-wide field changes), and a state
invariant holds when that count is 0. The transition ones are judged on the compressed
transition (pre, event, outcome, post, effects), where the effects are the same set as
on the page-level state and the pages a failed call may not touch are the compressed
pages of the same real pages. tests/test_ranges.py checks the whole claim against the
page-level replay on random traces.

The replay on runs is gmemlab.traces.walk (engine "ranges", or "auto" for a large file):
it drives a RangeEngine one event at a time and judges the invariants as above.

>>> from gmemlab.model.state import Config
>>> eng = RangeEngine(Config(platform="snp"))
>>> eng.apply({"op": "create_gmem", "size": 1 << 36, "flags": ("MMAP", "INIT_SHARED")})[0]
{'ret': 0}
>>> eng.npages, eng.runs
(16777216, 1)
>>> eng.apply({"op": "pin", "offset": 5 << 12, "size": 4096, "process": "vmm"})[0]
{'ret': 0}
>>> eng.apply({"op": "set_attributes", "offset": 0, "size": 1 << 36, "attributes": "private", "flags": ()})[0]
{'ret': 'EAGAIN', 'error_offset': 20480}
>>> eng.runs
3
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from typing import Iterable, Iterator

from gmemlab.invariants import ALWAYS, Transition
from gmemlab.model.state import Config, Page, VmState, folio_count
from gmemlab.model.step import FAIL, LOFF_MAX, step

BLOCK = 256  # runs per block of the interval map (a split or merge costs O(BLOCK))


class RunMap:
    """An interval map over pages [0, n): sorted run starts and the Page of each run.

    No two neighbouring runs hold equal pages. The starts are kept in blocks of about
    BLOCK runs (with the first start of every block in ``_mins``), so that finding a
    page is two bisections and rewriting a window costs O(BLOCK), whatever the number of
    runs.

    >>> m = RunMap.from_pages([Page(), Page(), Page(private=True), Page()])
    >>> [(a, e, p.private) for a, e, p in m.runs()]
    [(0, 2, False), (2, 3, True), (3, 4, False)]
    >>> m.assign(2, 3, [(2, Page())])
    >>> len(m), m.page(3) == Page()
    (1, True)
    """

    __slots__ = ("n", "_starts", "_pages", "_mins")

    def __init__(self, n: int = 0, page: Page | None = None):
        self.n = n
        self._starts: list[list[int]] = [[0]] if n else []
        self._pages: list[list[Page]] = [[page]] if n else []
        self._mins: list[int] = [0] if n else []

    @classmethod
    def from_pages(cls, pages: Iterable[Page]) -> "RunMap":
        starts, vals, n = [], [], 0
        for page, group in itertools.groupby(pages):
            starts.append(n)
            vals.append(page)
            n += sum(1 for _ in group)
        m = cls()
        m.n = n
        for i in range(0, len(starts), BLOCK):
            m._starts.append(starts[i:i + BLOCK])
            m._pages.append(vals[i:i + BLOCK])
            m._mins.append(starts[i])
        return m

    def __len__(self) -> int:
        """The number of runs."""
        return sum(len(b) for b in self._starts)

    def _locate(self, p: int) -> tuple[int, int]:
        b = bisect_right(self._mins, p) - 1
        return b, bisect_right(self._starts[b], p) - 1

    def page(self, p: int) -> Page:
        """The page at index p (0 <= p < n)."""
        b, j = self._locate(p)
        return self._pages[b][j]

    def runs(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, int, Page]]:
        """(start, end, page) of the runs meeting [lo, hi), clipped to it."""
        hi = self.n if hi is None else hi
        if lo >= hi:
            return
        b, j = self._locate(lo)
        starts, pages, nb = self._starts, self._pages, len(self._starts)
        while True:
            blk = starts[b]
            if j + 1 < len(blk):
                end = blk[j + 1]
            else:
                end = self._mins[b + 1] if b + 1 < nb else self.n
            yield max(blk[j], lo), min(end, hi), pages[b][j]
            if end >= hi:
                return
            j += 1
            if j == len(blk):
                b, j = b + 1, 0

    def assign(self, lo: int, hi: int, new: list[tuple[int, Page]]) -> None:
        """Make [lo, hi) hold the runs ``new`` ((start, page), starting at lo, no two
        neighbours equal), merging with the runs around it."""
        mins, n = self._mins, self.n
        bl = bisect_right(mins, lo - 1 if lo else 0) - 1       # holds the run before lo
        br = bisect_right(mins, hi if hi < n else hi - 1) - 1  # holds the run after hi
        if bl == br and (len(self._starts[bl]) >= BLOCK // 2 or len(mins) == 1):
            self._assign_in_block(bl, lo, hi, new)
            return
        if sum(len(self._starts[b]) for b in range(bl, br + 1)) < BLOCK // 2:
            # Keep blocks from shrinking to nothing: take a neighbour block along.
            if br + 1 < len(mins):
                br += 1
            elif bl > 0:
                bl -= 1
        S = [s for blk in self._starts[bl:br + 1] for s in blk]
        G = [p for blk in self._pages[bl:br + 1] for p in blk]
        seg_end = mins[br + 1] if br + 1 < len(mins) else n
        i0 = bisect_right(S, lo) - 1
        i1 = bisect_right(S, hi - 1) - 1
        S2, G2 = S[:i0], G[:i0]
        if S[i0] < lo:
            S2.append(S[i0])
            G2.append(G[i0])
        k1 = len(S2)
        S2.extend(s for s, _ in new)
        G2.extend(p for _, p in new)
        k2 = len(S2)
        if (S[i1 + 1] if i1 + 1 < len(S) else seg_end) > hi:
            S2.append(hi)
            G2.append(G[i1])
        S2.extend(S[i1 + 1:])
        G2.extend(G[i1 + 1:])
        for k in (k2, k1):  # the two seams, right one first so k1 stays valid
            if 0 < k < len(S2) and G2[k] == G2[k - 1]:
                del S2[k], G2[k]
        if len(S2) <= 2 * BLOCK:
            cs, cg = [S2], [G2]
        else:
            nchunks = -(-len(S2) // BLOCK)
            step_ = -(-len(S2) // nchunks)
            cs = [S2[i:i + step_] for i in range(0, len(S2), step_)]
            cg = [G2[i:i + step_] for i in range(0, len(G2), step_)]
        self._starts[bl:br + 1] = cs
        self._pages[bl:br + 1] = cg
        self._mins[bl:br + 1] = [c[0] for c in cs]

    def _assign_in_block(self, b: int, lo: int, hi: int, new: list[tuple[int, Page]]) -> None:
        """assign() when the runs around [lo, hi) all sit in block b: edit it in place."""
        S, G = self._starts[b], self._pages[b]
        i0 = bisect_right(S, lo) - 1
        i1 = bisect_right(S, hi - 1) - 1
        ns = [s for s, _ in new]
        ng = [p for _, p in new]
        p1 = i0
        if S[i0] < lo:  # the run before lo keeps its part left of lo
            ns.insert(0, S[i0])
            ng.insert(0, G[i0])
            p1 += 1
        end1 = S[i1 + 1] if i1 + 1 < len(S) else (self._mins[b + 1] if b + 1 < len(self._mins) else self.n)
        if end1 > hi:  # the run at hi - 1 keeps its part from hi on
            ns.append(hi)
            ng.append(G[i1])
        S[i0:i1 + 1] = ns
        G[i0:i1 + 1] = ng
        p2 = p1 + len(new)
        for k in (p2, p1):  # the two seams, right one first so p1 stays valid
            if 0 < k < len(S) and G[k] == G[k - 1]:
                del S[k], G[k]
        self._split_if_long(b)

    def _split_if_long(self, b: int) -> None:
        """Block b cut in two halves once it holds more than 2 * BLOCK runs."""
        S, G = self._starts[b], self._pages[b]
        if len(S) > 2 * BLOCK:
            half = len(S) // 2
            self._starts[b + 1:b + 1] = [S[half:]]
            self._pages[b + 1:b + 1] = [G[half:]]
            self._mins.insert(b + 1, S[half])
            del S[half:], G[half:]

    def set_page(self, p: int, page: Page, b: int | None = None, j: int | None = None) -> None:
        """assign(p, p + 1, [(p, page)]) for a page whose runs, and the runs on either
        side, sit inside one block: an edit of at most two list entries (the common
        write-back of a guest-scale replay). Pages are compared by identity, so this
        needs canonical pages (RangeEngine._canon: one object per value); assign()
        does the rest. (b, j): where p is (_locate), if the caller knows."""
        if b is None or j is None:
            b, j = self._locate(p)
        S, G = self._starts[b], self._pages[b]
        if j == 0 or j + 1 >= len(S) or (len(S) < BLOCK // 2 and len(self._mins) > 1):
            self.assign(p, p + 1, [(p, page)])
            return
        s, e, old = S[j], S[j + 1], G[j]
        if page is old:
            return
        left, right = G[j - 1], G[j + 1]
        if s == p:
            if e == p + 1:  # the run is this page alone
                if page is left:
                    if page is right:
                        del S[j:j + 2], G[j:j + 2]
                    else:
                        del S[j], G[j]
                elif page is right:
                    del S[j], G[j]
                    S[j] = p
                else:
                    G[j] = page
                return
            if page is left:
                S[j] = p + 1
            else:
                S[j:j + 1] = [p, p + 1]
                G.insert(j, page)
        elif e == p + 1:  # the run ends with this page
            if page is right:
                S[j + 1] = p
            else:
                S.insert(j + 1, p)
                G.insert(j + 1, page)
        else:  # inside the run: it splits around the page
            S[j + 1:j + 1] = [p, p + 1]
            G[j + 1:j + 1] = [page, old]
        self._split_if_long(b)

    def expand(self) -> tuple:
        """Every page, as the page-level VmState holds them."""
        out: list[Page] = []
        for a, e, page in self.runs():
            out.extend([page] * (e - a))
        return tuple(out)


class RunState:
    """The final state of a range replay (Report.state): the VM-wide fields (a VmState
    without pages, ``shell``) and the runs. ``expand()`` gives the page-level VmState."""

    def __init__(self, shell: VmState, runmap: RunMap):
        self.shell, self.runmap = shell, runmap

    def __getattr__(self, name):  # created, gmem_flags, finalized, ...: the VM-wide fields
        if name in VmState._fields and name != "pages":
            return getattr(self.shell, name)
        raise AttributeError(name)

    @property
    def npages(self) -> int:
        return self.runmap.n

    def expand(self) -> VmState:
        return self.shell._replace(pages=self.runmap.expand())

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.shell._asdict().items() if k != "pages")
        return f"RunState({fields}, npages={self.npages}, runs={len(self.runmap)})"


_PAGES = VmState._fields.index("pages")
_new_tuple = tuple.__new__
_STATE_PROPS = [p for p in ALWAYS if p.on_state is not None]
_TRANS_PROPS = [p for p in ALWAYS if p.on_transition is not None]


def _past_loff_t(ev) -> bool:
    """Whether the event names bytes at or past 2**63: the kernel reads such an offset,
    size or end as a negative loff_t (or past LLONG_MAX), and step() refuses the event
    before it looks at a page (vfs_fallocate's EINVAL/EFBIG, or a range past the end of
    any file kvm_gmem_create makes). Compressing its addresses would lose that
    magnitude, so it goes to step() as it is (RangeEngine._apply_whole)."""
    off, size = ev["offset"], ev.get("size") or 0
    return off > LOFF_MAX or size > LOFF_MAX or off + size > LOFF_MAX


class RangeEngine:
    """The model's state as runs, advanced one event at a time through step().

    ``apply(ev)`` returns (outcome in real coordinates, effects, the compressed
    Transition); ``state_holds()`` says which state invariants hold on the whole state.
    """

    def __init__(self, cfg: Config, state: VmState = VmState()):
        self._memo = {}
        self._page_memo: dict = {}  # one-page events (_apply_page)
        self._vmv = 0  # bumped whenever the VM-wide fields change (_recount)
        self.epoch = 0  # bumped whenever a count behind state_holds() may have changed
        self.last_key = None  # the (compressed pre, event) key of the last apply(), if any
        self.last_entry = None  # _apply_page's memo entry of the last apply(), if it was one
        self.cfg = cfg
        self._ps = cfg.page_size
        self.vm = state._replace(pages=())  # the VM-wide fields
        self._intern: dict[Page, Page] = {}
        self.map = RunMap.from_pages(self._canon(p) for p in state.pages)
        self._recount()

    # --- queries --------------------------------------------------------------------

    @property
    def npages(self) -> int:
        return self.map.n

    @property
    def runs(self) -> int:
        return len(self.map)

    def page(self, index: int) -> Page:
        return self.map.page(index)

    def run_state(self) -> RunState:
        return RunState(self.vm, self.map)

    def state_holds(self) -> list[bool]:
        """For each state invariant (in ALWAYS order): does the whole state satisfy it?"""
        return [ok and not bad for ok, bad in zip(self._base_ok, self._bad)]

    # --- bookkeeping ------------------------------------------------------------------

    def _shell(self, pages: tuple = ()) -> VmState:
        """self.vm with these pages (what _replace does, without its generic machinery:
        this runs once per event)."""
        fields = list(self.vm)
        fields[_PAGES] = pages
        return _new_tuple(VmState, fields)

    def _canon(self, page: Page) -> Page:
        return self._intern.setdefault(page, page)

    def _mask(self, page: Page) -> int:
        m = self._masks.get(page)
        if m is None:
            s = self._shell((page,))
            m = sum(1 << i for i, p in enumerate(_STATE_PROPS) if not p.on_state(self.cfg, s))
            self._masks[page] = m
        return m

    def _recount(self) -> None:
        """Count, per state invariant, the pages that break it (the VM-wide context changed);
        take the census of page values while a whole-file rule can apply (see _context)."""
        self._masks: dict[Page, int] = {}
        self._vmv += 1
        self.epoch += 1
        shell = self._shell()
        self._base_ok = [p.on_state(self.cfg, shell) for p in _STATE_PROPS]
        self._bad = [0] * len(_STATE_PROPS)
        # No census: a file with huge folios runs on the page-level state (see apply).
        self._census: dict[Page, int] | None = None
        # Whether a one-page event may take _apply_page (no huge folios, no census).
        self._one_page = not self.vm.folios and self._census is None
        for a, e, page in self.map.runs():
            m = self._mask(page)
            if m:
                self._count(m, e - a)
            if self._census is not None:
                self._census[page] = self._census.get(page, 0) + e - a

    def _count(self, mask: int, n: int) -> None:
        self.epoch += 1
        for i in range(len(self._bad)):
            if mask >> i & 1:
                self._bad[i] += n

    def _context(self, cs=(), ce=(), cp=()) -> tuple:
        """One page of every value held outside the window [cs[0], ce[-1]), for a rule of
        step() that reads which page values the file holds (not where or how often).

        No rule needs it today: step.huge_folio_rule, the one whole-file rule, depends on
        where pages sit, so a file with huge folios runs on the page-level state instead
        (apply, _apply_expanded) and the census stays None: this returns ()."""
        if self._census is None:
            return ()
        inside: dict[Page, int] = {}
        for k, page in enumerate(cp):
            inside[page] = inside.get(page, 0) + ce[k] - cs[k]
        return tuple(p for p, c in self._census.items() if c > inside.get(p, 0))

    # --- one event --------------------------------------------------------------------

    def apply(self, ev: dict) -> tuple[dict, frozenset, Transition]:
        op = ev["op"]
        if op in _ONE_PAGE_OPS and self._one_page:
            off = ev["offset"]
            size = ev.get("size")
            ps = self._ps
            lo = off // ps
            if lo < self.map.n and (size is None or 0 < size <= ps - off % ps) and off <= LOFF_MAX:
                return self._apply_page(ev, off, size, lo)
        ps, n = self.cfg.page_size, self.map.n
        if self.vm.folios and op != "create_gmem":
            return self._apply_expanded(ev)  # step.huge_folio_rule reads whole folios
        if op == "replace_memslot":
            return self._apply_expanded(ev)
        if ev["op"] == "create_gmem" or "offset" not in ev or _past_loff_t(ev):
            return self._apply_whole(ev)
        off = ev["offset"]
        size = ev.get("size")
        end = off + (1 if size is None else size)
        lo = min(off // ps, n)
        hi = max(lo, min(-(-end // ps), n))
        # window page k stands for real pages [cs[k], ce[k])
        if hi - lo == 1:  # one page (every access): no tail
            cs, ce, cp = [lo], [hi], [self.map.page(lo)]
        else:
            cs, ce, cp = [], [], []
            for a, e, page in self.map.runs(lo, hi):
                cs.append(a)
                ce.append(a + 1)
                cp.append(page)
                if e - a > 1:
                    cs.append(a + 1)
                    ce.append(e)
                    cp.append(page)
        K = len(cp)
        ctx = self._context(cs, ce, cp)
        c = len(ctx)  # compressed page c + k is window page k

        def cmap(addr: int) -> int:
            p, r = divmod(addr, ps)
            k = bisect_right(cs, p) - 1 if p < hi else K + max(0, p - n)
            return (c + k) * ps + r

        def unmap(addr: int) -> int:
            k, r = divmod(addr, ps)
            k -= c
            p = cs[k] if 0 <= k < K else (hi if k == K else n + (k - K))
            return p * ps + r

        ev_c = dict(ev)
        ev_c["offset"] = o_c = cmap(off)
        if size is not None:
            ev_c["size"] = cmap(off + size) - o_c
        pre = self._shell(ctx + tuple(cp))
        post, out_c, effects = self._step(pre, ev_c)
        outcome = out_c
        if "error_offset" in out_c or "done" in out_c:
            outcome = dict(out_c)
            if "error_offset" in outcome:
                outcome["error_offset"] = unmap(out_c["error_offset"])
            if "done" in outcome:
                d = out_c["done"]
                outcome["done"] = ce[d - 1] - cs[0] if d else 0
        if post is not pre:
            if len(post.pages) != c + K or post.pages[:c] != ctx:
                raise AssertionError(f"{ev['op']} touched pages outside its range")
            if post.pages != pre.pages:
                self._write_back(lo, hi, cs, ce, cp, post.pages[c:])
            self._vm_fields(post)
        return outcome, effects, Transition(pre, ev_c, out_c, post, effects)

    def _apply_page(self, ev, off: int, size: int | None, lo: int) -> tuple[dict, frozenset, Transition]:
        """apply() of an event whose window is the one page lo (every access, and a call
        on one page), with no whole-file rule in force (no census): what the general
        path computes with cs = [lo], ce = [lo + 1] and no context pages, remembered per
        (VM-wide fields, page value, event) with its page write-back and the changes of
        the invariant counts, so that a repeat costs a lookup and a one-page
        RunMap.set_page. The compressed event is the event at offset off % page_size on
        compressed page 0 (its size, when it has one, ends on that page too)."""
        m = self.map
        b = bisect_right(m._mins, lo) - 1  # RunMap.page(lo), the block and index kept
        j = bisect_right(m._starts[b], lo) - 1
        page = m._pages[b][j]
        r = off - lo * self._ps
        # Pages are canonical (_canon: one object per value, kept for the engine's life),
        # so id(page) names the value; _vmv names the VM-wide fields.
        key = self.last_key = (self._vmv, id(page), r, size, *map(ev.get, _PAGE_KEY_FIELDS))
        hit = self._page_memo.get(key)
        if hit is None:
            if len(self._page_memo) >= _MEMO_MAX:
                self._page_memo.clear()
            hit = self._page_memo[key] = self._page_entry(ev, r, page)
        self.last_entry = hit
        out_c, effects, t, new, mo, mn, vm_post, remap, _ = hit
        if new is not None:
            if mo != mn:
                self._count(mo, -1)
                self._count(mn, 1)
            m.set_page(lo, new, b, j)
        if vm_post is not None:
            self._vm_fields(vm_post)
        if remap:
            ps = self._ps
            outcome = dict(out_c)
            if "error_offset" in outcome:
                k, rr = divmod(out_c["error_offset"], ps)
                outcome["error_offset"] = (lo if k == 0 else lo + 1 if k == 1 else self.map.n + k - 1) * ps + rr
            if "done" in outcome:
                outcome["done"] = 1 if out_c["done"] else 0
            return outcome, effects, t
        return out_c, effects, t

    def _page_entry(self, ev, r: int, page: Page) -> tuple:
        """What _apply_page remembers: step() on the one-page compressed state."""
        ev_c = dict(ev)
        ev_c["offset"] = r
        pre = self._shell((page,))
        post, out_c, effects = step(self.cfg, pre, ev_c)
        new = mo = mn = vm_post = None
        if post is not pre:
            if len(post.pages) != 1:
                raise AssertionError(f"{ev['op']} touched pages outside its range")
            if post.pages[0] != page:
                new = self._canon(post.pages[0])
                mo, mn = self._mask(page), self._mask(new)
            if post._replace(pages=()) != self.vm:
                vm_post = post
        # Whether the outcome names real pages (mapped back per event); the last slot is the
        # walk's: the transition invariants this transition breaks, once judged
        # (gmemlab.traces.walk).
        remap = "error_offset" in out_c or "done" in out_c
        return [out_c, effects, Transition(pre, ev_c, out_c, post, effects), new, mo, mn, vm_post, remap, None]

    def _step(self, pre: VmState, ev_c: dict):
        """step() on a compressed state, remembered: guest-scale traces repeat the same
        compressed (state, event) pairs over and over (a pure function, so exact)."""
        key = self.last_key = (pre, tuple(map(ev_c.get, _EVENT_FIELDS)))
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            hit = self._memo[key] = step(self.cfg, pre, ev_c)
        return hit

    def _apply_whole(self, ev: dict) -> tuple[dict, frozenset, Transition]:
        """Events that name no pages: create_gmem (which makes a new file) and finalize;
        and events past LLONG_MAX (_past_loff_t), which step() refuses untouched."""
        ev_c = ev
        if ev["op"] == "create_gmem":
            size, ps = ev["size"], self.cfg.page_size
            # A size the kernel reads as a negative loff_t stays as it is (step refuses it).
            ev_c = dict(ev, size=size if size > LOFF_MAX else (size % ps) or (ps if size else 0))
            ctx: tuple = ()
        else:
            ctx = self._context()
        pre = self._shell(ctx)
        post, out, effects = step(self.cfg, pre, ev_c)
        if post is not pre:
            if ev["op"] == "create_gmem" and post.created and post != pre:
                if len(post.pages) != 1:
                    raise AssertionError("create_gmem of one page made another number")
                n = ev["size"] // self.cfg.page_size
                self.map = RunMap(n, self._canon(post.pages[0]))
                # The huge folios of the real file, not of its one compressed page.
                folios = (True,) * folio_count(n, self.cfg.folio_pages) if self.cfg.huge_folios else ()
                self.vm = post._replace(pages=(), folios=folios)
                self._recount()
            elif post.pages != ctx:
                raise AssertionError(f"{ev['op']} without an offset touched pages")
            else:
                self._vm_fields(post)
        return out, effects, Transition(pre, ev_c, out, post, effects)

    def _apply_expanded(self, ev: dict) -> tuple[dict, frozenset, Transition]:
        """replace_memslot: the one op that changes pages outside the range it names (the
        pages the memslot no longer covers). Rare (a VMM rebinds a memslot a handful of
        times), so step() runs on the page-level state and the runs are rebuilt."""
        pre = self._shell(self.map.expand())
        post, out, effects = step(self.cfg, pre, ev)
        if post is not pre:
            self.map = RunMap.from_pages(self._canon(p) for p in post.pages)
            self.vm = post._replace(pages=())
            self._recount()
        return out, effects, Transition(pre, ev, out, post, effects)

    def _vm_fields(self, post: VmState) -> None:
        vm = self.vm
        if post[:_PAGES] != vm[:_PAGES] or post[_PAGES + 1:] != vm[_PAGES + 1:]:
            self.vm = post._replace(pages=())
            self._recount()

    def _write_back(self, lo, hi, cs, ce, cp, new_pages) -> None:
        new: list[tuple[int, Page]] = []
        last = None
        census = self._census
        for k, page in enumerate(new_pages):
            old = cp[k]
            if page is not old and page != old:
                page = self._canon(page)
                length = ce[k] - cs[k]
                mo, mn = self._mask(old), self._mask(page)
                if mo != mn:
                    self._count(mo, -length)
                    self._count(mn, length)
                if census is not None:
                    left = census[old] - length
                    if left:
                        census[old] = left
                    else:
                        del census[old]
                    census[page] = census.get(page, 0) + length
            else:
                page = old
            if page != last:
                new.append((cs[k], page))
                last = page
        self.map.assign(lo, hi, new)


# The fields that make up an event for step(); the rest (line, t, note, expect) does not
# change what it does.
_EVENT_FIELDS = ("op", "offset", "size", "attributes", "flags", "private", "src", "value", "process", "fail")
assert _EVENT_FIELDS[-1] == FAIL
# The ops that name pages by offset and touch no others (replace_memslot does: it goes
# through _apply_expanded): the candidates of RangeEngine._apply_page.
# What keys _apply_page's memo besides the page, the offset in it and the size: the rest
# of _EVENT_FIELDS.
_PAGE_KEY_FIELDS = tuple(f for f in _EVENT_FIELDS if f not in ("offset", "size"))
_ONE_PAGE_OPS = frozenset({"set_attributes", "host_write", "host_read", "pin", "unpin", "punch_hole",
                           "populate", "guest_read", "guest_write", "guest_accept", "map_gpa_range"})
_MEMO_MAX = 1 << 16

