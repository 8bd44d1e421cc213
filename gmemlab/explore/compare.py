"""The proposals side by side, on the same platform, series, size and knobs.

Per proposal: states, transitions, each invariant held or broken (with the length of
its shortest counterexample, and whether its "sometimes" pair was reachable at all),
calls needed to launch, and the error channels of the calls that can fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from gmemlab.explore import Bounds, Exploration, explore
from gmemlab.explore.recovery import Recovery, error_information, guessing, vmm_recovers
from gmemlab.invariants import ALWAYS, launch_complete
from gmemlab.model.platforms import PLATFORMS
from gmemlab.model.state import Config, folio_spans
from gmemlab.model.vocab import PROPOSALS


def calls_to_launch(x: Exploration) -> tuple[int | None, list[dict] | None]:
    """The fewest calls (create_gmem included) that launch every page in place (no
    legacy source buffer; on cca, where populate requires a source, through the
    copy-aside populate), and the calls themselves.

    Breadth-first from the roots over the stored edges (self loops and legacy-source
    populates left out), level by level: a state is reached first from the earliest
    state of the level before and that state's earliest edge, and the first state of a
    level (in that order) that completes the launch is the answer.
    """
    if not x.config.has_te:
        return None, None
    v = x.bounds.host_value
    # On a platform whose populate requires a source (cca) the copy-aside populate is the
    # launch itself, not the legacy path: there its source-buffer populates count.
    from gmemlab.model.platforms import PLATFORMS
    copy_aside = PLATFORMS[x.config.platform].populate_requires_source
    legacy = [a for a, ev in enumerate(x.actions) if ev.get("src") == "buffer" and not copy_aside]
    src, dst, act = (np.frombuffer(arr, np.int32) for arr in (x.src, x.dst, x.act))
    keep = (src != dst) & ~np.isin(act, legacy)
    src, dst, act = src[keep], dst[keep], act[keep]       # still sorted by source
    n = len(x.states)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=ptr[1:])
    came_from = np.full(n, -2, np.int64)                # -2 not reached, -1 a root
    came_by = np.zeros(n, np.int64)
    roots = np.array([i for i, (parent, _) in enumerate(x.parent) if parent == -1], np.int64)
    came_from[roots] = -1
    came_by[roots] = [x.parent[r][1] for r in roots.tolist()]
    frontier = roots
    while frontier.size:
        for s in frontier.tolist():
            if launch_complete(x.config, x.states[s], v):
                chain = []
                while s != -1:
                    chain.append(int(came_by[s]))
                    s = int(came_from[s])
                chain.reverse()
                return len(chain), x.chain_events(chain)
        lens = ptr[frontier + 1] - ptr[frontier]
        ends = np.cumsum(lens)
        idx = np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(ptr[frontier] - (ends - lens), lens)
        frm, to, by = np.repeat(frontier, lens), dst[idx], act[idx]
        fresh = np.flatnonzero(came_from[to] == -2)
        _, first = np.unique(to[fresh], return_index=True)
        pick = fresh[np.sort(first)]                        # each new state's first edge
        came_from[to[pick]] = frm[pick]
        came_by[to[pick]] = by[pick]
        frontier = to[pick].astype(np.int64)
    return None, None


def error_channels(x: Exploration) -> dict[str, list[str]]:
    """For each call that failed somewhere: its errnos, each marked with how the call
    says where it stopped ("@offset" error_offset, "+done" pages done, or nothing)."""
    seen: dict[str, set[str]] = {}
    for a, out in x.action_outcomes(ops=("set_attributes", "populate", "punch_hole", "pin", "finalize")):
        ev = x.actions[a]
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
    """With the huge_folios knob: can launch complete with every huge folio of the
    geometry (Config.folio_pages) never split on the way, i.e. still one folio in
    guest_memfd (VmState.folios) in every state of some path from a root? A folio split
    and merged back (step.huge_folio_rule) does not count as kept: the split is what the
    metric asks about. None without the knob, without a TE, or when no whole folio fits
    in the file."""
    if not x.config.huge_folios or not x.config.has_te:
        return None
    if not folio_spans(x.bounds.pages, x.config.folio_pages):
        return None
    v = x.bounds.host_value
    whole = np.array([bool(s.folios) and all(s.folios) for s in x.states], bool)
    src, dst = (np.frombuffer(arr, np.int32) for arr in (x.src, x.dst))
    keep = whole[src] & whole[dst]
    src, dst = src[keep], dst[keep]
    seen = np.zeros(len(x.states), bool)
    frontier = np.array([i for i, (parent, _) in enumerate(x.parent) if parent == -1 and whole[i]], np.int64)
    seen[frontier] = True
    while frontier.size:
        for s in frontier.tolist():
            if launch_complete(x.config, x.states[s], v):
                return True
        nxt = np.unique(dst[np.isin(src, frontier)])
        frontier = nxt[~seen[nxt]].astype(np.int64)
        seen[frontier] = True
    return False


def te_maps_huge_at_launch(x: Exploration) -> bool | None:
    """With the huge_folios knob, reported apart from huge_folio_kept: does the TE map a
    kept huge folio with one huge entry after launch? Only if the folio is kept AND the
    platform's launch path makes huge TE entries (Platform.te_huge_at_launch: none of
    snp, tdx, cca does; each cites its code)."""
    kept = huge_folio_kept(x)
    if kept is None:
        return None
    return bool(kept and PLATFORMS[x.config.platform].te_huge_at_launch)


def huge_folio_splits(x: Exploration) -> list[str]:
    """The actions that split a huge folio somewhere in the exploration (a transition
    from a state where the folio is whole to one where it is split), each named by its
    op, its attribute or source, and whether its range covers the folio whole or part
    of it; sorted. Empty without the knob."""
    if not x.config.huge_folios:
        return []
    spans = folio_spans(x.bounds.pages, x.config.folio_pages)
    ps = x.config.page_size
    src, dst, act = (np.frombuffer(arr, np.int32) for arr in (x.src, x.dst, x.act))
    found: set[str] = set()
    for a, b, e in zip(src.tolist(), dst.tolist(), act.tolist()):
        fa, fb = x.states[a].folios, x.states[b].folios
        if len(fa) != len(fb):
            continue
        for f, (was, now) in enumerate(zip(fa, fb)):
            if was and not now:
                found.add(_split_label(x.actions[e], spans[f], ps))
    return sorted(found)


def _split_label(ev, span: range, ps: int) -> str:
    op = ev["op"]
    what = {"set_attributes": lambda: f"set_attributes to {ev['attributes']}",
            "populate": lambda: "populate " + ("from a buffer" if ev.get("src") == "buffer" else "in place")}
    name = what.get(op, lambda: op)()
    if "size" in ev:
        lo, hi = ev["offset"] // ps, (ev["offset"] + ev["size"]) // ps
        name += " (whole folio)" if lo <= span.start and span.stop <= hi else " (part of the folio)"
    return name


@dataclass
class Column:
    proposal: str
    exploration: Exploration
    calls_to_launch: int | None
    launch_path: list | None
    errors: dict
    recovery: Recovery | None = None      # vmm_recovers: the reference VMM in the product
    information: dict = field(default_factory=dict)   # error_information: op -> outcomes and causes

    def to_json(self) -> dict:
        x = self.exploration
        inv = {}
        for p in ALWAYS:
            cx = x.counterexample(p.name)
            inv[p.name] = {"holds": cx is None,
                           "counterexample_length": None if cx is None else len(cx),
                           "vacuous": p.pair not in x.witnesses}
        r = self.recovery
        if r is not None:
            inv["vmm_recovers"] = {"holds": r.holds, "vacuous": False,
                                   "counterexample_length": None if r.holds else len(r.steps)}
        return {"proposal": self.proposal, "states": len(x.states), "transitions": x.transitions,
                "invariants": inv,
                "calls_to_launch": self.calls_to_launch, "huge_folio_kept": huge_folio_kept(x),
                "te_maps_huge_at_launch": te_maps_huge_at_launch(x),
                "error_channels": self.errors,
                "vmm_recovers": None if r is None else r.to_json(),
                "error_information": self.information,
                "guessing": guessing(self.information)}


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
            proposals: tuple = PROPOSALS, engine: str = "auto", max_states: int = 5_000_000,
            max_memory: int | None = None) -> Comparison:
    """Explore each proposal on the same configuration.

    >>> t = compare("snp", "v8", Bounds(pages=1))
    >>> [c.to_json()["invariants"]["te_private_implies_kvm_private"]["holds"] for c in t.columns]
    [True, True, False]
    """
    knobs = dict(knobs or {})
    table = Comparison(platform, series, bounds, knobs)
    for name in proposals:
        cfg = Config(proposal=name, platform=platform, series=series, **knobs)
        x = explore(cfg, bounds, symmetry=symmetry, progress=progress, engine=engine, max_states=max_states,
                    max_memory=max_memory)
        n, path = calls_to_launch(x)
        # Error information needs two pages (partial progress) and grows with the state
        # space, not with what it finds: past two pages it is read from two.
        small = x if bounds.pages <= 2 else explore(cfg, replace(bounds, pages=2), symmetry=symmetry,
                                                    engine=engine, max_states=max_states, max_memory=max_memory)
        table.columns.append(Column(name, x, n, path, error_channels(x), vmm_recovers(cfg, bounds),
                                    error_information(small)))
    return table
