"""gmemlab.render: graphs (dot and the pure-Python fallback), lanes, HTML, the reply,
and the views the notebooks call. Fast: no Jupyter, no browser."""

import builtins
import os
import shutil
import sys
import xml.etree.ElementTree as ET

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.explore.compare import compare
from gmemlab.invariants import ALWAYS
from gmemlab.model.state import Config
from gmemlab.render import graphs, html as H, lanes as L, views
from gmemlab.render.reply import pick_counterexample, reply_html, reply_text, too_wide
from gmemlab.traces.format import loads
from gmemlab.traces.replay import config_for, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def x_user():
    return explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1))


@pytest.fixture(scope="module")
def table():
    return compare("snp", "v8", Bounds(pages=1))


# --- graphs -------------------------------------------------------------------------------

def _svg_ok(svg: str):
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    return root


@pytest.mark.parametrize("projection", sorted(graphs.PROJECTIONS))
def test_quotient_fallback_is_valid_svg_with_every_node(x_user, projection):
    d = graphs.quotient_view(x_user, projection)
    v = graphs.draw(d, engine="python")
    root = _svg_ok(v.svg)
    nodes = [g for g in root.iter() if g.get("class") == "node"]
    assert len(nodes) == len(d.boxes) == v.nodes
    assert v.engine == "python" and 'data-engine="python"' in v.html()


def test_drawing_is_deterministic(x_user):
    a = graphs.draw(graphs.quotient_view(x_user), engine="python")
    b = graphs.draw(graphs.quotient_view(x_user), engine="python")
    assert a.svg == b.svg and a.dot == b.dot


def test_dot_source_names_every_state_and_marks_broken_ones(x_user):
    d = graphs.quotient_view(x_user)
    src = graphs.dot_source(d)
    assert src.startswith("digraph gmemlab {") and src.rstrip().endswith("}")
    assert src.count(" -> ") == len(d.arrows)
    # userspace-converts reaches S/valid: the TE holds a KVM-shared page, drawn red
    broken = [b for b in d.boxes if b.fill == graphs.RED]
    assert broken and any("S/valid" in "".join(b.lines) for b in broken)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_dot_engine_draws_the_same_graph(x_user):
    d = graphs.quotient_view(x_user)
    v = graphs.draw(d, engine="auto")
    assert v.engine == "dot"
    root = _svg_ok(v.svg)
    assert len([g for g in root.iter() if g.get("class") == "node"]) == len(d.boxes)
    assert "<!--" not in v.svg  # no version comment: the same input gives the same bytes


def test_no_dot_falls_back(monkeypatch, x_user):
    monkeypatch.setenv("GMEMLAB_NO_DOT", "1")
    assert graphs.draw(graphs.quotient_view(x_user)).engine == "python"
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        graphs.draw(graphs.quotient_view(x_user), engine="dot")


def test_difference_sides(table):
    a, b = views.column(table, "userspace-converts").exploration, views.column(table, "private-first").exploration
    d = graphs.difference_view(a, b)
    assert d.names == ("userspace-converts", "private-first")
    assert any(box.fill == graphs.RED for box in d.boxes)  # only userspace-converts breaks
    v = graphs.draw(d, engine="python")
    assert "only userspace-converts" in v.html()


def test_full_graph_refuses_big_spaces():
    x = explore(Config(proposal="private-first", platform="snp"), Bounds(pages=2))
    assert "too many to draw" in views.full_graph_html(x)


# --- lanes --------------------------------------------------------------------------------

def test_lanes_follow_the_model(x_user):
    cx = x_user.counterexample("te_private_implies_kvm_private")
    lanes = L.compute(x_user.config, cx)
    assert [o for o in lanes.outcomes] == [e["expect"] for e in cx]
    last = len(cx) - 1
    assert "te_private_implies_kvm_private" in lanes.marks(last)
    assert L.cell(lanes.states[last], 0, "attribute") == "S"
    assert L.cell(lanes.states[last], 0, "TE") == "valid"


def test_lanes_text_is_72_columns_and_wraps_long_sequences():
    cfg = Config(platform="snp")
    evs = [{"op": "create_gmem", "size": 8192, "flags": ("MMAP", "INIT_SHARED")}]
    evs += [{"op": "host_write", "offset": 0, "value": 65}, {"op": "host_read", "offset": 4096}] * 8
    text = L.lanes_text(L.compute(cfg, evs))
    assert max(len(line) for line in text.splitlines()) <= 72
    assert text.count("page 0 @0x0") == 3  # 17 steps, 7 per block
    assert text.isascii()


def test_lanes_window_keeps_numbers():
    cfg = Config(platform="snp")
    evs = [{"op": "create_gmem", "size": 4096, "flags": ("MMAP", "INIT_SHARED")}] + \
          [{"op": "host_write", "offset": 0, "value": 65 + k} for k in range(6)]
    w = L.compute(cfg, evs).window(5, before=2, after=1)
    assert [w.number(k) for k in range(len(w.events))] == [4, 5, 6, 7]
    assert "step" in L.lanes_html(w)


# --- HTML ---------------------------------------------------------------------------------

def test_matrix_marks_the_focus_and_what_differs(table):
    a = H.compare_html(table, "userspace-converts", "private-first")
    b = H.compare_html(table, "populate-converts", "private-first")
    assert 'data-focus="userspace-converts"' in a and 'data-differs="3"' in a
    # the same safety, but populate-converts' VMM cannot recover (vmm_recovers)
    assert 'data-focus="populate-converts"' in b and 'data-differs="1"' in b
    # every proposal and the series cite their source (the v8 cover letter's Message-Id)
    assert H.esc("<20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com>") in a
    for c in table.columns:
        assert H.esc(views.proposal_source(c.proposal)) in a


def test_matrix_rows_are_the_comparison(table):
    rows = dict(H.matrix_rows(table))
    for c in table.columns:
        j = c.to_json()
        k = [col.proposal for col in table.columns].index(c.proposal)
        assert rows["states"][k] == f"{j['states']:,}"
        for p in ALWAYS:
            inv = j["invariants"][p.name]
            assert rows[p.name][k].startswith("holds") == inv["holds"]


def test_matrix_summary_agrees_with_the_matrix_on_every_row(table):
    """The summary under the matrix (notebook 02, the report's index) names every broken
    row, vmm_recovers included: no "breaks nothing" above a BROKEN cell."""
    import re
    from gmemlab.render.text import GUESSING_ROW
    rows = dict(H.matrix_rows(table))
    lines = " ".join(views.matrix_summary(table).split())
    names = [c.proposal for c in table.columns]
    for k, c in enumerate(table.columns):
        nxt = names[k + 1] + ":" if k + 1 < len(names) else None
        said = lines.split(c.proposal + ":", 1)[1]
        said = said.split(nxt, 1)[0] if nxt else said
        for p in ALWAYS:
            assert (p.name in said) == rows[p.name][k].startswith("BROKEN"), (c.proposal, p.name, said)
        assert ("cannot recover" in said) == rows["vmm_recovers"][k].startswith("BROKEN"), (c.proposal, said)
        if not c.recovery.holds:
            assert f"gives up on {c.recovery.gives_up_on}" in said
            assert f"{GUESSING_ROW}: {rows[GUESSING_ROW][k]}" in said
    assert any(not c.recovery.holds for c in table.columns)   # snp v8: populate-converts
    # the line comparing two proposals counts what the HTML matrix marks as differing
    for focus in names:
        differs = re.search(r'data-differs="(\d+)"', H.compare_html(table, focus, "private-first")).group(1)
        if focus != "private-first":
            summary = " ".join(views.matrix_summary(table, focus, "private-first").split())
            assert f"{focus} against private-first: breaks {differs} invariant(s)" in summary


def test_toggle_has_one_pane_per_combination_and_no_script():
    panes = {(s, f): f"<p>{s}/{f}</p>" for s in ("v7", "v8") for f in ("a", "b", "c")}
    t = H.toggle_html([("series", ["v7", "v8"]), ("focus", ["a", "b", "c"])], panes, ("v8", "b"))
    assert t.count('class="gml-pane ') == 6 and "<script" not in t
    assert t.count(" checked") == 2
    assert t == H.toggle_html([("series", ["v7", "v8"]), ("focus", ["a", "b", "c"])], panes, ("v8", "b"))


# --- the reply ----------------------------------------------------------------------------

def test_reply_is_ascii_72_columns_and_deterministic(table):
    text = reply_text(table)
    assert text == reply_text(table)
    assert text.isascii() and too_wide(text) == []   # every line <= 72 but a bare link
    prop, inv, cx = pick_counterexample(table)
    assert (prop, inv) == ("userspace-converts", "te_private_implies_kvm_private")
    assert f"Counterexample: {prop} breaks {inv}" in text.replace("\n", " ")
    for n in range(1, len(cx) + 1):
        assert f"\n  {n}. " in text
    assert "https://lore.kernel.org/r/20260618-gmem-inplace-conversion-v8-0-9d2959357853@google.com" in text
    assert "gmemlab explore --proposal userspace-converts" in text


def test_reply_names_a_chosen_counterexample(table):
    text = reply_text(table, "userspace-converts", "host_never_touches_te_private")
    assert "breaks host_never_touches_te_private" in text.replace("\n", " ")
    with pytest.raises(ValueError, match="holds for private-first"):
        reply_text(table, "private-first", "private_not_pinned")
    assert "gml-lanes" in reply_html(table)


def test_reply_when_nothing_breaks():
    t = compare("sw_protected", "v8", Bounds(pages=1))
    assert "No invariant breaks" in reply_text(t)


# --- views ----------------------------------------------------------------------------------

@pytest.mark.parametrize("platform,series", [("snp", "v7"), ("tdx", "v8"), ("sw_protected", "v5")])
def test_counterexample_traces_replay_to_their_violation(platform, series):
    for proposal in ("private-first", "userspace-converts"):
        x = views.exploration(proposal, platform, series, 1)
        for cx in views.counterexamples(x):
            header, events = loads(cx.trace, "cx.jsonl")
            report = replay(config_for(header, proposal), events, "cx.jsonl")
            assert report.conforms, (proposal, cx.invariant, report.to_json())
            if cx.invariant != "no_stuck_state":  # a property of the whole graph
                assert cx.invariant in {v["invariant"] for v in report.violations}


def test_conformance_matches_the_manifest():
    import json
    with open(os.path.join(ROOT, "data", "traces", "manifest.json")) as f:
        manifest = json.load(f)
    c = views.conformance(os.path.join(ROOT, "data", "traces"), "populate-converts")
    assert set(c.verdicts()) == set(manifest)
    for name, verdict in c.verdicts().items():
        want = manifest[name]["populate-converts"]
        assert verdict == (want if isinstance(want, str) else want["verdict"]), name
    html = views.divergences_html(c)
    assert "gml-divergence" in html and "diverges: expected" in html
    assert "data-reachable" in views.coverage_html(c)


def test_knob_names_are_checked():
    with pytest.raises(ValueError, match="known: refuse_unprepared_populate"):
        views.knob_dict(["refuse_unprepared"])
    assert views.knob_dict({"convert_after_populate": True, "refuse_unprepared_populate": False}) == \
        {"convert_after_populate": True}


def test_widgets_name_the_extra_when_ipywidgets_is_missing(monkeypatch):
    from gmemlab.render import widgets
    real = builtins.__import__

    def no_ipywidgets(name, *a, **k):
        if name == "ipywidgets":
            raise ImportError("No module named 'ipywidgets'")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    monkeypatch.delitem(sys.modules, "ipywidgets", raising=False)
    with pytest.raises(ImportError, match=r"pip install gmemlab\[lab\]"):
        widgets.compare_panel()


def test_compare_panel_updates_without_a_browser():
    pytest.importorskip("ipywidgets")
    from gmemlab.render.widgets import compare_panel
    p = compare_panel(platform="snp", series="v8", pages=1, engine="python")
    assert 'data-focus="userspace-converts"' in p.matrix.value and 'data-differs="3"' in p.matrix.value
    p.focus.value = "populate-converts"
    assert 'data-focus="populate-converts"' in p.matrix.value and 'data-differs="1"' in p.matrix.value
    assert p.data()["matrix"] == views.matrix_data(views.comparison("snp", "v8", 1))
    p.platform.value = "tdx"
    assert 'data-platform="tdx"' in p.matrix.value


def test_no_direct_map_knob_creates_such_files():
    t = views.comparison("snp", "v8", 1, ["no_direct_map_series"])
    row = views.matrix_data(t)["direct_map_absent_for_private"]
    assert "holds*" not in row.values()  # no longer vacuous: the explorer creates NO_DIRECT_MAP files


def test_memory_map_lanes_colour_the_page_a_state_invariant_forbids():
    """At the step where te_private_implies_kvm_private starts to fail, the page it is
    about shows its attribute and TE cells in red (Lanes.offending: the invariant's own
    predicate, page by page); no other step or page does."""
    import re as _re
    from gmemlab.explore import Bounds, explore
    from gmemlab.model.state import Config
    from gmemlab.render.lanes import _FORBIDDEN, compute, lanes_html
    cfg = Config(proposal="userspace-converts", platform="snp")
    cx = explore(cfg, Bounds(pages=2)).counterexample("te_private_implies_kvm_private")
    lanes = compute(cfg, cx)
    k = next(k for k in range(len(cx)) if "te_private_implies_kvm_private" in lanes.broken[k])
    page = next(iter(lanes.offending(k)))
    assert lanes.states[k].pages[page].te and not lanes.states[k].pages[page].private
    assert all(not lanes.offending(j) for j in range(len(cx)) if not lanes.broken[j])
    html = lanes_html(lanes)
    red = [m.start() for m in _re.finditer(_re.escape(_FORBIDDEN), html)]
    assert len(red) >= 2          # the attribute and the TE of that page, at that step
