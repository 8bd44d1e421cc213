"""The views built for a question (gmemlab.render.bounded): the same folds as
gmemlab.explore.graph, sizes bounded whatever the page count, the chosen state in its
neighbourhood, one box per step of a path, and the interactive graph's fallbacks."""

import sys

import pytest

from gmemlab.explore import graph as G
from gmemlab.render import bounded as B
from gmemlab.render import views
from gmemlab.render.graphs import CHOSEN, PROJECTIONS, draw


def _x(pages, proposal="userspace-converts"):
    return views.exploration(proposal, "snp", "v8", pages)


@pytest.mark.parametrize("pages", [1, 2])
@pytest.mark.parametrize("projection", sorted(PROJECTIONS))
def test_fold_is_the_quotient(pages, projection):
    x = _x(pages)
    a, b = G.quotient(x, PROJECTIONS[projection]), B.fold(x, PROJECTIONS[projection])
    assert list(a.nodes) == list(b.nodes)
    for n in a.nodes:
        assert {k: a.nodes[n][k] for k in ("label", "count", "invariants", "initial")} == \
               {k: b.nodes[n][k] for k in ("label", "count", "invariants", "initial")}, n
    assert set(a.edges) == set(b.edges)
    for e in a.edges:
        assert sorted(a.edges[e]["ops"]) == sorted(b.edges[e]["ops"]) and a.edges[e]["count"] == b.edges[e]["count"]


def test_fold_difference_is_the_difference():
    a, b = _x(1), _x(1, "private-first")
    d, f = G.difference(a, b), B.fold_difference(a, b)
    assert list(d.nodes) == list(f.nodes) and set(d.edges) == set(f.edges)
    assert all(d.nodes[n]["side"] == f.nodes[n]["side"] for n in d.nodes)
    assert all(d.edges[e]["side"] == f.edges[e]["side"] and d.edges[e]["ops"] == f.edges[e]["ops"] for e in d.edges)


@pytest.mark.parametrize("pages", [1, 2, 3])
def test_every_view_is_bounded(pages):
    x, y = _x(pages), _x(pages, "private-first")
    drawings = [B.progress_view(x), B.difference_view(x, y), B.neighbourhood_view(x), B.path_view(x)]
    drawings += [B.quotient_view(x, p) for p in PROJECTIONS] + B.page_views(x)
    for d in drawings:
        assert 0 < len(d.boxes) <= B.MAX_BOXES, (d.kind, d.title, len(d.boxes))
    assert len(B.page_views(x)) == pages
    # clusters and folds account for every state
    kid, keys = B.progress_key(x)
    assert len(kid) == len(x.states)
    for p in PROJECTIONS:
        g = B.fold(x, PROJECTIONS[p])
        assert sum(c for _, c in g.nodes(data="count")) == len(x.states)
        c = B.cluster(g, p, pages)
        assert sum(s for _, s in c.nodes(data="states")) == len(x.states)
        assert sum(f for _, f in c.nodes(data="folds")) == g.number_of_nodes()


def test_a_big_quotient_is_clustered_and_says_so():
    x = _x(3)
    assert B.fold(x, PROJECTIONS["launch progress"]).number_of_nodes() > B.MAX_BOXES
    d = B.quotient_view(x, "launch progress")
    assert d.kind == "cluster" and "clustered into" in d.title and len(d.boxes) <= B.MAX_BOXES
    small = B.quotient_view(_x(1), "attribute x TE")
    assert small.kind == "quotient" and len(small.boxes) == B.fold(_x(1)).number_of_nodes()


def test_views_stay_bounded_at_three_pages():
    """At 3 pages (hundreds of thousands of states) every view still draws at most
    B.MAX_BOXES boxes (how fast is `make bench`'s to say, not a test's)."""
    x, y = _x(3), _x(3, "private-first")
    for make in (lambda: B.quotient_view(x, "launch progress"), lambda: B.difference_view(x, y),
                 lambda: B.neighbourhood_view(x), lambda: B.progress_view(x), lambda: B.path_view(x)):
        d = make()
        assert 0 < len(d.boxes) <= B.MAX_BOXES
        draw(d, "auto")


def test_neighbourhood_holds_the_chosen_state_and_only_near_ones():
    nx = pytest.importorskip("networkx")
    x = _x(1)
    full = nx.DiGraph(G.full_graph(x)).to_undirected()
    for state in (0, 7, len(x.states) - 1):
        d = B.neighbourhood_view(x, state, radius=1)
        chosen = [b for b in d.boxes if b.fill == CHOSEN]
        assert len(chosen) == 1 and chosen[0].lines[0] == f"state {state} (chosen)"
        ids = [int(b.lines[0].split()[1]) for b in d.boxes]
        assert ids[0] == state and len(ids) == len(set(ids)) <= B.NEIGHBOURS
        assert all(s == state or full.has_edge(state, s) for s in ids)
    near = B.neighbours(x, 0, radius=2, cap=10**6)
    assert set(near) == set(nx.single_source_shortest_path_length(full, 0, cutoff=2))
    with pytest.raises(ValueError, match="no state"):
        B.neighbourhood_view(x, len(x.states))


def test_path_view_has_one_box_per_step():
    x = _x(2)
    for name in [p for p in views.invariant_names() if not x.holds(p) and p != "no_stuck_state"]:
        d = B.path_view(x, name)
        events = x.counterexample(name)
        assert len(d.boxes) == len(events) and len(d.arrows) == len(events) - 1
        assert name in " ".join(d.boxes[-1].lines)
    launch = B.path_view(x)
    last = B.states(x)[B.launch_target(x)]
    assert last.finalized and all(p.measured for p in last.pages)
    assert len(launch.boxes) == len(B.launch_events(x)) and "launch finalized" in launch.boxes[-1].lines
    with pytest.raises(ValueError, match="holds"):
        B.path_view(_x(1, "private-first"), "te_private_implies_kvm_private")


def test_full_graph_is_replaced_above_the_threshold():
    x = _x(1)
    html = views.full_graph_html(x, "python")
    assert "too many to draw one by one" in html and 'data-kind="progress"' in html
    assert html.count('class="gml-graph"') == 1
    drawn = views.full_graph_html(x, "python", max_nodes=len(x.states))
    assert 'data-kind="full"' in drawn and drawn.count('class="node"') == len(x.states)


def test_interactive_graph_and_its_fallbacks(monkeypatch):
    x = _x(1)
    g = B.interactive_graph(x)
    assert g.number_of_nodes() == len(x.states) and all("label" in d and "progress" in d for _, d in g.nodes(data=True))
    q = B.interactive_graph(x, max_nodes=10)
    assert q.number_of_nodes() == B.fold(x, PROJECTIONS["launch progress"]).number_of_nodes()
    assert "folds by launch progress" in q.graph["what"]
    note = views.interactive_view(x, False)
    assert "runs in the live notebook" in str(note)
    monkeypatch.setitem(sys.modules, "ipysigma", None)
    with pytest.raises(ImportError, match=r"gmemlab\[lab\]"):
        B.sigma(x)
    assert "gmemlab[lab]" in str(views.interactive_view(x, True))


def test_sigma_widget_when_installed():
    pytest.importorskip("ipysigma")
    w = B.sigma(_x(1), "broken")
    assert type(w).__name__ == "Sigma"
    with pytest.raises(ValueError, match="colour"):
        B.sigma(_x(1), "size")
