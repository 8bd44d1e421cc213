"""The step function memoized per page: what the fast explorer looks up instead of calling.

Locality. With the explorer's action set (gmemlab.explore.bfs.actions, ranges
"page+file") every event names one page, the whole file, or no page at all (finalize).
step() is local: what an event naming page i does -- the new page i, the outcome, the
effects -- depends on page i, the VM-wide fields (created, gmem flags, finalized) and the
config, never on the other pages, which it leaves as they were. So the table evaluates
step() once per (event, VM-wide fields, page value), on the first real state where that
combination turns up, and looks the result up afterwards. A page value is a small
integer (pid), the VM-wide fields a context id (cid); a lookup is a numpy gather over a
whole batch of states. Every evaluation checks that the other pages and the VM-wide
fields came out unchanged (``NotLocal`` otherwise, and the explorer falls back to
calling step() itself). A knob the table does not know to be local (huge_folios: the
huge folio is a whole-file fact) makes ``supported`` say no.

Whole-file calls. set_attributes and punch_hole on the whole file are composed from the
per-page results of the same call on each single page, with the cross-page rules of
step.set_attributes: a VM-wide refusal (flags, v5 modes) first; then the early return
when every page already has the attribute; to private, the unmap of every page of the
range and, if any page is pinned, EAGAIN at the first pinned page with no attribute
changed; otherwise each page converts as it would alone (a page that already has the
attribute is only unmapped). punch_hole frees each page as it would alone.

Properties. A transition property of a single-page or VM-wide event is judged on the
real transition, the first time its (event, context, page) turns up. A whole-file call
is judged page by page: each page's part is a transition of a file whose every page
is that page, with the call's outcome and that page's share of the effects; an "always"
property breaks if it breaks on some part, a "sometimes" one is seen if it is seen on
some part (every transition property of gmemlab.invariants judges pages one at a time).
State properties are judged per page the same way (``page_bits``), on a state of
the same context holding that one page, and on the context with no page at all.

tests/test_pagetable.py compares the lookups and compositions with step() and the
properties on random states; tests/test_explore.py compares whole explorations with the
reference explorer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gmemlab.invariants import Transition
from gmemlab.model.state import Config, Page, VmState
from gmemlab.model.step import step

# Knobs step() reads only page by page. Any other non-default field of Config (a knob
# added later) sends the explorer to the reference loop until it is listed here.
LOCAL_FIELDS = frozenset({"proposal", "platform", "series", "page_size",
                          "refuse_unprepared_populate", "convert_after_populate",
                          "no_direct_map_series"})
FILE_OPS = ("set_attributes", "punch_hole")
_PAGES = VmState._fields.index("pages")


class NotLocal(Exception):
    """The fast path does not apply (an event or knob that is not page-local)."""


def supported(cfg: Config) -> bool:
    """Whether every non-default field of the config is a known page-local knob.

    >>> supported(Config()), supported(Config(huge_folios=True))
    (True, False)
    """
    default = Config()
    return all(f.name in LOCAL_FIELDS or getattr(cfg, f.name) == getattr(default, f.name)
               for f in dataclasses.fields(cfg))


def _grow(a: np.ndarray, axis: int, size: int, fill) -> np.ndarray:
    shape = list(a.shape)
    shape[axis] = size - a.shape[axis]
    return np.concatenate([a, np.full(shape, fill, a.dtype)], axis=axis)


@dataclasses.dataclass
class Succ:
    """The successors of a batch of states under one event (arrays over the batch)."""

    same: np.ndarray              # bool: the state is left as it was (a self loop)
    valid: np.ndarray | None      # bool: within the pin bound (None: all are)
    tbits: np.ndarray | None      # int64: bit k = transition property k broken (always) or
                                  # seen (sometimes); None: no bit of ``want`` anywhere
    rows: object                  # callable(mask) -> (post pid rows, post cids), not canonical
    outcomes: object              # callable() -> (outcome ids, effect bits) of the whole batch
    page: int = -1                # a single-page event: the one column that changes ...
    new: np.ndarray | None = None  # ... and its new page ids


class PageTable:
    """Memoized step() over page ids and context ids, for one config and action set."""

    def __init__(self, cfg: Config, npages: int, max_pins: int, events: list[dict],
                 trans_props: list, state_props: list):
        self.cfg, self.n, self.ps, self.max_pins = cfg, npages, cfg.page_size, max_pins
        self.trans_props = trans_props        # [(Property, is_always)]
        self.state_props = state_props        # [callable(cfg, VmState) -> bool]
        self.events = [dict(ev) for ev in events]
        self.nactions = len(events)
        self.kind: list[str] = []
        self.pos: list[int] = []
        for ev in list(self.events):
            self._classify(ev)
        # Whole-file events: the single-page event of each page (appended if not an action).
        self.file_slot: dict[int, int] = {}
        self.pieces: list[list[int]] = []
        for e in range(self.nactions):
            if self.kind[e] == "file":
                self.file_slot[e] = len(self.pieces)
                self.pieces.append([self._piece(self.events[e], j) for j in range(npages)])
        self.file_slot_event = {slot: e for e, slot in self.file_slot.items()}
        self.pages: list[Page] = []
        self._pid: dict[Page, int] = {}
        self.ctxs: list[VmState] = []
        self._cid: dict[VmState, int] = {}
        self.outcomes: list[dict] = []
        self._oid: dict[tuple, int] = {}
        self.effect_names: list[str] = []
        self._ebit: dict[str, int] = {}
        self._rank_dirty = True
        E, F = len(self.events), len(self.pieces)
        self._version = [0] * E      # bumped when an event's entries are filled (for _cache)
        self._cache: dict = {}
        self.nvariants = 3 + 2 * npages      # see _file_variant
        # The tables, grown as pages (P) and contexts (C) turn up; -1 (or -2) = not yet known.
        #   NEW/OUT/EFF/TB[event, cid, pid]: new pid, outcome id, effect bits, transition
        #     property bits of a single-page event on that page in that context;
        #   VNEW/VOUT/VEFF/VTB[event, cid]: the same for a VM-wide event (new context);
        #   PB[file slot, variant, cid, pid]: property bits of a page's part in a
        #     whole-file call (_file_variant); VMERR[file slot, cid]: its VM-wide refusal;
        #   SP[cid, pid], SV[cid]: state property bits with that page alone / no page;
        #   PRIV, PINNED, PINOK, UNMAP, RANK, UNRANK[pid]: per page value.
        P, C = 64, 4
        self.NEW = np.full((E, C, P), -1, np.int32)
        self.OUT = np.zeros((E, C, P), np.int32)
        self.EFF = np.zeros((E, C, P), np.int64)
        self.TB = np.zeros((E, C, P), np.int64)
        self.VNEW = np.full((E, C), -1, np.int32)
        self.VOUT = np.zeros((E, C), np.int32)
        self.VEFF = np.zeros((E, C), np.int64)
        self.VTB = np.zeros((E, C), np.int64)
        self.PB = np.full((max(F, 1), self.nvariants, C, P), -1, np.int64)
        self.VMERR = np.full((max(F, 1), C), -2, np.int32)
        self.SP = np.full((C, P), -1, np.int64)    # state property bits per (context, page)
        self.SV = np.full(C, -1, np.int64)         # ... and per context without pages
        self.PRIV = np.zeros(P, bool)
        self.PINNED = np.zeros(P, bool)
        self.PINOK = np.zeros(P, bool)
        self.UNMAP = np.zeros(P, np.int32)
        self.RANK = np.zeros(P, np.int32)
        self.UNRANK = np.zeros(P, np.int32)
        self.ok_oid = self.intern_outcome({"ret": 0})

    # --- interning ------------------------------------------------------------------

    def _classify(self, ev: dict) -> None:
        n, ps = self.n, self.ps
        if "offset" not in ev:
            if ev["op"] in ("create_gmem",):
                raise NotLocal(f"{ev['op']} is not an action the table knows")
            self.kind.append("vm")
            self.pos.append(-1)
            return
        off, size = ev["offset"], ev.get("size")
        if off % ps == 0 and off // ps < n and (size is None or size == ps):
            self.kind.append("page")
            self.pos.append(off // ps)
        elif off == 0 and size == n * ps and n > 1 and ev["op"] in FILE_OPS:
            self.kind.append("file")
            self.pos.append(-1)
        else:
            raise NotLocal(f"{ev['op']} at {off}+{size} names neither one page nor the whole file")

    def _piece(self, ev: dict, j: int) -> int:
        piece = dict(ev, offset=j * self.ps, size=self.ps)
        for e in range(len(self.events)):
            if self.events[e] == piece:
                return e
        self.events.append(piece)
        self._classify(piece)
        return len(self.events) - 1

    def intern_page(self, p: Page) -> int:
        pid = self._pid.get(p)
        if pid is not None:
            return pid
        pid = len(self.pages)
        self.pages.append(p)
        self._pid[p] = pid
        if pid >= self.PRIV.shape[0]:
            self._grow_pages(2 * self.PRIV.shape[0])
        self.PRIV[pid] = p.private
        self.PINNED[pid] = p.pins > 0
        self.PINOK[pid] = p.pins <= self.max_pins
        self.UNMAP[pid] = pid
        if p.mapped:
            # step.set_attributes to private unmaps every page of the range first
            self.UNMAP[pid] = self.intern_page(p._replace(mapped=()))
        self._rank_dirty = True
        return pid

    def intern_ctx(self, s: VmState) -> int:
        key = s._replace(pages=())
        cid = self._cid.get(key)
        if cid is not None:
            return cid
        cid = len(self.ctxs)
        self.ctxs.append(key)
        self._cid[key] = cid
        if cid >= self.VNEW.shape[1]:
            self._grow_ctxs(2 * self.VNEW.shape[1])
        return cid

    def intern_outcome(self, out: dict) -> int:
        key = tuple(out.items())
        oid = self._oid.get(key)
        if oid is None:
            oid = self._oid[key] = len(self.outcomes)
            self.outcomes.append(dict(out))
        return oid

    def effect_bits(self, effects: frozenset) -> int:
        bits = 0
        for name in effects:
            b = self._ebit.get(name)
            if b is None:
                b = self._ebit[name] = len(self.effect_names)
                self.effect_names.append(name)
            bits |= 1 << b
        return bits

    def effects_of(self, bits: int) -> frozenset:
        return frozenset(name for b, name in enumerate(self.effect_names) if bits >> b & 1)

    def _grow_pages(self, P: int) -> None:
        for name, fill in (("NEW", -1), ("OUT", 0), ("EFF", 0), ("TB", 0), ("PB", -1), ("SP", -1)):
            a = getattr(self, name)
            setattr(self, name, _grow(a, a.ndim - 1, P, fill))
        for name in ("PRIV", "PINNED", "PINOK", "UNMAP", "RANK", "UNRANK"):
            setattr(self, name, _grow(getattr(self, name), 0, P, 0))

    def _grow_ctxs(self, C: int) -> None:
        for name, fill in (("NEW", -1), ("OUT", 0), ("EFF", 0), ("TB", 0), ("PB", -1), ("SP", -1)):
            a = getattr(self, name)
            setattr(self, name, _grow(a, a.ndim - 2, C, fill))
        for name, fill in (("VNEW", -1), ("VOUT", 0), ("VEFF", 0), ("VTB", 0), ("VMERR", -2)):
            setattr(self, name, _grow(getattr(self, name), 1, C, fill))
        self.SV = _grow(self.SV, 0, C, -1)

    # --- states ---------------------------------------------------------------------

    def state(self, cid: int, row) -> VmState:
        """The VmState of a context and a row of page ids."""
        pages, ctx, k = self.pages, self.ctxs[cid], _PAGES
        return VmState._make(ctx[:k] + (tuple([pages[p] for p in row]),) + ctx[k + 1:])

    def row(self, s: VmState) -> tuple[int, list[int]]:
        return self.intern_ctx(s), [self.intern_page(p) for p in s.pages]

    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """rank[pid] = position of the page in Page order (canonical() sorts by it)."""
        if self._rank_dirty:
            order = sorted(range(len(self.pages)), key=self.pages.__getitem__)
            self.UNRANK[:len(order)] = order
            self.RANK[order] = np.arange(len(order), dtype=np.int32)
            self._rank_dirty = False
        return self.RANK, self.UNRANK

    def _judge(self, t: Transition, want: int) -> int:
        """The transition-property bits of t, judging only the properties in ``want``.

        The explorer's ``want`` only shrinks (a property once decided stays decided), so
        a bit left unjudged is never asked for later."""
        bits = 0
        for k, (p, always) in enumerate(self.trans_props):
            if want >> k & 1 and p.on_transition(self.cfg, t) != always:
                bits |= 1 << k
        return bits

    # --- lookups ----------------------------------------------------------------------

    def successors(self, e: int, rows: np.ndarray, cids: np.ndarray, want: int = -1) -> Succ:
        """What action e does to each state of the batch (rows: page ids, cids: contexts).

        ``want``: the transition-property bits the caller still needs; tbits is None
        when no successor has any of them.
        """
        kind = self.kind[e]
        if kind == "page":
            return self._page(e, rows, cids, want)
        if kind == "vm":
            return self._vm(e, rows, cids, want)
        return self._file(e, rows, cids, want)

    def _pins_ok(self, e: int) -> bool:
        """Whether no page the table has for event e breaks the pin bound."""
        key = ("pins", e)
        if self._cache.get(key, (None,))[0] != self._version[e]:
            new = self.NEW[e]
            self._cache[key] = (self._version[e], bool(self.PINOK[new[new >= 0]].all()))
        return self._cache[key][1]

    def _tb_any(self, e: int, want: int) -> bool:
        """Whether some entry of single-page event e has a bit of ``want``."""
        key = ("tb", e, want)
        if self._cache.get(key, (None,))[0] != self._version[e]:
            self._cache[key] = (self._version[e], bool((self.TB[e] & want).any()))
        return self._cache[key][1]

    def _page_lookup(self, e: int, rows: np.ndarray, cids: np.ndarray, want: int = -1):
        i = self.pos[e]
        p = rows[:, i]
        new = self.NEW[e][cids, p]
        miss = new < 0
        if miss.any():
            self._fill_page(e, rows[miss], cids[miss], want)
            new = self.NEW[e][cids, p]
        return p, new

    def page_batch(self, acts: np.ndarray, pos: np.ndarray, rows: np.ndarray, cids: np.ndarray,
                   want: int):
        """Every single-page event of ``acts`` (pages ``pos``) on the batch at once:
        (old page ids, new page ids, within the pin bound or None, property bits or None),
        each (batch, len(acts)): what ``successors`` gives event by event, in one gather."""
        old = rows[:, pos]
        at = (acts[None, :], cids[:, None], old)
        new = self.NEW[at]
        miss = new < 0
        if miss.any():
            for j in np.flatnonzero(miss.any(0)).tolist():
                m = miss[:, j]
                self._fill_page(int(acts[j]), rows[m], cids[m], want)
            new = self.NEW[at]
        valid = None
        bad = [j for j, a in enumerate(acts.tolist()) if not self._pins_ok(a)]
        if bad:
            valid = np.ones(new.shape, bool)
            valid[:, bad] = self.PINOK[new[:, bad]]
        tbits = None
        if want and any(self._tb_any(a, want) for a in acts.tolist()):
            tbits = self.TB[at]
        return old, new, valid, tbits

    def _page(self, e, rows, cids, want) -> Succ:
        i = self.pos[e]
        p, new = self._page_lookup(e, rows, cids, want)
        tbits = self.TB[e][cids, p] if want and self._tb_any(e, want) else None
        valid = None if self._pins_ok(e) else self.PINOK[new]

        def post(mask):
            r = rows[mask].copy()
            r[:, i] = new[mask]
            return r, cids[mask]
        return Succ(new == p, valid, tbits, post,
                    lambda: (self.OUT[e][cids, p], self.EFF[e][cids, p]), page=i, new=new)

    def _fill_page(self, e: int, rows: np.ndarray, cids: np.ndarray, want: int) -> None:
        i, ev, cfg, k = self.pos[e], self.events[e], self.cfg, _PAGES
        done: dict[tuple, tuple] = {}
        for cid, row in zip(cids.tolist(), rows.tolist()):
            p = row[i]
            if (cid, p) in done:
                continue
            s = self.state(cid, row)
            post, out, eff = step(cfg, s, ev)
            a, b = post.pages, s.pages
            if post[:k] != s[:k] or post[k + 1:] != s[k + 1:] or a[:i] != b[:i] or a[i + 1:] != b[i + 1:]:
                raise NotLocal(f"{ev['op']} on page {i} changed more than that page")
            done[cid, p] = (self.intern_page(a[i]), self.intern_outcome(out), self.effect_bits(eff),
                            self._judge(Transition(s, ev, out, post, eff), want))
        # one write per table (interning may have grown them: index them only now)
        c, q = np.array(list(done), np.int64).T
        new, oid, eff, tb = zip(*done.values())
        self.NEW[e, c, q] = new
        self.OUT[e, c, q] = oid
        self.EFF[e, c, q] = eff
        self.TB[e, c, q] = tb
        self._version[e] += 1

    def _vm(self, e, rows, cids, want) -> Succ:
        newc = self.VNEW[e][cids]
        miss = newc < 0
        if miss.any():
            ev = self.events[e]
            for cid, row in zip(cids[miss].tolist(), rows[miss].tolist()):
                if self.VNEW[e, cid] >= 0:
                    continue
                s = self.state(cid, row)
                post, out, eff = step(self.cfg, s, ev)
                if post.pages != s.pages:
                    raise NotLocal(f"{ev['op']} changed pages")
                c = self.intern_ctx(post)
                self.VNEW[e, cid] = c
                self.VOUT[e, cid] = self.intern_outcome(out)
                self.VEFF[e, cid] = self.effect_bits(eff)
                self.VTB[e, cid] = self._judge(Transition(s, ev, out, post, eff), want)
            newc = self.VNEW[e][cids]
        tbits = self.VTB[e][cids]
        return Succ(newc == cids, None, tbits if (tbits & want).any() else None,
                    lambda mask: (rows[mask], newc[mask]),
                    lambda: (self.VOUT[e][cids], self.VEFF[e][cids]))

    # --- whole-file calls ---------------------------------------------------------------

    # Variants of a page's part in a whole-file call: 0 a VM-wide refusal, 1 every page
    # already had the attribute, 2 the page already had it (only unmapped), 3 + j the page
    # at j converts (or is punched) as alone, 3 + n + k EAGAIN at the pinned page k.
    def _file_variant(self, slot: int, v: int, cid: int, p: int) -> tuple[int, int, int]:
        """(post pid, outcome id, effect bits) of a page's part in a whole-file call."""
        e = self.file_slot_event[slot]
        ev, n = self.events[e], self.n
        if v == 0:
            return p, int(self.VMERR[slot, cid]), 0
        if v == 1:
            return p, self.ok_oid, 0
        if v == 2:
            to_private = ev.get("attributes") == "private"
            return (int(self.UNMAP[p]) if to_private else p), self.ok_oid, 0
        if v < 3 + n:
            a = self.pieces[slot][v - 3]
            q, oid, eff = int(self.NEW[a, cid, p]), self.ok_oid, int(self.EFF[a, cid, p])
            if ev["op"] == "punch_hole":
                oid = int(self.OUT[a, cid, p])
            return q, oid, eff
        k = v - 3 - n
        return int(self.UNMAP[p]), self.intern_outcome({"ret": "EAGAIN", "error_offset": k * self.ps}), 0

    def _fill_file_bits(self, slot: int, var: np.ndarray, cids: np.ndarray, rows: np.ndarray,
                        want: int) -> None:
        e = self.file_slot_event[slot]
        ev, n = self.events[e], self.n
        for v, cid, p in set(zip(var.tolist(), cids.tolist(), rows.tolist())):
            if self.PB[slot, v, cid, p] >= 0:
                continue
            q, oid, eff = self._file_variant(slot, v, cid, p)
            ctx = self.ctxs[cid]
            pre = ctx._replace(pages=(self.pages[p],) * n)
            post = ctx._replace(pages=(self.pages[q],) * n)
            t = Transition(pre, ev, self.outcomes[oid], post, self.effects_of(eff))
            self.PB[slot, v, cid, p] = self._judge(t, want)

    def _vm_refusal(self, slot: int, e: int, cids: np.ndarray) -> np.ndarray:
        """Outcome id of a VM-wide refusal of the whole-file call in each context, or -1."""
        err = self.VMERR[slot][cids]
        if (err == -2).any():
            ev = self.events[e]
            for cid in np.unique(cids[err == -2]).tolist():
                # a file of pages that would all convert: only a VM-wide check can fail
                want = ev.get("attributes") == "private"
                page = Page(private=not want)
                s = self.ctxs[cid]._replace(pages=(page,) * self.n)
                out = step(self.cfg, s, ev).outcome
                self.VMERR[slot, cid] = -1 if out.get("ret") == 0 else self.intern_outcome(out)
            err = self.VMERR[slot][cids]
        return err

    def _file(self, e: int, rows: np.ndarray, cids: np.ndarray, want: int) -> Succ:
        slot, ev, n = self.file_slot[e], self.events[e], self.n
        F = len(rows)
        pieces = self.pieces[slot]
        full = np.empty_like(rows)
        for j, a in enumerate(pieces):
            full[:, j] = self._page_lookup(a, rows, cids, want)[1]
        var = np.empty((F, n), np.int64)
        if ev["op"] == "punch_hole":
            newrows = full
            var[:] = 3 + np.arange(n)
            oid = self.OUT[pieces[0]][cids, rows[:, 0]]
            eff = np.bitwise_or.reduce(
                np.stack([self.EFF[a][cids, rows[:, j]] for j, a in enumerate(pieces)], 1), axis=1)
        else:
            to_private = ev["attributes"] == "private"
            err = self._vm_refusal(slot, e, cids)
            refused = err >= 0
            already = self.PRIV[rows] == to_private
            every = already.all(1) & ~refused
            if to_private:
                pinned = self.PINNED[rows]
                eagain = pinned.any(1) & ~refused & ~every
                first = pinned.argmax(1)
            else:
                eagain = np.zeros(F, bool)
                first = np.zeros(F, np.int64)
            normal = ~refused & ~every & ~eagain
            unmapped = self.UNMAP[rows] if to_private else rows
            newrows = np.where(already, unmapped, full)
            newrows[refused | every] = rows[refused | every]
            newrows[eagain] = self.UNMAP[rows[eagain]]
            var[:] = np.where(already, 2, 3 + np.arange(n))
            var[refused] = 0
            var[every] = 1
            var[eagain] = (3 + n + first[eagain])[:, None]
            oid = np.full(F, self.ok_oid, np.int32)
            oid[refused] = err[refused]
            if eagain.any():
                eag = np.array([self.intern_outcome({"ret": "EAGAIN", "error_offset": k * self.ps})
                                for k in range(n)], np.int32)
                oid[eagain] = eag[first[eagain]]
            peff = np.stack([self.EFF[a][cids, rows[:, j]] for j, a in enumerate(pieces)], 1)
            eff = np.bitwise_or.reduce(np.where(normal[:, None] & ~already, peff, 0), axis=1)
        ccol = np.broadcast_to(cids[:, None], rows.shape)
        bits = self.PB[slot][var, ccol, rows]
        if (bits < 0).any():
            m = bits < 0
            self._fill_file_bits(slot, var[m], ccol[m], rows[m], want)
            bits = self.PB[slot][var, ccol, rows]
        tbits = np.bitwise_or.reduce(bits, axis=1)
        same = (newrows == rows).all(1)
        return Succ(same, self.PINOK[newrows].all(1), tbits if (tbits & want).any() else None,
                    lambda mask: (newrows[mask], cids[mask]), lambda: (oid, eff))

    # --- state properties -----------------------------------------------------------------

    def page_bits(self, rows: np.ndarray, cids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State properties judged on each context without pages (N,) and with each page
        alone (N, n), as bit masks: bit k set when state_props[k] holds there."""
        cfg, props = self.cfg, self.state_props

        def bits(s: VmState) -> int:
            return sum(1 << k for k, prop in enumerate(props) if prop(cfg, s))
        sv = self.SV[cids]
        if (sv < 0).any():
            for cid in np.unique(cids[sv < 0]).tolist():
                self.SV[cid] = bits(self.ctxs[cid])
            sv = self.SV[cids]
        ccol = np.broadcast_to(cids[:, None], rows.shape)
        sp = self.SP[ccol, rows]
        if (sp < 0).any():
            m = sp < 0
            for cid, p in set(zip(ccol[m].tolist(), rows[m].tolist())):
                self.SP[cid, p] = bits(self.ctxs[cid]._replace(pages=(self.pages[p],)))
            sp = self.SP[ccol, rows]
        return sv, sp
