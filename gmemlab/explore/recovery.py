"""What a VMM can recover from: vmm_recovers over the product of the model and the
reference VMM, and how much each failing call tells its caller.

vmm_recovers (docs/domain.md): a VMM that knows only what its calls returned and what
it did itself always reaches a launched, running VM, whatever failed on the way. It is
decided on the product of the model and the proposal's reference VMM
(gmemlab.model.vmm): in each product state the VMM makes its one next call, and the
environment may interleave what the VMM cannot see or prevent:

- an extra reference taken or dropped on a page (the spec's pin and unpin: GUP, a
  vhost or io_uring buffer, the LRU batches; up to the bounds' max_pins), and
- an allocation failing inside a call that allocates (with the allocation_failures
  knob: the calls the spec tries with "fail": "ENOMEM").

Failures of the environment are transient (Assumption A-vmm-transient): it drops its
references and its allocations succeed again eventually. So the property is: from every reachable product state, once
the environment releases every reference and stops failing, the VMM alone reaches the
launch (gmemlab.invariants.launch_complete). A VMM that gave up, that loops, or that
finishes with the wrong memory breaks it; the counterexample is the shortest path to
such a state, then the VMM alone from there.

>>> from gmemlab.model.state import Config
>>> from gmemlab.spec import Bounds
>>> vmm_recovers(Config(proposal="private-first", platform="snp"), Bounds(pages=1)).holds
True
>>> r = vmm_recovers(Config(proposal="populate-converts", platform="snp"), Bounds(pages=1))
>>> r.holds, r.gives_up_on
(False, 'populate EIO')
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gmemlab.invariants import launch_complete
from gmemlab.model import vmm as V
from gmemlab.model.events import event
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import FAIL, cause, step
from gmemlab.spec import Bounds, Spec

VMM, OTHER = "vmm", "other"
# What the environment does that the VMM cannot see or prevent: another reference taken
# or dropped, and (transient_refs) the LRU batches draining.
ENVIRONMENT = ("pin", "unpin", "lru_drain")


@dataclass
class Recovery:
    """vmm_recovers for one configuration: the verdict, the product's size, and the
    counterexample as (actor, event with "expect") steps."""
    config: Config
    bounds: Bounds
    policy: V.Policy
    nodes: int
    moves: int
    holds: bool
    steps: list | None = None          # [(actor, event)], actor "vmm" or "other"
    gives_up_on: str | None = None     # "op ERRNO": the outcome the VMM could not act on

    @property
    def counterexample(self) -> list | None:
        return None if self.steps is None else [ev for _, ev in self.steps]

    def to_json(self) -> dict:
        from gmemlab.traces.format import event_json
        return {"holds": self.holds, "policy": list(V.script(self.policy, self.config)),
                "product_states": self.nodes, "product_moves": self.moves,
                "counterexample_length": None if self.steps is None else len(self.steps),
                "gives_up_on": self.gives_up_on,
                "counterexample": None if self.steps is None else
                [{"actor": who, **event_json(ev)} for who, ev in self.steps]}


class _Product:
    """The product of model and reference VMM under one Spec."""

    def __init__(self, cfg: Config, bounds: Bounds):
        self.spec = Spec(cfg, bounds, symmetry=False)
        self.cfg, self.pages = self.spec.config, self.spec.pages
        self.value = self.spec.bounds.host_value
        self.policy = V.policy_for(self.cfg)
        acts = self.spec.actions
        self.env = [a for a in acts if a["op"] in ENVIRONMENT]
        self.unpins = [a for a in acts if a["op"] == "unpin"]
        self.drains = [a for a in acts if a["op"] == "lru_drain"]
        self.failing = {a["op"] for a in acts if FAIL in a}

    def vmm_move(self, s: VmState, v: V.Vmm, fail: str | None = None):
        ev = V.next_call(self.policy, self.cfg, self.pages, self.value, v)
        if ev is None:
            return None
        if fail:
            ev = ev.replace(**{FAIL: fail})
        r = step(self.cfg, s, ev)
        return ev.replace(expect=r.outcome), r.state, V.observe(self.policy, self.cfg, self.pages, v, ev, r.outcome)

    def moves(self, s: VmState, v: V.Vmm):
        """(actor, event with expect, state', vmm') for every move of the product."""
        m = self.vmm_move(s, v)
        if m is not None:
            yield (VMM, *m)
            if m[0]["op"] in self.failing:
                yield (VMM, *self.vmm_move(s, v, "ENOMEM"))
        if s.created:
            for a in self.env:
                r = step(self.cfg, s, a)
                if r.state != s and self.spec.within(r.state):
                    yield OTHER, a.replace(expect=r.outcome), r.state, v

    def quiet(self, s: VmState, v: V.Vmm) -> tuple[bool, list]:
        """The environment drops its references and stops failing; the VMM goes on
        alone. Whether it launches, and the steps it took. The LRU batches keep draining
        (transient_refs): a batch's reference on a folio the VMM's own calls allocate
        goes as well before its next call (assumption A-vmm-transient)."""
        steps = []
        for a in self.unpins:
            while s.created and s.pages[a["offset"] // self.cfg.page_size].pins:
                r = step(self.cfg, s, a)
                steps.append((OTHER, a.replace(expect=r.outcome)))
                s = r.state
        seen = set()
        while (s, v) not in seen:
            seen.add((s, v))
            for a in self.drains:
                r = step(self.cfg, s, a)
                if r.state != s:          # a drain with nothing in a batch is no step
                    steps.append((OTHER, a.replace(expect=r.outcome)))
                    s = r.state
            m = self.vmm_move(s, v)
            if m is None:
                return V.finished(self.policy, self.cfg, v) and launch_complete(self.cfg, s, self.value), steps
            ev, s, v = m
            steps.append((VMM, ev))
        return False, steps            # the VMM loops: the same call, the same failure


def vmm_recovers(cfg: Config, bounds: Bounds = Bounds()) -> Recovery:
    """Decide vmm_recovers for cfg's proposal and its reference VMM (breadth-first: the
    counterexample's path to the failing state is a shortest one)."""
    P = _Product(cfg, bounds)
    root = (VmState(), V.Vmm())
    parent = {root: None}
    order = deque([root])
    moves = 0
    while order:
        node = order.popleft()
        ok, tail = P.quiet(*node)
        if not ok:
            path = []
            at = node
            while parent[at] is not None:
                prev, who, ev = parent[at]
                path.append((who, ev))
                at = prev
            path.reverse()
            steps = path if node[1].gave_up else path + tail
            v = node[1] if node[1].gave_up else None
            given = v.gave_up if v else _gave_up(P, node, tail)
            return Recovery(P.cfg, P.spec.bounds, P.policy, len(parent), moves, False, steps, given)
        for who, ev, s2, v2 in P.moves(*node):
            moves += 1
            nxt = (s2, v2)
            if nxt not in parent:
                parent[nxt] = (node, who, ev)
                order.append(nxt)
    return Recovery(P.cfg, P.spec.bounds, P.policy, len(parent), moves, True)


def _gave_up(P: _Product, node, tail) -> str | None:
    """The VMM's last word in the quiet continuation: the outcome it gave up on, or what
    it was stuck retrying."""
    s, v = node
    for who, ev in tail:
        if who == VMM:
            v = V.observe(P.policy, P.cfg, P.pages, v, ev, ev["expect"])
            if v.gave_up:
                return v.gave_up
    last = [ev for who, ev in tail if who == VMM]
    if last:
        out = last[-1]["expect"]
        return f"{last[-1]['op']} {out.get('ret') or out.get('signal') or 'loops'}"
    return None


# --- error information ---------------------------------------------------------------

# The calls whose failures a VMM must act on.
FAILABLE = ("set_attributes", "populate", "punch_hole", "pin", "finalize")


def outcome_mark(ev: dict, out: dict, page_size: int) -> str | None:
    """A failing outcome as its caller sees it: the errno, "@offset" when error_offset
    says where it stopped, "+done" with pages done; "0+done (partial)" for a populate
    that returned 0 short of its range. None when the call did not fail."""
    r = out.get("ret", 0)
    short = ev["op"] == "populate" and out.get("done", 0) < ev["size"] // page_size
    if r == 0 and not short:
        return None
    if r == 0:
        return "0+done (partial)"
    if "error_offset" in out:
        return f"{r}@offset"
    if out.get("done"):
        return f"{r}+done"
    return str(r)


def error_information(x) -> dict:
    """For every failing call in the explored state space: what its caller sees, and the
    causes behind it (gmemlab.model.step.cause).

    op -> [{"outcome", "causes", "recoveries", "guessing"}], by outcome. An outcome
    leaves the caller guessing when causes that need different recoveries
    (gmemlab.model.vmm.recovery) share it.

    >>> from gmemlab.explore import explore
    >>> x = explore(Config(proposal="populate-converts", platform="snp"), Bounds(pages=1))
    >>> [r for r in error_information(x)["populate"] if r["guessing"]][0]["causes"]
    ['EAGAIN', 'EINVAL', 'EIO']
    """
    cfg, ps, n = x.config, x.config.page_size, x.bounds.pages
    acts = [ev for ev in x.actions if ev["op"] in FAILABLE]
    if cfg.has_te and n > 1 and not any(ev["op"] == "populate" and ev["size"] == n * ps for ev in acts):
        # The explorer tries populate page by page (its whole-file form is not symmetric,
        # gmemlab.spec); VMMs call it on the whole image, where partial progress shows.
        whole = event("populate", offset=0, size=n * ps, src=None)
        acts.append(whole)
        acts += [whole.replace(**{FAIL: a[FAIL]}) for a in acts if a["op"] == "populate" and FAIL in a][:1]
    seen: dict[str, dict[str, set]] = {}
    for s in x.states:
        for ev in acts:
            mark = outcome_mark(ev, step(cfg, s, ev).outcome, ps)
            if mark is not None:
                seen.setdefault(ev["op"], {}).setdefault(mark, set()).add(str(cause(cfg, s, ev)))
    out = {}
    for op in sorted(seen):
        rows = []
        for mark in sorted(seen[op]):
            causes = sorted(seen[op][mark])
            recs = sorted({V.recovery(c) for c in causes})
            rows.append({"outcome": mark, "causes": causes, "recoveries": recs, "guessing": len(recs) > 1})
        out[op] = rows
    return out


def guessing(info: dict) -> list[str]:
    """The outcomes that leave the caller guessing, as "op outcome: cause or cause"."""
    return [f"{op} {r['outcome']}: {' or '.join(r['causes'])}"
            for op, rows in info.items() for r in rows if r["guessing"]]
