"""The proposals side by side, on the same platform, series, size and knobs.

Per proposal: states, transitions, each invariant held or broken (with the length of
its shortest counterexample, and whether its "sometimes" pair was reachable at all),
calls needed to launch, and the error channels of the calls that can fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gmemlab.explore.bfs import Bounds, Exploration, explore
from gmemlab.invariants import ALWAYS
from gmemlab.model.state import PROPOSALS, TE_VALID, Config, VmState


def launch_complete(cfg: Config, s: VmState, value: int) -> bool:
    """A finished launch: finalized, every page loaded with ``value``, measured, held by
    the TE and usable by the guest, and KVM-private."""
    if not s.finalized:
        return False
    return all(p.private and p.measured and p.te == TE_VALID and p.content == value == p.loaded
               for p in s.pages)


def calls_to_launch(x: Exploration) -> tuple[int | None, list[dict] | None]:
    """The fewest calls (create_gmem included) that launch every page in place (no
    legacy source buffer), and the calls themselves."""
    if not x.config.has_te:
        return None, None
    v = x.bounds.host_value
    legacy = {a for a, ev in enumerate(x.actions) if ev.get("src") == "buffer"}
    succ: list[list[tuple[int, int]]] = [[] for _ in x.states]
    for s, t, a in zip(x.src, x.dst, x.act):
        if s != t and a not in legacy:
            succ[s].append((t, a))
    roots = [i for i, (parent, _) in enumerate(x.parent) if parent == -1]
    came: dict[int, tuple[int, int]] = {r: (-1, x.parent[r][1]) for r in roots}
    frontier = roots
    while frontier:
        nxt = []
        for s in frontier:
            if launch_complete(x.config, x.states[s], v):
                chain = _chain(came, s)
                return len(chain), x.chain_events(chain)
            for t, a in succ[s]:
                if t not in came:
                    came[t] = (s, a)
                    nxt.append(t)
        frontier = nxt
    return None, None


def _chain(came: dict, sid: int) -> list[int]:
    """The actions from a root to sid (the root's create index first)."""
    out = []
    while sid != -1:
        parent, a = came[sid]
        out.append(a)
        sid = parent
    return out[::-1]


def error_channels(x: Exploration) -> dict[str, list[str]]:
    """For each call that failed somewhere: its errnos, each marked with how the call
    says where it stopped ("@offset" error_offset, "+done" pages done, or nothing)."""
    seen: dict[str, set[str]] = {}
    for sid, a in zip(x.src, x.act):
        ev = x.actions[a]
        if ev["op"] not in ("set_attributes", "populate", "punch_hole", "pin", "finalize"):
            continue
        out = x.outcome(sid, a)
        r = out.get("ret", 0)
        stopped_short = ev["op"] == "populate" and out.get("done", 0) < ev["size"] // x.config.page_size
        if r == 0 and not stopped_short:
            continue
        if r == 0:
            mark = "0+done (partial)"
        elif "error_offset" in out:
            mark = f"{r}@offset"
        elif out.get("done"):
            mark = f"{r}+done"
        else:
            mark = r
        seen.setdefault(ev["op"], set()).add(mark)
    return {op: sorted(marks) for op, marks in sorted(seen.items())}


def huge_folio_kept(x: Exploration) -> bool | None:
    """With the huge_folios knob: can launch complete with the huge folio intact?"""
    if not x.config.huge_folios or not x.config.has_te:
        return None
    v = x.bounds.host_value
    return any(s.huge and launch_complete(x.config, s, v) for s in x.states)


@dataclass
class Column:
    proposal: str
    exploration: Exploration
    calls_to_launch: int | None
    launch_path: list | None
    errors: dict

    def to_json(self) -> dict:
        x = self.exploration
        inv = {}
        for p in ALWAYS:
            cx = x.counterexample(p.name)
            inv[p.name] = {"holds": cx is None,
                           "counterexample_length": None if cx is None else len(cx),
                           "vacuous": p.pair not in x.witnesses}
        return {"proposal": self.proposal, "states": len(x.states), "transitions": x.transitions,
                "seconds": round(x.seconds, 3), "invariants": inv,
                "calls_to_launch": self.calls_to_launch, "huge_folio_kept": huge_folio_kept(x),
                "error_channels": self.errors}


@dataclass
class Comparison:
    platform: str
    series: str
    bounds: Bounds
    knobs: dict
    columns: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"platform": self.platform, "series": self.series, "pages": self.bounds.pages,
                "knobs": sorted(k for k, v in self.knobs.items() if v),
                "proposals": {c.proposal: c.to_json() for c in self.columns}}


def compare(platform: str = "snp", series: str = "v8", bounds: Bounds = Bounds(),
            knobs: dict | None = None, symmetry: bool = True, progress: bool = False,
            proposals: tuple = PROPOSALS) -> Comparison:
    """Explore each proposal on the same configuration.

    >>> t = compare("snp", "v8", Bounds(pages=1))
    >>> [c.to_json()["invariants"]["te_private_implies_kvm_private"]["holds"] for c in t.columns]
    [True, True, False]
    """
    knobs = dict(knobs or {})
    table = Comparison(platform, series, bounds, knobs)
    for name in proposals:
        cfg = Config(proposal=name, platform=platform, series=series, **knobs)
        x = explore(cfg, bounds, symmetry=symmetry, progress=progress)
        n, path = calls_to_launch(x)
        table.columns.append(Column(name, x, n, path, error_channels(x)))
    return table
