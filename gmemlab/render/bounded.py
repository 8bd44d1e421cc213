"""Views built for a question, each bounded in size whatever the page count.

A drawing of every state stops being readable at a few dozen boxes (snp v8 has 198
states at 1 page, 6,200 at 2, 146,450 at 3). Each view here answers one question and
draws at most ``MAX_BOXES`` boxes, so its labels keep their size at any page count:

- ``path_view``: how does the VM get there? One box per step of a counterexample (or
  of the launch), each with its pages' lanes.
- ``neighbourhood_view``: what can happen next to this state, and what leads to it?
  The chosen state (highlighted) and its neighbours within ``radius`` calls, capped.
- ``page_views``: small multiples, one small graph per page (the page's projection and
  whether the launch is finalized).
- ``progress_view``: how far the launch gets: states clustered by finalized, pages
  measured and pages the TE holds, with counts.
- ``quotient_view`` / ``difference_view``: the quotients of gmemlab.render.graphs,
  drawn whole while small and clustered by level above ``MAX_BOXES`` folds (each
  cluster says how many folds and states it holds).

``interactive_graph`` and ``sigma`` give the whole graph (or, when huge, its finest
quotient) to ipysigma for pan, zoom and search in a live notebook (the ``lab`` extra).

The folds are computed with numpy over the exploration's edge arrays (millions at 3
pages), and cached per exploration.

>>> from gmemlab.explore import Bounds, explore
>>> from gmemlab.model.state import Config
>>> x = explore(Config(proposal="private-first", platform="snp"), Bounds(pages=1))
>>> len(path_view(x).boxes) == len(launch_events(x))
True
>>> d = neighbourhood_view(x, 5)
>>> len(d.boxes) <= MAX_BOXES and any(b.fill == CHOSEN for b in d.boxes)
True
"""

from __future__ import annotations

import numpy as np

from gmemlab.explore.graph import add_call, overlay
from gmemlab.invariants import ALWAYS
from gmemlab.render.graphs import CHOSEN  # noqa: F401 (the doctest's highlight)
from gmemlab.render.graphs import PROJECTIONS, Drawing, _describe, attribute_x_te, host_view, launch_view

MAX_BOXES = 40            # the most boxes a static drawing shows
NEIGHBOURS = 24           # the most states a neighbourhood view shows
INTERACTIVE_MAX = 10000   # the most states the interactive view takes one by one

# What a page's label says beyond its KVM attribute, per projection: the level a
# cluster counts (how many pages have it).
MARKS = {
    "attribute x TE": (lambda label: "/" in label, "held by the TE"),
    "attribute x host access": (lambda label: len(label) > 1, "host-mapped or pinned"),
    "launch progress": (lambda label: label.endswith("/m"), "measured"),
}


def _nx():
    import networkx as nx
    return nx


# --- per exploration, cached ------------------------------------------------------------

_CACHE: dict = {}


def _cached(x, name, fn):
    hit = _CACHE.get((id(x), name))
    if hit is not None and hit[0] is x:
        return hit[1]
    if len(_CACHE) > 256:
        _CACHE.clear()
    value = fn()
    _CACHE[(id(x), name)] = (x, value)
    return value


def edges(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, act) as int32 arrays (no copy)."""
    def make():
        return tuple(np.frombuffer(a, dtype=np.int32) if len(a) else np.zeros(0, np.int32)
                     for a in (x.src, x.dst, x.act))
    return _cached(x, "edges", make)


def states(x) -> list:
    return _cached(x, "states", lambda: list(x.states))


def broken_bits(x) -> np.ndarray:
    """Per state, bit k set where ALWAYS[k] (a state property) fails."""
    def make():
        checks = [(k, p.on_state) for k, p in enumerate(ALWAYS) if p.on_state is not None]
        cfg = x.config
        out = np.zeros(len(x.states), np.int64)
        for i, s in enumerate(states(x)):
            bits = 0
            for k, f in checks:
                if not f(cfg, s):
                    bits |= 1 << k
            out[i] = bits
        return out
    return _cached(x, "broken", make)


def _names(bits: int) -> list[str]:
    return sorted(p.name for k, p in enumerate(ALWAYS) if bits >> k & 1)


def roots(x) -> np.ndarray:
    def make():
        par = getattr(x.parent, "parent", None)
        if par is None:
            par = np.array([p for p, _ in x.parent], np.int64)
        return np.flatnonzero(np.asarray(par) == -1)
    return _cached(x, "roots", make)


def finalized(x) -> np.ndarray:
    return _cached(x, "finalized", lambda: np.array([s.finalized for s in states(x)], bool))


# --- folding states by a key --------------------------------------------------------------

_PAGE_KEYS = (attribute_x_te, host_view, launch_view)


def _fast_keys(x, key):
    """Per-page keys over the codec's page values (the three projections are (per-page
    labels, finalized)); None when the key or the storage does not allow it."""
    codec = getattr(x.states, "codec", None)
    if codec is None or key not in _PAGE_KEYS and getattr(key, "__name__", "") != "attribute_x_te":
        return None
    ctx = codec.ctxs[0]
    page_labels = [key(ctx._replace(pages=(p,)))[0][0] for p in codec.pages]
    names = sorted(set(page_labels))
    lab = np.array([names.index(t) for t in page_labels], np.int32)
    fin = np.array([c.finalized for c in codec.ctxs], np.int32)
    rows = np.asarray(x.states.rows)
    table = np.column_stack([lab[rows], fin[np.asarray(x.states.cids)]])
    uniq, first, kid = np.unique(table, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")        # folds in order of their first state
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    keys = [(tuple(names[v] for v in uniq[j][:-1]), bool(uniq[j][-1])) for j in order]
    kid = rank[kid.reshape(-1)].astype(np.int64)
    for i in range(0, len(kid), max(1, len(kid) // 7)):   # the fast path says what the key says
        if key(x.states[i]) != keys[kid[i]]:
            return None
    return kid, keys


def state_keys(x, key) -> tuple[np.ndarray, list]:
    """Per state the index of its fold, and the folds' keys in order of first state."""
    def make():
        fast = _fast_keys(x, key)
        if fast is not None:
            return fast
        index: dict = {}
        kid = np.array([index.setdefault(key(s), len(index)) for s in states(x)], np.int64)
        return kid, list(index)
    return _cached(x, ("keys", key), make)


def _op_ids(x) -> tuple[np.ndarray, list[str]]:
    def make():
        ops: list[str] = []
        ids = [ops.index(ev["op"]) if ev["op"] in ops else (ops.append(ev["op"]) or len(ops) - 1)
               for ev in x.actions]
        return np.array(ids or [0], np.int64), ops
    return _cached(x, "ops", make)


def fold_edges(x, kid: np.ndarray, n: int) -> list[tuple[int, int, list[str], int]]:
    """(fold u, fold v, ops, transitions) for every pair of folds some call crosses."""
    src, dst, act = edges(x)
    op_of, ops = _op_ids(x)
    ku, kv = kid[src], kid[dst]
    cross = ku != kv
    nops = len(ops)
    code = (ku[cross] * n + kv[cross]) * nops + op_of[act[cross]]
    if n * n * nops <= 50_000_000:
        counts = np.bincount(code, minlength=n * n * nops)
        found = np.flatnonzero(counts)
        counts = counts[found]
    else:
        found, counts = np.unique(code, return_counts=True)
    out: dict[tuple[int, int], list] = {}
    for c, k in zip(found.tolist(), counts.tolist()):
        uv, op = divmod(c, nops)
        u, v = divmod(uv, n)
        e = out.setdefault((u, v), [[], 0])
        e[0].append(ops[op])
        e[1] += k
    return [(u, v, e[0], e[1]) for (u, v), e in out.items()]


def fold(x, key=attribute_x_te):
    """gmemlab.explore.graph.quotient, vectorised: the same nodes, counts, invariants,
    initial marks and edges (count; ops in the order of the actions), in about a second
    at 3 pages where the quotient takes 5-20 s per projection."""
    from gmemlab.explore.graph import projection_label

    def make():
        nx = _nx()
        kid, keys = state_keys(x, key)
        n = len(keys)
        counts, inv, initial = fold_marks(x, kid, n)
        g = nx.DiGraph()
        for j, k in enumerate(keys):
            g.add_node(k, label=projection_label(k), count=int(counts[j]), invariants=_names(int(inv[j])),
                       initial=j in initial)
        for u, v, ops, c in fold_edges(x, kid, n):
            g.add_edge(keys[u], keys[v], ops=ops, count=c)
        return g
    return _cached(x, ("fold", key), make)


def fold_difference(a, b, key=attribute_x_te):
    """gmemlab.explore.graph.difference over ``fold``: side 'a', 'b' or 'both'."""
    return overlay(fold(a, key), fold(b, key))


# --- clustering folds by level --------------------------------------------------------------

def level(key, projection: str) -> tuple:
    """A fold's level: (finalized, pages private, pages with the projection's mark)."""
    pages, fin = key
    mark = MARKS.get(projection, (lambda label: False, ""))[0]
    return (bool(fin), sum(t.startswith("P") for t in pages), sum(bool(mark(t)) for t in pages))


def level_label(lv: tuple, pages: int, projection: str) -> str:
    fin, private, marked = lv
    what = MARKS.get(projection, (None, ""))[1]
    parts = ["launch finalized" if fin else "not finalized", f"{private}/{pages} private"]
    if what:
        parts.append(f"{marked}/{pages} {what}")
    return " | ".join(parts)


def cluster(g, projection: str, pages: int, names: tuple = ()):
    """The folds of a quotient (or difference) grouped by ``level``: a node per level
    with how many folds and states it holds, an edge per pair of levels some call
    crosses, with its ops and count."""
    nx = _nx()
    c = nx.DiGraph()
    of = {n: level(n, projection) for n in g.nodes}
    for lv in sorted(set(of.values())):   # rows by (finalized, pages private), columns by marks
        c.add_node(lv, folds=0, states=0, invariants=set(), initial=False, a=0, b=0, both=0,
                   rank=int(lv[0]) * (pages + 1) + lv[1])
    for n, data in g.nodes(data=True):
        lv = of[n]
        node = c.nodes[lv]
        node["folds"] += 1
        node["states"] += data.get("count", 0)
        node["invariants"].update(data.get("invariants", ()))
        node["initial"] |= bool(data.get("initial"))
        node[data.get("side") or "both"] += 1
    for lv, node in c.nodes(data=True):
        lines = [level_label(lv, pages, projection),
                 f"{node['folds']} fold{'s' * (node['folds'] != 1)}, {node['states']:,} states"]
        if names:
            folds = f"{node['folds']} fold{'s' * (node['folds'] != 1)}"
            if node["a"] == node["b"] == 0:
                lines[-1] = f"{folds}, in both"
            else:
                lines[-1] = f"{folds}: {node['both']} in both"
                lines += [f"{node[k]} only {name}" for k, name in zip("ab", names) if node[k]]
            node["side"] = "both" if node["both"] or (node["a"] and node["b"]) else ("a" if node["a"] else "b")
        node["label"] = " | ".join(lines)
        node["invariants"] = sorted(node["invariants"])
        node["count"] = 1
    for u, v, data in g.edges(data=True):
        lu, lv = of[u], of[v]
        if lu == lv:
            continue
        if not c.has_edge(lu, lv):
            c.add_edge(lu, lv, ops=[], count=0, sides=set())
        e = c.edges[lu, lv]
        for op in data.get("ops", ()):
            if op not in e["ops"]:
                e["ops"].append(op)
        e["count"] += data.get("count", 1)
        e["sides"].add(data.get("side") or "both")
    for _, _, e in c.edges(data=True):
        s = e.pop("sides")
        e["side"] = "both" if "both" in s or len(s) > 1 else s.pop()
        e["ops"].sort()
    return c


# --- the drawings ---------------------------------------------------------------------------

def _title(x) -> str:
    return f"{x.config.label()}, {x.bounds.pages} page(s)"


def quotient_view(x, projection: str = "attribute x TE", max_boxes: int = MAX_BOXES) -> Drawing:
    """A quotient of gmemlab.render.graphs.PROJECTIONS, drawn whole up to max_boxes folds,
    else clustered by level (finalized, pages private, pages marked)."""
    g = fold(x, PROJECTIONS[projection])
    n = g.number_of_nodes()
    if n <= max_boxes:
        g = g.copy()
        for k, data in g.nodes(data=True):   # rows by (finalized, pages private)
            lv = level(k, projection)
            data["rank"] = int(lv[0]) * (x.bounds.pages + 1) + lv[1]
        d = _describe(g, f"{_title(x)}: {len(x.states):,} states folded by {projection} into {n}",
                      "quotient", both_ways=True)
    else:
        c = cluster(g, projection, x.bounds.pages)
        d = _describe(c, f"{_title(x)}: {len(x.states):,} states folded by {projection} into {n} folds, "
                         f"too many to draw readably: clustered into {c.number_of_nodes()} levels "
                         "(the small multiples per page and the interactive view show each fold)",
                      "cluster", both_ways=True)
    d.svg_title, d.grid = False, True
    return d


def difference_view(a, b, projection: str = "attribute x TE", max_boxes: int = MAX_BOXES) -> Drawing:
    """Two explorations' quotients overlaid (blue only in a, orange only in b), clustered
    by level above max_boxes folds."""
    g = fold_difference(a, b, PROJECTIONS[projection])
    na, nb = a.config.proposal, b.config.proposal
    title = (f"{na} (blue) vs {nb} (orange), {a.config.platform} {a.config.series}, "
             f"{a.bounds.pages} page(s), by {projection}")
    if g.number_of_nodes() > max_boxes:
        only = sum(1 for _, s in g.nodes(data="side") if s != "both")
        c = cluster(g, projection, a.bounds.pages, names=(na, nb))
        d = _describe(c, f"{title}: {g.number_of_nodes()} folds ({only} in one only), clustered into "
                         f"{c.number_of_nodes()} levels", "difference", names=(na, nb), both_ways=True)
    else:
        d = _describe(g, title, "difference", names=(na, nb), both_ways=True)
    d.svg_title, d.grid = False, True
    return d


def _state_lines(s, broken: list[str]) -> list[str]:
    from gmemlab.explore.graph import page_label
    lines = [f"page {k}: {page_label(p)}" for k, p in enumerate(s.pages)] or ["(no file)"]
    if s.finalized:
        lines.append("launch finalized")
    if broken:
        lines.append("breaks " + ", ".join(broken))
    return lines


def launch_target(x) -> int:
    """The first state (fewest calls) in which the launch is finalized with every page
    measured (else just finalized); without a launch (sw_protected), the first in which
    every page is private; else the last state."""
    fin = np.flatnonzero(finalized(x))
    for i in fin.tolist():
        if all(p.measured for p in states(x)[i].pages):
            return i
    if len(fin):
        return int(fin[0])
    for i, s in enumerate(states(x)):
        if s.pages and all(p.private for p in s.pages):
            return i
    return len(x.states) - 1


def launch_events(x) -> list:
    return x.path_events(launch_target(x))


def path_view(x, invariant: str | None = None) -> Drawing:
    """One box per step of the shortest counterexample to ``invariant`` (None: the
    shortest launch), with every page's state after the step and what breaks there."""
    from gmemlab.render.lanes import compute
    from gmemlab.render.text import call_text
    from gmemlab.outcome import outcome_text
    if invariant is None:
        events, what = launch_events(x), "the shortest launch"
    else:
        events = x.counterexample(invariant)
        if events is None:
            raise ValueError(f"{invariant} holds under {x.config.label()}: no counterexample")
        what = f"the shortest counterexample to {invariant}"
    lanes = compute(x.config, events)
    nx = _nx()
    g = nx.DiGraph()
    for k, (ev, s) in enumerate(zip(events, lanes.states)):
        head = f"{k + 1}. {call_text(ev)}"
        out = outcome_text(lanes.outcomes[k])
        lines = [head] + ([f"   = {out}"] if out else []) + _state_lines(s, lanes.broken[k])
        g.add_node(k, label=" | ".join(lines), invariants=lanes.broken[k], initial=k == 0)
        if k:
            g.add_edge(k - 1, k, ops=[])
    d = _describe(g, f"{_title(x)}: {what}, {len(events)} calls, one box per step", "path",
                  edge_labels=False)
    d.svg_title, d.grid = False, True
    return d


def neighbours(x, state: int, radius: int = 1, cap: int = NEIGHBOURS) -> list[int]:
    """State ids within ``radius`` calls of ``state`` (both ways), nearest first, at most
    ``cap`` (the chosen state first); self-loops do not count."""
    src, dst, _ = edges(x)
    n = len(x.states)
    if not 0 <= state < n:
        raise ValueError(f"no state {state}: the exploration has {n:,} (0..{n - 1})")
    seen = {state: 0}
    order = [state]
    frontier = np.array([state])
    for r in range(1, radius + 1):
        lo, hi = np.searchsorted(src, frontier), np.searchsorted(src, frontier, side="right")
        out = np.concatenate([dst[a:b] for a, b in zip(lo, hi)]) if len(frontier) else np.zeros(0, np.int32)
        into = src[np.isin(dst, frontier)]
        par = [x.parent[int(s)][0] for s in frontier]
        found = [p for p in par if p >= 0] + np.unique(out).tolist() + np.unique(into).tolist()
        nxt = []
        for s in found:
            if s not in seen and len(order) < cap:
                seen[s] = r
                order.append(s)
                nxt.append(s)
        if len(order) >= cap or not nxt:
            break
        frontier = np.array(nxt)
    return order


def neighbourhood_view(x, state: int | None = None, radius: int = 1, cap: int = NEIGHBOURS) -> Drawing:
    """The chosen state (default: where the first broken invariant is found, else the
    launch target), highlighted, and its neighbours within ``radius`` calls, at most
    ``cap`` boxes; arrows between them merged per pair of states."""
    if state is None:
        found = [x.violations[p.name].state for p in ALWAYS if p.name in x.violations]
        state = found[0] if found else launch_target(x)
    keep = neighbours(x, state, radius, cap)
    idx = {s: k for k, s in enumerate(keep)}
    src, dst, act = edges(x)
    bits = broken_bits(x)
    all_near = len(neighbours(x, state, radius, 10**9)) if len(keep) >= cap else len(keep)
    nx = _nx()
    g = nx.DiGraph()
    root_set = set(roots(x).tolist())
    for s in keep:
        lines = [f"state {s}" + (" (chosen)" if s == state else "")] + _state_lines(states(x)[s], [])
        g.add_node(s, label=" | ".join(lines), invariants=_names(int(bits[s])), initial=s in root_set,
                   chosen=s == state)
    keep_arr = np.array(sorted(keep))
    lo, hi = np.searchsorted(src, keep_arr), np.searchsorted(src, keep_arr, side="right")
    for a, b in zip(lo.tolist(), hi.tolist()):
        for j in range(a, b):
            u, v = int(src[j]), int(dst[j])
            if u == v or v not in idx:
                continue
            add_call(g, u, v, x.actions[int(act[j])]["op"])
    shown = (f"all {len(keep)}" if all_near == len(keep)
             else f"the nearest {len(keep)} of {all_near:,}")
    d = _describe(g, f"{_title(x)}: state {state} and the states within {radius} call(s) of it, "
                     f"{shown}", "neighbourhood", both_ways=True)
    d.svg_title, d.grid = False, True
    return d


def fold_marks(x, kid: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, set]:
    """For n folds of the states (kid: state -> fold): the states in each, the bits of
    the invariants broken in any of them, and the folds holding an initial state."""
    counts = np.bincount(kid, minlength=n)
    inv = np.zeros(n, np.int64)
    np.bitwise_or.at(inv, kid, broken_bits(x))
    return counts, inv, set(kid[roots(x)].tolist())


def page_views(x, projection: str = "launch progress") -> list[Drawing]:
    """Small multiples: per page k, the states folded by page k's projection (and
    finalized), with an arrow where some call changes it. With symmetry the explorer
    keeps pages sorted, so page k is the k-th in that order."""
    key = PROJECTIONS[projection]
    kid_all, keys = state_keys(x, key)
    out = []
    for k in range(x.bounds.pages):
        per = {}
        kid = np.array([per.setdefault((keys[j][0][k], keys[j][1]), len(per)) for j in range(len(keys))],
                       np.int64)[kid_all]
        names = list(per)
        n = len(names)
        counts, inv, initial = fold_marks(x, kid, n)
        nx = _nx()
        g = nx.DiGraph()
        for j, (label, fin) in enumerate(names):
            g.add_node(j, label=label + (" [fin]" if fin else ""), count=int(counts[j]),
                       invariants=_names(int(inv[j])), initial=j in initial, rank=int(fin))
        for u, v, ops, c in fold_edges(x, kid, n):
            g.add_edge(u, v, ops=ops, count=c)
        sym = " (pages sorted)" if getattr(x, "symmetry", False) and x.bounds.pages > 1 else ""
        d = _describe(g, f"page {k}{sym}: {n} values of {projection}", "page", edge_labels=False,
                      both_ways=True)
        d.svg_title, d.grid = False, True
        out.append(d)
    return out


def progress_key(x) -> tuple[np.ndarray, list]:
    """Per state its launch progress (finalized, pages measured, pages the TE holds)."""
    def make():
        index: dict = {}
        kid = np.array([index.setdefault((s.finalized, sum(p.measured for p in s.pages),
                                          sum(p.te != 0 for p in s.pages)), len(index))
                        for s in states(x)], np.int64)
        return kid, list(index)
    return _cached(x, "progress", make)


def progress_view(x) -> Drawing:
    """Every state, clustered by launch progress: finalized, pages measured, pages the
    TE holds; each box counts its states; arrows merged per pair with their calls."""
    kid, keys = progress_key(x)
    n, pages = len(keys), x.bounds.pages
    counts, inv, initial = fold_marks(x, kid, n)
    nx = _nx()
    g = nx.DiGraph()
    for j in sorted(range(n), key=lambda j: keys[j]):   # rows by (finalized, measured)
        fin, measured, held = keys[j]
        lines = ["launch finalized" if fin else "not finalized", f"{measured}/{pages} measured",
                 f"{held}/{pages} held by the TE", f"{int(counts[j]):,} states"]
        g.add_node(j, label=" | ".join(lines), count=1, invariants=_names(int(inv[j])), initial=j in initial,
                   rank=int(fin) * (pages + 1) + measured)
    for u, v, ops, c in fold_edges(x, kid, n):
        g.add_edge(u, v, ops=ops, count=c)
    d = _describe(g, f"{_title(x)}: all {len(x.states):,} states clustered by launch progress "
                     f"into {n}", "progress", both_ways=True)
    d.svg_title, d.grid = False, True
    return d


# --- interactive: ipysigma ------------------------------------------------------------------

def interactive_graph(x, max_nodes: int = INTERACTIVE_MAX):
    """A networkx DiGraph for an interactive view: every state (parallel arrows merged,
    self-loops dropped) up to max_nodes, else the launch-progress quotient. Node
    attributes: label, progress (e.g. "fin 2/3 measured"), broken (the first invariant
    that fails, or "none"), count."""
    nx = _nx()
    g = nx.DiGraph()
    pages = x.bounds.pages
    if len(x.states) <= max_nodes:
        from gmemlab.explore.graph import state_label
        kid, keys = progress_key(x)
        bits = broken_bits(x)
        for i, s in enumerate(states(x)):
            fin, m, _ = keys[kid[i]]
            names = _names(int(bits[i]))
            g.add_node(i, label=state_label(s), progress=("fin " if fin else "") + f"{m}/{pages} measured",
                       broken=names[0] if names else "none", count=1)
        src, dst, act = edges(x)
        keep = src != dst
        pairs, counts = np.unique(src[keep].astype(np.int64) * len(x.states) + dst[keep], return_counts=True)
        for c, k in zip(pairs.tolist(), counts.tolist()):
            u, v = divmod(c, len(x.states))
            g.add_edge(u, v, count=k)
        g.graph["what"] = interactive_graph_what(x, max_nodes)
        return g
    q = fold(x, launch_view)
    for n, data in q.nodes(data=True):
        pages_, fin = n
        m = sum(t.endswith("/m") for t in pages_)
        g.add_node(data["label"], label=data["label"], progress=("fin " if fin else "") + f"{m}/{pages} measured",
                   broken=data["invariants"][0] if data["invariants"] else "none", count=data["count"])
    for u, v, data in q.edges(data=True):
        g.add_edge(q.nodes[u]["label"], q.nodes[v]["label"], count=data["count"], ops=", ".join(data["ops"]))
    g.graph["what"] = interactive_graph_what(x, max_nodes)
    return g


def interactive_graph_what(x, max_nodes: int = INTERACTIVE_MAX) -> str:
    """What ``interactive_graph`` would hold, without building it."""
    if len(x.states) <= max_nodes:
        return f"all {len(x.states):,} states"
    return (f"{fold(x, launch_view).number_of_nodes()} folds by launch progress "
            f"({len(x.states):,} states are more than {max_nodes:,})")


def sigma(x, color: str = "progress", max_nodes: int = INTERACTIVE_MAX, height: int = 600):
    """An ipysigma widget (pan, zoom, search; WebGL) over ``interactive_graph``: labels,
    colour by launch progress ("progress") or by the invariant that fails ("broken"),
    size by degree. Needs the lab extra."""
    try:
        from ipysigma import Sigma
    except ImportError as e:
        raise ImportError(f"the interactive graph needs ipysigma ({e.name} is missing): "
                          "pip install gmemlab[lab]") from None
    if color not in ("progress", "broken"):
        raise ValueError(f"unknown colour {color!r}; known: progress, broken")
    g = interactive_graph(x, max_nodes)
    return Sigma(g, node_color=color, node_size=g.degree, node_label="label", height=height,
                 default_edge_type="arrow", start_layout=min(10, 2 + g.number_of_nodes() // 500))
