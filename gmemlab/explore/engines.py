"""The engines: what the successors of a batch of states are. Nothing else.

The search driver (gmemlab.explore.search) owns all bookkeeping; an engine only answers
"the successors of these states under every action, and which transition properties
they break or show". Both engines get every answer from the model:

- ``reference`` calls step() on every (state, action) and judges every property on
  the real transition and state;
- ``fast`` evaluates the model once per page value and looks the answer up for a whole
  batch at once (numpy gathers):
  * a single-page event (an op of the model naming one page): step() once per
    (event, VM-wide fields, page value), on the first real state where that
    combination turns up; each evaluation checks that the other pages and the VM-wide
    fields came out unchanged (otherwise the action falls back, below);
  * a VM-wide event (finalize): step() once per VM-wide fields;
  * a range event whose rule is a plan (gmemlab.model.step.Plan: set_attributes,
    punch_hole): the plan's own phases, each evaluated once per page value and
    composed over the batch in the order the plan gives (Skip / Stop / Each, exactly
    as step.run_plan runs them);
  * anything else -- a rule a proposal replaces outright, a rule patched in step.OPS,
    a knob that is not page-local (gmemlab.model.vocab.Knob.page_local), an event that
    turned out not to be local -- falls back to step() state by state. Nothing is
    guessed.
  Properties: a transition property of a single-page or VM-wide event is judged on
  the real transition the first time its (event, context, page) turns up; of a range
  event, page by page: each page's part (its pre and post value, the call's outcome,
  its share of the effects) is judged on a file whose every page is that part. State
  properties are judged per page (on the context holding that page alone) to find the
  candidate states, which the driver then judges for real. The goal of no_stuck_state
  holds where it holds on the context and on every page alone. tests/test_engines.py
  holds the two engines to the same explorations.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gmemlab.explore import compiled
from gmemlab.explore.core import canonical
from gmemlab.invariants import Transition
from gmemlab.model import step as M
from gmemlab.model.state import Page, VmState
from gmemlab.model.vocab import page_local

_PAGES = VmState._fields.index("pages")


class NotLocal(Exception):
    """An event turned out not to be page-local: its action falls back to step()."""


def _grow(a: np.ndarray, axis: int, size: int, fill) -> np.ndarray:
    shape = list(a.shape)
    shape[axis] = size - a.shape[axis]
    return np.concatenate([a, np.full(shape, fill, a.dtype)], axis=axis)


class Codec:
    """Small integer ids for page values (pid), VM-wide fields (cid), outcomes and
    effects, shared by the engines and the driver. Arrays indexed by pid or cid live in
    the engines; ``listeners`` are told when a capacity doubles."""

    def __init__(self):
        self.pages: list[Page] = []
        self._pid: dict[Page, int] = {}
        self.ctxs: list[VmState] = []
        self._cid: dict[VmState, int] = {}
        self.outcomes: list[dict] = []
        self._oid: dict[tuple, int] = {}
        self.effect_names: list[str] = []
        self._ebit: dict[str, int] = {}
        self.pcap, self.ccap = 64, 4
        self.RANK = np.zeros(self.pcap, np.int32)
        self.UNRANK = np.zeros(self.pcap, np.int32)
        self._rank_dirty = True
        self.listeners: list = []

    def intern_page(self, p: Page) -> int:
        pid = self._pid.get(p)
        if pid is None:
            pid = self._pid[p] = len(self.pages)
            self.pages.append(p)
            self._rank_dirty = True
            if pid >= self.pcap:
                self.pcap *= 2
                self.RANK = _grow(self.RANK, 0, self.pcap, 0)
                self.UNRANK = _grow(self.UNRANK, 0, self.pcap, 0)
                for f in self.listeners:
                    f(self.pcap, self.ccap)
        return pid

    def intern_ctx(self, s: VmState) -> int:
        key = s._replace(pages=())
        cid = self._cid.get(key)
        if cid is None:
            cid = self._cid[key] = len(self.ctxs)
            self.ctxs.append(key)
            if cid >= self.ccap:
                self.ccap *= 2
                for f in self.listeners:
                    f(self.pcap, self.ccap)
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
        for name in sorted(effects):
            b = self._ebit.get(name)
            if b is None:
                b = self._ebit[name] = len(self.effect_names)
                self.effect_names.append(name)
            bits |= 1 << b
        return bits

    def effects_of(self, bits: int) -> frozenset:
        return frozenset(name for b, name in enumerate(self.effect_names) if bits >> b & 1)

    def state(self, cid: int, row) -> VmState:
        pages, ctx, k = self.pages, self.ctxs[cid], _PAGES
        return VmState._make(ctx[:k] + (tuple([pages[p] for p in row]),) + ctx[k + 1:])

    def row(self, s: VmState) -> tuple[int, list[int]]:
        return self.intern_ctx(s), [self.intern_page(p) for p in s.pages]

    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """rank[pid] = the page's position in Page order (canonical() sorts by it)."""
        if self._rank_dirty:
            order = sorted(range(len(self.pages)), key=self.pages.__getitem__)
            self.UNRANK[:len(order)] = order
            self.RANK[order] = np.arange(len(order), dtype=np.int32)
            self._rank_dirty = False
        return self.RANK, self.UNRANK

    def replace_sorted(self, rows: np.ndarray, i: int, values: np.ndarray) -> np.ndarray:
        """Sorted rows with column i replaced by values, sorted again: the one new page
        is moved into place in rank space (cheaper than a sort)."""
        rank, unrank = self.ranks()
        n = rows.shape[1]
        rest = rank[np.delete(rows, i, axis=1)]     # the other pages, still sorted
        v = rank[values]
        at = np.zeros(len(v), np.int64)             # where the new page goes
        for j in range(n - 1):
            at += rest[:, j] < v
        out = np.empty((len(v), n), rest.dtype)
        for j in range(n):
            below = rest[:, j] if j < n - 1 else v
            above = rest[:, j - 1] if j > 0 else v
            out[:, j] = np.where(at > j, below, np.where(at == j, v, above))
        return unrank[out]

    def sort_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of page ids sorted in Page order (what canonical() does to a state)."""
        if rows.shape[1] < 2:
            return rows
        rank, unrank = self.ranks()
        return unrank[np.sort(rank[rows], axis=1)]


class Expansion(NamedTuple):
    """The successors of a batch of F states under A actions."""

    flat: np.ndarray            # int64 f * A + a of every kept transition that leaves its state
    rows: np.ndarray            # (len(flat), n) their successors' page ids (sorted if symmetric)
    cids: np.ndarray            # (len(flat),) their successors' contexts
    invalid: np.ndarray | None  # (F, A) bool: transitions past the boundary (dropped), or None
    tfirst: dict                # transition-property bit -> first flat index showing it


class Engine:
    """What both engines share: the spec, the codec, the properties as bit lists."""

    name = "?"

    def __init__(self, spec, codec: Codec):
        self.spec, self.codec, self.cfg = spec, codec, spec.config
        self.n, self.ps = spec.bounds.pages, spec.config.page_size
        # transition properties: bit b <-> (property, is_always); a bit is "set" where
        # the property is broken (always) or shown (sometimes)
        self.trans = [(p, True) for p in spec.always if p.on_transition is not None] + \
                     [(p, False) for p in spec.sometimes if p.on_transition is not None]
        always_state = [p for p in spec.always if p.on_state is not None]
        some_state = [p for p in spec.sometimes if p.on_state is not None]
        self.state_props = always_state + some_state
        self.state_fns = [p.on_state for p in self.state_props] + [spec.goal]
        self.goal_bit = 1 << len(self.state_props)

    def judge(self, t: Transition, want: int) -> int:
        bits = 0
        for k, (p, always) in enumerate(self.trans):
            if want >> k & 1 and p.on_transition(self.cfg, t) != always:
                bits |= 1 << k
        return bits

    def bits_of(self, s: VmState) -> int:
        """Bit k set where state_fns[k] holds on s."""
        return sum(1 << k for k, f in enumerate(self.state_fns) if f(self.cfg, s))

    def whole_state_bits(self, rows: np.ndarray, cids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """state_bits judged on each whole state (both halves alike)."""
        b = np.array([self.bits_of(self.codec.state(int(c), r.tolist())) for c, r in zip(cids, rows)], np.int64)
        return b, b

    def _step_actions(self, acts: list[int], R: np.ndarray, C: np.ndarray, want: int, A: int,
                      symmetric: bool, out: dict) -> None:
        """The actions acts on every state of the batch through step() itself (each state
        decoded once)."""
        if not acts:
            return
        cfg, codec, spec = self.cfg, self.codec, self.spec
        events = [(a, spec.actions[a]) for a in acts]
        for f in range(len(C)):
            s = codec.state(int(C[f]), R[f].tolist())
            ample = spec.ample(s)
            for a, ev in events:
                if ample is not None and a not in ample:
                    out["invalid"].append(f * A + a)      # put off: partial-order reduction (Spec.ample)
                    continue
                post, outcome, effects = M.step(cfg, s, ev)
                if not spec.allowed(s, ev, post):
                    out["invalid"].append(f * A + a)
                    continue
                if want:
                    bits = self.judge(Transition(s, ev, outcome, post, effects), want)
                    for b in range(bits.bit_length()):
                        if bits >> b & 1:
                            out["tfirst"][b] = min(out["tfirst"].get(b, f * A + a), f * A + a)
                if post == s:
                    continue
                if symmetric:
                    post = canonical(post)[0]
                c, r = codec.row(post)
                out["flat"].append(f * A + a)
                out["rows"].append(r)
                out["cids"].append(c)

    def _finish(self, parts: list[tuple], out: dict, F: int, A: int,
                invalid: np.ndarray | None = None) -> Expansion:
        """The Expansion of the lookups' parts and of what _step_actions collected in out."""
        flats = [p[0] for p in parts] + [np.array(out["flat"], np.int64)]
        rows = [p[1] for p in parts] + [np.array(out["rows"], np.int32).reshape(-1, self.n)]
        cids = [p[2] for p in parts] + [np.array(out["cids"], np.int32)]
        if out["invalid"]:
            if invalid is None:
                invalid = np.zeros((F, A), bool)
            invalid.ravel()[np.array(out["invalid"], np.int64)] = True
        return Expansion(np.concatenate(flats), np.concatenate(rows), np.concatenate(cids),
                         invalid, out["tfirst"])

    def successor_keys(self, keys: np.ndarray, lay, want: int, symmetric: bool):
        """What the search driver asks: (the successor key of every transition of the
        batch in (state, action) order, -1 where it stays in its state or leaves the
        boundary; the transitions past the boundary as an (F, A) mask, or None; tfirst as
        in Expansion). keys: the batch's states (gmemlab.explore.search.KeyLayout)."""
        R, C = lay.decode(keys)
        ex = self.expand(R, C, want, symmetric)
        return self._dense(ex, lay, len(keys)), ex.invalid, ex.tfirst

    def _dense(self, ex: Expansion, lay, F: int) -> np.ndarray:
        lay.check(self.codec)
        dense = np.full(F * len(self.spec.actions), -1, np.int64)
        if len(ex.flat):
            dense[ex.flat] = lay.encode(ex.rows, ex.cids)
        return dense

    def outcome_ids(self, a: int, R: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(outcome id of action a in each state, kept within the boundary)."""
        ev, codec = self.spec.actions[a], self.codec
        oids = np.empty(len(C), np.int32)
        ok = np.empty(len(C), bool)
        for f in range(len(C)):
            s = codec.state(int(C[f]), R[f].tolist())
            r = M.step(self.cfg, s, ev)
            oids[f] = codec.intern_outcome(r.outcome)
            ample = self.spec.ample(s)
            ok[f] = self.spec.allowed(s, ev, r.state) and (ample is None or a in ample)
        return oids, ok

    def action_outcomes(self, x, wanted: list[int]) -> list[tuple[int, dict]]:
        """Every distinct (action, outcome) pair over an exploration's transitions, by
        action, then by the first state that shows it."""
        rows, cids = x.states.rows, x.states.cids
        firsts: dict[int, dict[int, int]] = {a: {} for a in wanted}
        step_ = 1 << 16
        for head in range(0, len(cids), step_):
            R, C = rows[head:head + step_], cids[head:head + step_]
            for a in wanted:
                oid, ok = self.outcome_ids(a, R, C)
                where = np.flatnonzero(ok)
                u, i = np.unique(oid[where], return_index=True)
                for o, f in zip(u.tolist(), (head + where[i]).tolist()):
                    firsts[a].setdefault(o, f)
        return [(a, dict(self.codec.outcomes[o])) for a in wanted
                for o, _ in sorted(firsts[a].items(), key=lambda kv: kv[1])]


class ReferenceEngine(Engine):
    """step() on every (state, action); every property judged for real."""

    name = "reference"

    def expand(self, R: np.ndarray, C: np.ndarray, want: int, symmetric: bool) -> Expansion:
        A = len(self.spec.actions)
        out = {"flat": [], "rows": [], "cids": [], "invalid": [], "tfirst": {}}
        self._step_actions(list(range(A)), R, C, want, A, symmetric, out)
        return self._finish([], out, len(C), A)

    def state_bits(self, rows: np.ndarray, cids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.whole_state_bits(rows, cids)


class FastEngine(Engine):
    """Lookups derived from step() and from the plans' phases (see the module docstring)."""

    name = "fast"

    def __init__(self, spec, codec: Codec):
        super().__init__(spec, codec)
        cfg = self.cfg
        self.events = list(spec.actions)
        E = len(self.events)
        local = page_local(cfg)
        # kind of each action: "page" (its page in pos), "vm", "plan" (its plan function),
        # or "step" (the fallback)
        self.kind: list[str] = []
        self.pos: list[int] = []
        self.plan_fn: list = []
        for ev in self.events:
            k, i, fn = self._classify(ev, local)
            self.kind.append(k)
            self.pos.append(i)
            self.plan_fn.append(fn)
        P, C = codec.pcap, codec.ccap
        # The tables grow with the contexts; an engine whose actions all step() (a
        # thread's calls: contexts by the thousand) keeps none (first dimension 0).
        Ep = E if "page" in self.kind else 0
        Ev = E if "vm" in self.kind else 0
        # single-page events: NEW/OUT/EFF/TB[event, cid, pid] (-1: not yet known)
        self.NEW = np.full((Ep, C, P), -1, np.int32)
        self.OUT = np.zeros((Ep, C, P), np.int32)
        self.EFF = np.zeros((Ep, C, P), np.int64)
        self.TB = np.zeros((Ep, C, P), np.int64)
        # VM-wide events: VNEW/VOUT/VEFF/VTB[event, cid]
        self.VNEW = np.full((Ev, C), -1, np.int32)
        self.VOUT = np.zeros((Ev, C), np.int32)
        self.VEFF = np.zeros((Ev, C), np.int64)
        self.VTB = np.zeros((Ev, C), np.int64)
        # plans: per (event, cid) the plan (or its immediate outcome id); per (event,
        # phase, cid, pid) the phase's value
        self.plans: dict[tuple[int, int], object] = {}
        self.phase: dict[tuple[int, int], list] = {}      # (event, phase) -> [VAL, EFF] arrays
        self.errnos: list[str] = []
        self.part_bits: dict[tuple, int] = {}
        self._parts: dict[tuple, tuple] = {}     # (event, want) -> (radix, sorted part keys, bits)
        # state properties per (context, page) and per context alone
        self.SP = np.full((C, P), -1, np.int64)
        self.SV = np.full(C, -1, np.int64)
        self.PINOK = np.zeros(P, bool)
        self._pinok_known = 0
        self._version = [0] * E
        self._cache: dict = {}
        codec.listeners.append(self._grow_to)

    # --- set-up ---------------------------------------------------------------------

    def _classify(self, ev, local: bool):
        """(kind, page, plan function) of an action under this config."""
        op = ev["op"]
        if "thread" in ev or not local or not M.builtin(self.cfg, op):
            # a thread's step reads and writes its call (gmemlab.model.threads): step()
            return "step", -1, None
        fn = M.plan_of(self.cfg, op)
        if "offset" not in ev:
            if fn is not None:    # a plan over every page (lru_drain)
                return "plan", -1, fn
            return ("vm", -1, None) if op != "create_gmem" else ("step", -1, None)
        off, size = ev["offset"], ev.get("size")
        if off % self.ps == 0 and off // self.ps < self.n and (size is None or size == self.ps):
            return "page", off // self.ps, None
        return ("plan", -1, fn) if fn is not None else ("step", -1, None)

    def _grow_to(self, P: int, C: int) -> None:
        for name, fill in (("NEW", -1), ("OUT", 0), ("EFF", 0), ("TB", 0)):
            a = getattr(self, name)
            if a.shape[2] < P:
                a = _grow(a, 2, P, fill)
            if a.shape[1] < C:
                a = _grow(a, 1, C, fill)
            setattr(self, name, a)
        for name, fill in (("VNEW", -1), ("VOUT", 0), ("VEFF", 0), ("VTB", 0)):
            a = getattr(self, name)
            if a.shape[1] < C:
                setattr(self, name, _grow(a, 1, C, fill))
        if self.SP.shape[1] < P:
            self.SP = _grow(self.SP, 1, P, -1)
        if self.SP.shape[0] < C:
            self.SP = _grow(self.SP, 0, C, -1)
            self.SV = _grow(self.SV, 0, C, -1)
        if self.PINOK.shape[0] < P:
            self.PINOK = _grow(self.PINOK, 0, P, False)
        for key, (val, eff) in list(self.phase.items()):
            if val.shape[1] < P or val.shape[0] < C:
                val = _grow(_grow(val, 1, max(P, val.shape[1]), -1), 0, max(C, val.shape[0]), -1)
                eff = _grow(_grow(eff, 1, max(P, eff.shape[1]), 0), 0, max(C, eff.shape[0]), 0)
                self.phase[key] = [val, eff]

    def _pinok(self) -> np.ndarray:
        """PINOK[pid]: the page is within the boundary (pins)."""
        pages = self.codec.pages
        for pid in range(self._pinok_known, len(pages)):
            self.PINOK[pid] = pages[pid].pins <= self.spec.bounds.max_pins
        self._pinok_known = len(pages)
        return self.PINOK

    # --- single-page events -------------------------------------------------------------

    def _fill_page(self, e: int, rows: np.ndarray, cids: np.ndarray, want: int) -> None:
        i, ev, cfg, k, codec = self.pos[e], self.events[e], self.cfg, _PAGES, self.codec
        done: dict[tuple, tuple] = {}
        for cid, row in zip(cids.tolist(), rows.tolist()):
            p = row[i]
            if (cid, p) in done:
                continue
            s = codec.state(cid, row)
            post, out, eff = M.step(cfg, s, ev)
            a, b = post.pages, s.pages
            if post[:k] != s[:k] or post[k + 1:] != s[k + 1:] or a[:i] != b[:i] or a[i + 1:] != b[i + 1:]:
                raise NotLocal(f"{ev['op']} on page {i} changed more than that page")
            done[cid, p] = (codec.intern_page(a[i]), codec.intern_outcome(out), codec.effect_bits(eff),
                            self.judge(Transition(s, ev, out, post, eff), want))
        c, q = np.array(list(done), np.int64).T
        new, oid, eff, tb = zip(*done.values())
        self.NEW[e, c, q] = new
        self.OUT[e, c, q] = oid
        self.EFF[e, c, q] = eff
        self.TB[e, c, q] = tb
        self._version[e] += 1

    def _cached(self, key, e, compute):
        hit = self._cache.get(key)
        if hit is None or hit[0] != (self._version[e], self.codec.pcap):
            hit = self._cache[key] = ((self._version[e], self.codec.pcap), compute())
        return hit[1]

    def _page_batch(self, acts: list[int], R: np.ndarray, C: np.ndarray, want: int):
        """Every single-page action of ``acts`` on the batch at once: (old pids, new pids,
        within the boundary or None, transition bits or None), each (F, len(acts))."""
        pos = np.array([self.pos[a] for a in acts], np.int64)
        A_ = np.array(acts, np.int64)
        old = R[:, pos]
        at = (A_[None, :], C[:, None], old)
        new = self.NEW[at]
        miss = new < 0
        if miss.any():
            for j in np.flatnonzero(miss.any(0)).tolist():
                m = miss[:, j]
                self._fill_page(acts[j], R[m], C[m], want)
            at = (A_[None, :], C[:, None], old)
            new = self.NEW[at]
        pinok = self._pinok()
        valid = None
        bad = [j for j, a in enumerate(acts)
               if not self._cached(("pins", a), a, lambda a=a: bool(pinok[self.NEW[a][self.NEW[a] >= 0]].all()))]
        if bad:
            valid = np.ones(new.shape, bool)
            valid[:, bad] = pinok[new[:, bad]]
        tbits = None
        if want and any(self._cached(("tb", a, want), a, lambda a=a: bool((self.TB[a] & want).any()))
                        for a in acts):
            tbits = self.TB[at]
        return old, new, valid, tbits

    # --- VM-wide events -------------------------------------------------------------------

    def _vm(self, e: int, R: np.ndarray, C: np.ndarray, want: int):
        newc = self.VNEW[e][C]
        miss = newc < 0
        if miss.any():
            ev, codec = self.events[e], self.codec
            for cid, row in zip(C[miss].tolist(), R[miss].tolist()):
                if self.VNEW[e, cid] >= 0:
                    continue
                s = codec.state(cid, row)
                post, out, eff = M.step(self.cfg, s, ev)
                if post.pages != s.pages:
                    raise NotLocal(f"{ev['op']} changed pages")
                c = codec.intern_ctx(post)
                self.VNEW[e, cid] = c
                self.VOUT[e, cid] = codec.intern_outcome(out)
                self.VEFF[e, cid] = codec.effect_bits(eff)
                self.VTB[e, cid] = self.judge(Transition(s, ev, out, post, eff), want)
            newc = self.VNEW[e][C]
        return newc, self.VTB[e][C]

    # --- plans ----------------------------------------------------------------------------

    def _plan(self, e: int, cid: int):
        """The plan of event e in context cid, or the outcome id of an immediate answer."""
        key = (e, cid)
        got = self.plans.get(key)
        if got is None:
            # The plan may look at the VM-wide fields and the number of pages, never at a
            # page: the pages it is given are placeholders, and touching one fails.
            shell = self.codec.ctxs[cid]._replace(pages=(None,) * self.n)
            try:
                got = self.plan_fn[e](self.cfg, shell, self.events[e])
            except AttributeError as err:
                raise NotLocal(f"the plan of {self.events[e]['op']} looked at a page: {err}") from None
            if isinstance(got, M.Result):
                if got.state != shell:
                    raise NotLocal(f"{self.events[e]['op']} changed the state without a plan")
                got = self.codec.intern_outcome(got.outcome)
            self.plans[key] = got
        return got

    def _phase_values(self, e: int, k: int, plan, cid: int, pids: np.ndarray):
        """The value of phase k of event e's plan on each page id: Skip 1/0; Stop 0 or
        1 + errno index; Each the new page id (and effect bits)."""
        key = (e, k)
        if key not in self.phase:
            P, C = self.codec.pcap, self.codec.ccap
            self.phase[key] = [np.full((C, P), -1, np.int32), np.zeros((C, P), np.int64)]
        val, eff = self.phase[key]
        got = val[cid, pids]
        miss = got < 0
        if miss.any():
            fn = plan.phases[k]
            codec = self.codec
            todo = {}
            for pid in np.unique(pids[miss]).tolist():
                page = codec.pages[pid]
                if isinstance(fn, M.Skip):
                    todo[pid] = (int(bool(fn.pred(page))), 0)
                elif isinstance(fn, M.Stop):
                    errno = fn.check(page)
                    if errno is None:
                        todo[pid] = (0, 0)
                    else:
                        if errno not in self.errnos:
                            self.errnos.append(errno)
                        todo[pid] = (1 + self.errnos.index(errno), 0)
                else:
                    q, effects = fn.update(page)
                    todo[pid] = (codec.intern_page(q), codec.effect_bits(effects))
            val, eff = self.phase[key]          # interning may have grown them
            for pid, (v, b) in todo.items():
                val[cid, pid] = v
                eff[cid, pid] = b
            got = val[cid, pids]
        return got, eff[cid, pids]

    def _run_plan(self, e: int, R: np.ndarray, C: np.ndarray):
        """The plan of event e over the batch: (post rows, outcome ids, effect bits per
        page (F, n)), composing the phases in order as step.run_plan does."""
        F = len(C)
        post = R.copy()
        oid = np.empty(F, np.int32)
        effp = np.zeros(R.shape, np.int64)
        for cid in np.unique(C).tolist():
            g = np.flatnonzero(C == cid)
            plan = self._plan(e, cid)
            if not isinstance(plan, M.Plan):
                oid[g] = plan
                continue
            cols = np.array(list(plan.span), np.int64)
            oid[g] = self.codec.intern_outcome(plan.outcome)
            if not cols.size:
                continue
            cur = R[g][:, cols]
            pe = np.zeros(cur.shape, np.int64)
            done = np.zeros(len(g), bool)
            for k, phase in enumerate(plan.phases):
                live = np.flatnonzero(~done)
                if not live.size:
                    break
                vals, effs = self._phase_values(e, k, plan, cid, cur[live])
                if isinstance(phase, M.Skip):
                    done[live[vals.all(1)]] = True
                elif isinstance(phase, M.Stop):
                    hit = np.flatnonzero((vals > 0).any(1))
                    if hit.size:
                        first = (vals[hit] > 0).argmax(1)
                        code = vals[hit, first].astype(np.int64) * len(cols) + first
                        u, inv = np.unique(code, return_inverse=True)
                        oids = np.array([self.codec.intern_outcome(
                            {"ret": self.errnos[c // len(cols) - 1],
                             "error_offset": int(cols[c % len(cols)]) * self.ps}) for c in u.tolist()], np.int32)
                        oid[g[live[hit]]] = oids[inv]
                        done[live[hit]] = True
                else:
                    cur[live] = vals
                    pe[live] |= effs
            rg = post[g]
            rg[:, cols] = cur
            post[g] = rg
            eg = effp[g]
            eg[:, cols] = pe
            effp[g] = eg
        return post, oid, effp

    def _plan_compiled(self, a: int, keys, R, C, want: int, symmetric: bool, lay, dense, invalid, tf) -> None:
        """Range action a over the batch in one compiled pass (compiled.plan_pass) over
        the plans' phase tables; a phase value not known yet is filled by _run_plan
        (from the model) and the pass run again. Writes into dense, invalid, tf."""
        codec, n, A = self.codec, self.n, len(self.events)
        Ccap = codec.ccap
        lo, hi = np.full(Ccap, -1, np.int64), np.zeros(Ccap, np.int64)
        imm, done = np.zeros(Ccap, np.int32), np.zeros(Ccap, np.int32)
        kinds_of: dict[int, list[int]] = {}
        for cid in np.unique(C).tolist():
            plan = self._plan(a, cid)
            if not isinstance(plan, M.Plan):
                imm[cid] = plan
                continue
            if plan.span.step != 1:
                raise NotLocal("a plan over a span with gaps")
            lo[cid], hi[cid] = plan.span.start, plan.span.stop
            done[cid] = codec.intern_outcome(plan.outcome)
            kinds_of[cid] = [compiled.SKIP if isinstance(ph, M.Skip) else
                             compiled.STOP if isinstance(ph, M.Stop) else compiled.EACH for ph in plan.phases]
        K = max((len(k) for k in kinds_of.values()), default=0)
        kinds = np.full((Ccap, max(K, 1)), -1, np.int64)
        for cid, ks in kinds_of.items():
            kinds[cid, :len(ks)] = ks
        F = len(keys)
        post, code, effp = np.empty((F, n), np.int64), np.empty(F, np.int64), np.empty((F, n), np.int64)
        okey, valid = np.empty(F, np.int64), np.zeros(F, bool)
        while True:
            P = codec.pcap
            for k in range(K):
                if (a, k) not in self.phase:
                    self.phase[a, k] = [np.full((codec.ccap, P), -1, np.int32), np.zeros((codec.ccap, P), np.int64)]
            VAL = np.stack([self.phase[a, k][0][:Ccap, :P] for k in range(K)]) if K else np.full((1, Ccap, P), -1, np.int32)
            EFF = np.stack([self.phase[a, k][1][:Ccap, :P] for k in range(K)]) if K else np.zeros((1, Ccap, P), np.int64)
            miss = np.zeros(F, bool)
            lay.check(codec)
            pinok, rank = self._pinok(), codec.ranks()[0].astype(np.int64)
            compiled.over_rows(F, lambda f0, f1, j: compiled.plan_pass(
                f0, f1, keys, lay.shift, lay.pmask, lay.cshift, lo, hi, kinds, VAL, EFF, pinok, rank, symmetric,
                post, code, effp, okey, valid, miss))
            if not miss.any():
                break
            self._run_plan(a, R[miss], C[miss])      # fills the phase tables from the model
        oid = np.where(code == -2, imm[C], done[C]).astype(np.int32)
        stops = np.flatnonzero(code >= 0)
        if stops.size:
            u, inv = np.unique(code[stops], return_inverse=True)
            oid[stops] = np.array([codec.intern_outcome({"ret": self.errnos[c // n - 1], "error_offset": (c % n) * self.ps})
                                   for c in u.tolist()], np.int32)[inv]
        invalid.reshape(F, A)[:, a] = ~valid
        if want:
            radix = self._part_radix()
            known = self._parts.get((a, want))
            sk, sb = (known[1], known[2]) if known is not None and known[0] == radix else (np.empty(0, np.int64),) * 2
            tb, pm = np.empty(F, np.int64), np.zeros(F, bool)
            oid64, rx = oid.astype(np.int64), np.array(radix, np.int64)
            compiled.over_rows(F, lambda f0, f1, j: compiled.part_bits_pass(
                f0, f1, keys, lay.shift, lay.pmask, lay.cshift, post, oid64, effp, valid, rx, sk, sb, tb, pm))
            if pm.any():                              # parts not judged yet: from the model
                tb[pm] = self._plan_bits(a, R[pm], post[pm].astype(np.int32), C[pm], oid[pm], effp[pm], want)
            tb = np.where(valid, tb, 0) & want
            present = int(np.bitwise_or.reduce(tb)) if F else 0
            for b in range(present.bit_length()):
                if present >> b & 1:
                    t = int(np.flatnonzero((tb >> b) & 1)[0]) * A + a
                    tf[b] = min(tf.get(b, t), t)
        moved = np.flatnonzero(valid & (post != R).any(1))
        dense[moved * A + a] = okey[moved]

    def _part_radix(self) -> tuple:
        """A range call's part, one int64: (context, pre, post, outcome, effects) in
        mixed radix."""
        codec = self.codec
        radix = (len(codec.ctxs), len(codec.pages), len(codec.pages), len(codec.outcomes),
                 1 << len(codec.effect_names))
        if np.prod([float(r) for r in radix]) >= 2.0 ** 62:
            raise NotLocal("too many values to key a range call's parts")
        return radix

    def _plan_bits(self, e: int, R, post, C, oid, effp, want: int) -> np.ndarray:
        """Transition-property bits of a range event, judged page by page (see the
        module docstring): the union over the pages' parts."""
        F, n = R.shape
        codec, ev = self.codec, self.events[e]
        radix = self._part_radix()
        k = C.astype(np.int64)[:, None]
        for digits, r in ((R, radix[1]), (post, radix[2]), (oid[:, None], radix[3]), (effp, radix[4])):
            k = k * r + digits
        k = k.ravel()
        # the parts judged so far, as sorted keys in this radix (few: a lookup is cheap)
        known = self._parts.get((e, want))
        if known is not None and known[0] == radix:
            sk, sb = known[1], known[2]
            pos = np.minimum(np.searchsorted(sk, k), len(sk) - 1)
            if (sk[pos] == k).all():
                return np.bitwise_or.reduce(sb[pos].reshape(F, n), axis=1)
        u, inv = np.unique(k, return_inverse=True)
        vals = np.empty(len(u), np.int64)
        for j, x in enumerate(u.tolist()):
            x, eff = divmod(x, radix[4])
            x, o = divmod(x, radix[3])
            x, q = divmod(x, radix[2])
            cid, pre = divmod(x, radix[1])
            key = (e, want, cid, pre, q, o, eff)
            bits = self.part_bits.get(key)
            if bits is None:
                ctx = codec.ctxs[cid]
                t = Transition(ctx._replace(pages=(codec.pages[pre],) * n), ev, codec.outcomes[o],
                               ctx._replace(pages=(codec.pages[q],) * n), codec.effects_of(eff))
                bits = self.part_bits[key] = self.judge(t, want)
            vals[j] = bits
        if known is not None and known[0] == radix:
            u, at = np.unique(np.concatenate([known[1], u]), return_index=True)
            vals = np.concatenate([known[2], vals])[at]
            inv = np.searchsorted(u, k)
        self._parts[e, want] = (radix, u, vals)
        return np.bitwise_or.reduce(vals[inv].reshape(F, n), axis=1)

    # --- the batch --------------------------------------------------------------------------

    def successor_keys(self, keys: np.ndarray, lay, want: int, symmetric: bool):
        """The single-page actions in one compiled pass over the tables (gmemlab.explore.
        compiled), the others as expand() does them; without numba, expand() alone."""
        acts = [a for a in range(len(self.events)) if self.kind[a] == "page"]
        if not compiled.AVAILABLE or not acts:
            return super().successor_keys(keys, lay, want, symmetric)
        A, F = len(self.events), len(keys)
        R, C = lay.decode(keys)
        act_a = np.array(acts, np.int64)
        pos = np.array([self.pos[a] for a in acts], np.int64)
        nbits = max(1, len(self.trans))
        while True:
            pinok = self._pinok()
            rank = self.codec.ranks()[0].astype(np.int64)
            lay.check(self.codec)
            dense = np.full(F * A, -1, np.int64)
            invalid = np.zeros(F * A, bool)
            tfirst = np.full((compiled.CORES, nbits), F * A, np.int64)   # one row per chunk
            miss = np.zeros(F, bool)
            NEW, TB = self.NEW, self.TB
            compiled.over_rows(F, lambda lo, hi, j: compiled.page_pass(
                lo, hi, keys, A, act_a, pos, NEW, TB, pinok, want, rank, symmetric,
                lay.shift, lay.pmask, lay.cshift, dense, invalid, tfirst[j], miss))
            tfirst = tfirst.min(0)
            if not miss.any():
                break
            try:
                self._page_batch(acts, R[miss], C[miss], want)      # fills the tables from step()
            except NotLocal:
                for a in acts:
                    self.kind[a] = "step"
                return super().successor_keys(keys, lay, want, symmetric)
        tf = {b: int(t) for b, t in enumerate(tfirst.tolist()) if t < F * A}
        plans = [a for a in range(A) if self.kind[a] == "plan"]
        for a in plans:
            try:
                self._plan_compiled(a, keys, R, C, want, symmetric, lay, dense, invalid, tf)
            except NotLocal:
                # step() answers it instead (expand below): drop what the pass wrote
                dense.reshape(F, A)[:, a] = -1
                invalid.reshape(F, A)[:, a] = False
                self.kind[a] = "step"
        ex = self.expand(R, C, want, symmetric, skip=set(acts) | set(plans))
        lay.check(self.codec)
        if len(ex.flat):
            dense[ex.flat] = lay.encode(ex.rows, ex.cids)
        if ex.invalid is not None:
            invalid |= ex.invalid.ravel()
        for b, t in ex.tfirst.items():
            tf[b] = min(tf.get(b, t), t)
        return dense, invalid.reshape(F, A) if invalid.any() else None, tf

    def expand(self, R: np.ndarray, C: np.ndarray, want: int, symmetric: bool,
               skip: set = frozenset()) -> Expansion:
        """The successors of the batch under every action but those in skip."""
        A, F, n = len(self.events), len(C), self.n
        parts: list[tuple] = []
        out = {"flat": [], "rows": [], "cids": [], "invalid": [], "tfirst": {}}
        invalid = None
        tfirst = out["tfirst"]

        def note_bits(tb: np.ndarray, flat_of):
            present = int(np.bitwise_or.reduce(tb, axis=None)) & want
            for b in range(present.bit_length()):
                if present >> b & 1:
                    f = int(flat_of(np.nonzero((tb >> b) & 1)).min())
                    tfirst[b] = min(tfirst.get(b, f), f)

        def keep(flat, rows, cids):
            if symmetric:
                rows = self.codec.sort_rows(rows)
            parts.append((flat, rows, cids))

        page_acts = [a for a in range(A) if self.kind[a] == "page" and a not in skip]
        if page_acts:
            try:
                old, new, valid, tb = self._page_batch(page_acts, R, C, want)
            except NotLocal:
                for a in page_acts:
                    self.kind[a] = "step"
                page_acts = []
        if page_acts:
            acts = np.array(page_acts, np.int64)
            moved = new != old
            if valid is not None and not valid.all():
                invalid = np.zeros((F, A), bool)
                invalid[:, acts] = ~valid
                moved &= valid
            if tb is not None:
                note_bits(tb if valid is None else np.where(valid, tb, 0),
                          lambda nz: nz[0] * A + acts[nz[1]])
            page_pos = np.array([self.pos[a] for a in page_acts], np.int64)
            for i in range(n):
                cols = np.flatnonzero(page_pos == i)
                fs, js = np.nonzero(moved[:, cols])
                if not fs.size:
                    continue
                vals = new[fs, cols[js]]
                if symmetric and n > 1:
                    # R's rows are sorted: move the one new page into place
                    rows = self.codec.replace_sorted(R[fs], i, vals)
                else:
                    rows = R[fs].copy()
                    rows[:, i] = vals
                parts.append((fs * A + acts[cols[js]], rows, C[fs]))
        stepped: list[int] = []
        for a in range(A):
            kind = self.kind[a]
            if kind == "page" or a in skip:
                continue
            try:
                if kind == "vm":
                    newc, tb = self._vm(a, R, C, want)
                    if want:
                        note_bits(tb, lambda nz, a=a: nz[0] * A + a)
                    idx = np.flatnonzero(newc != C)
                    keep(idx * A + a, R[idx], newc[idx])
                    continue
                if kind == "plan":
                    post, oid, effp = self._run_plan(a, R, C)
                    ok = self._pinok()[post].all(1)
                    if not ok.all():
                        if invalid is None:
                            invalid = np.zeros((F, A), bool)
                        invalid[:, a] = ~ok
                    if want:
                        tb = self._plan_bits(a, R, post, C, oid, effp, want)
                        note_bits(np.where(ok, tb, 0), lambda nz, a=a: nz[0] * A + a)
                    idx = np.flatnonzero(ok & (post != R).any(1))
                    keep(idx * A + a, post[idx], C[idx])
                    continue
            except NotLocal:
                self.kind[a] = "step"
            stepped.append(a)
        self._step_actions(stepped, R, C, want, A, symmetric, out)
        # order does not matter to the driver (it sorts by (state, action)); only the
        # flat numbers do
        return self._finish(parts, out, F, A, invalid)

    def state_bits(self, rows: np.ndarray, cids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bits that hold on the context and on every page alone, bits that hold on some
        page alone): a state whose all-bit k is clear may break always-property k, one
        whose any-bit k is set may show sometimes-property k; the driver judges those."""
        codec = self.codec
        if self.spec.bounds.interleave:
            # A thread's call names its pages (threads.speculative_refs): a context
            # with one page alone would misplace them. Judge the whole states.
            return self.whole_state_bits(rows, cids)
        sv = self.SV[cids]
        if (sv < 0).any():
            for cid in np.unique(cids[sv < 0]).tolist():
                self.SV[cid] = self.bits_of(codec.ctxs[cid])
            sv = self.SV[cids]
        ccol = np.broadcast_to(cids[:, None], rows.shape)
        sp = self.SP[ccol, rows]
        if (sp < 0).any():
            m = sp < 0
            for cid, p in set(zip(ccol[m].tolist(), rows[m].tolist())):
                self.SP[cid, p] = self.bits_of(codec.ctxs[cid]._replace(pages=(codec.pages[p],)))
            sp = self.SP[ccol, rows]
        return sv & np.bitwise_and.reduce(sp, axis=1), np.bitwise_or.reduce(sp, axis=1)

    def outcome_ids(self, a: int, R: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kind = self.kind[a]
        if kind == "page":
            old, new, valid, _ = self._page_batch([a], R, C, 0)
            oid = self.OUT[a][C, old[:, 0]]
            return oid, np.ones(len(C), bool) if valid is None else valid[:, 0]
        if kind == "vm":
            self._vm(a, R, C, 0)
            return self.VOUT[a][C], np.ones(len(C), bool)
        if kind == "plan":
            post, oid, _ = self._run_plan(a, R, C)
            return oid, self._pinok()[post].all(1)
        return super().outcome_ids(a, R, C)


ENGINES = {"reference": ReferenceEngine, "fast": FastEngine}
