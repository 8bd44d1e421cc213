"""networkx views of an exploration, built on request (never in the explorer's loop).

- ``full_graph``: every state and transition (for small spaces).
- ``quotient``: states projected onto chosen variables (by default, per page: KVM
  attribute x trusted-entity state, plus finalized), readable at any size.
- ``difference``: two proposals' quotients overlaid; each node and edge says whether
  it is in one, the other, or both.

Node attributes: ``label``, ``invariants`` (the always-properties that fail in the
state), ``count`` (states folded into a quotient node), ``initial``. Edge attributes:
``ops`` (op names), ``outcomes`` (short outcome strings), ``count``.
"""

from __future__ import annotations

from typing import Callable

from gmemlab.explore import Exploration
from gmemlab.invariants import ALWAYS
from gmemlab.model.state import TE_NAMES, VmState, content_name
from gmemlab.outcome import outcome_text


def _nx():
    import networkx as nx
    return nx


def page_label(p) -> str:
    """A compact label of one page, e.g. 'P/valid A m' (private, TE valid, content A, measured)."""
    parts = ["P" if p.private else "S"]
    if p.te:
        parts[0] += "/" + TE_NAMES[p.te]
    parts.append(content_name(p.content) if p.allocated else "-")
    flags = ("m" if p.measured else "") + ("h" if p.mapped else "") + ("p" * p.pins)
    if flags:
        parts.append(flags)
    return " ".join(parts)


def state_label(s: VmState) -> str:
    return " | ".join(page_label(p) for p in s.pages) + (" [fin]" if s.finalized else "")


def attribute_x_te(s: VmState) -> tuple:
    """The default projection: per page (KVM attribute, TE state), and finalized."""
    return (tuple(("P" if p.private else "S") + ("/" + TE_NAMES[p.te] if p.te else "") for p in s.pages),
            s.finalized)


def projection_label(key) -> str:
    pages, fin = key if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], bool) else (key, False)
    text = " | ".join(pages) if isinstance(pages, tuple) else str(pages)
    return text + (" [fin]" if fin else "")


def _broken(x: Exploration, s: VmState) -> list[str]:
    return [p.name for p in ALWAYS if p.on_state is not None and not p.on_state(x.config, s)]


def full_graph(x: Exploration, max_nodes: int = 5000):
    """Every state and transition as a networkx MultiDiGraph (refuses huge spaces)."""
    nx = _nx()
    if len(x.states) > max_nodes:
        from gmemlab.errors import UsageError
        raise UsageError(f"{len(x.states):,} states is too many to draw whole (max {max_nodes:,}): "
                         "use quotient()")
    g = nx.MultiDiGraph()
    roots = {i for i, (parent, _) in enumerate(x.parent) if parent == -1}
    for i, s in enumerate(x.states):
        g.add_node(i, label=state_label(s), invariants=_broken(x, s), initial=i in roots, count=1)
    for sid, tid, a in zip(x.src, x.dst, x.act):
        if sid == tid:
            continue
        ev = x.actions[a]
        g.add_edge(sid, tid, ops=[ev["op"]], outcomes=[outcome_text(x.outcome(sid, a))], count=1)
    return g


def quotient(x: Exploration, key: Callable[[VmState], object] = attribute_x_te):
    """States folded by ``key``; an edge wherever some transition crosses between folds."""
    nx = _nx()
    g = nx.DiGraph()
    keys = [key(s) for s in x.states]
    for i, k in enumerate(keys):
        if k not in g:
            g.add_node(k, label=projection_label(k), count=0, invariants=set(), initial=False)
        node = g.nodes[k]
        node["count"] += 1
        node["invariants"].update(_broken(x, x.states[i]))
        if x.parent[i][0] == -1:
            node["initial"] = True
    for sid, tid, a in zip(x.src, x.dst, x.act):
        ks, kt = keys[sid], keys[tid]
        if ks == kt:
            continue
        add_call(g, ks, kt, x.actions[a]["op"])
    for k in g.nodes:
        g.nodes[k]["invariants"] = sorted(g.nodes[k]["invariants"])
    return g


def add_call(g, u, v, op: str) -> None:
    """One more call from u to v in a folded graph: the edge counts its calls and lists
    their ops in the order met."""
    if g.has_edge(u, v):
        e = g.edges[u, v]
        e["count"] += 1
        if op not in e["ops"]:
            e["ops"].append(op)
    else:
        g.add_edge(u, v, ops=[op], count=1)


def difference(a: Exploration, b: Exploration, key: Callable[[VmState], object] = attribute_x_te):
    """Overlay two quotients; ``side`` is 'both', 'a' or 'b' on every node and edge."""
    return overlay(quotient(a, key), quotient(b, key))


def overlay(ga, gb):
    """Two folded graphs as one: ``side`` 'both', 'a' or 'b' on every node and edge, a
    node's count the states of both, an edge's ops those of both."""
    nx = _nx()
    g = nx.DiGraph()
    for n in sorted(set(ga.nodes) | set(gb.nodes), key=repr):
        side = "both" if n in ga and n in gb else ("a" if n in ga else "b")
        src = ga.nodes[n] if n in ga else gb.nodes[n]
        g.add_node(n, label=src["label"], side=side, invariants=src["invariants"], initial=src["initial"],
                   count=(ga.nodes[n]["count"] if n in ga else 0) + (gb.nodes[n]["count"] if n in gb else 0))
    for u, v in sorted(set(ga.edges) | set(gb.edges), key=repr):
        side = "both" if ga.has_edge(u, v) and gb.has_edge(u, v) else ("a" if ga.has_edge(u, v) else "b")
        ops = sorted(set((ga.edges[u, v]["ops"] if ga.has_edge(u, v) else [])
                         + (gb.edges[u, v]["ops"] if gb.has_edge(u, v) else [])))
        g.add_edge(u, v, side=side, ops=ops)
    return g
