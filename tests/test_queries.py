"""Counterexample queries (gmemlab.explore.queries): each answer is replayed and held to
what it claims -- it ends in the op, passes the predicate's state, breaks the invariant
at its last call and not before, is no longer than any other path that does (a
brute-force breadth-first search over concrete states, on 1 page) -- and notebook 03
shows them under papermill.
"""

import json
import os
import re
from collections import deque

import pytest

from gmemlab.errors import UsageError
from gmemlab.explore import (PREDICATES, Bounds, canonical, counterexample_where, differing_counterexample,
                             distinct_counterexamples, explore)
from gmemlab.explore.queries import predicate
from gmemlab.model.state import Config
from gmemlab.traces.walk import walk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NBDIR = os.path.join(ROOT, "notebooks")
HOST = "host_never_touches_te_private"


def userspace(pages=1, **kw):
    return explore(Config(proposal="userspace-converts", platform="snp", series="v8"), Bounds(pages=pages), **kw)


@pytest.fixture(scope="module")
def x():
    return userspace()


@pytest.fixture(scope="module")
def brute(x):
    """Brute force on concrete states (1 page: no symmetry to undo), one step at a time
    through walk: for each invariant, (op of the violating call, the predicate names that
    held on a state before it, canonical state it leads to) -> fewest calls, over paths
    on which no earlier call breaks the invariant."""
    cfg, spec = x.config, x.spec
    names = sorted({*x.violations})
    tests = {p: predicate(p, cfg) for p in PREDICATES}
    best = {name: {} for name in names}
    for name in names:
        # node: (state, frozenset of the predicates passed so far)
        seen, todo = set(), deque()
        for ev in spec.creates:
            st = next(iter(walk(cfg, [ev], engine="pages")))
            if name in st.broken:
                best[name].setdefault(("create_gmem", frozenset(), canonical(st.post)[0]), 1)
                continue
            node = (st.post, frozenset(p for p, t in tests.items() if t(st.post)))
            if node not in seen:
                seen.add(node)
                todo.append((node, 1))
        while todo:
            (s, passed), n = todo.popleft()
            for ev in spec.actions:
                st = next(iter(walk(cfg, [ev], initial=s, engine="pages")))
                if not spec.within(st.post):
                    continue
                if name in st.broken:
                    best[name].setdefault((ev["op"], passed, canonical(st.post)[0]), n + 1)
                    continue
                node = (st.post, passed | {p for p, t in tests.items() if t(st.post)})
                if node not in seen:
                    seen.add(node)
                    todo.append((node, n + 1))
    return best


def fewest(brute_name, op=None, through=None, post=None):
    lengths = [n for (o, passed, s), n in brute_name.items()
               if (op is None or o == op) and (through is None or through in passed)
               and (post is None or s == post)]
    return min(lengths, default=None)


def replay(cfg, events):
    return list(walk(cfg, events, engine="pages"))


def assert_breaks_last(cfg, events, name):
    steps = replay(cfg, events)
    assert name in steps[-1].broken
    assert not any(name in st.broken for st in steps[:-1])
    assert [st.outcome for st in steps] == [ev["expect"] for ev in events]  # counterexample() form
    return steps


# --- the plain query is the explorer's counterexample ------------------------------------

@pytest.mark.parametrize("pages", [1, 2])
def test_without_filters_it_is_the_counterexample(pages):
    x = userspace(pages)
    assert x.violations
    for name in x.violations:
        assert counterexample_where(x, name) == x.counterexample(name)
        assert distinct_counterexamples(x, name, 1) == [x.counterexample(name)]


# --- ends_with ----------------------------------------------------------------------------

def test_ends_with_each_op(x, brute):
    ops = sorted({ev["op"] for ev in x.actions} | {"create_gmem"})
    answered = 0
    for name in sorted(x.violations):
        for op in ops:
            cx = counterexample_where(x, name, ends_with=op)
            want = fewest(brute[name], op=op)
            if cx is None:
                assert want is None, (name, op)
                continue
            answered += 1
            assert cx[-1]["op"] == op
            assert_breaks_last(x.config, cx, name)
            assert len(cx) == want, (name, op)
    assert answered >= 4


def test_host_read_after_populate(x):
    cx = counterexample_where(x, HOST, ends_with="host_read", through="after_populate")
    assert [e["op"] for e in cx] == ["create_gmem", "populate", "host_read"]


# --- through --------------------------------------------------------------------------------

@pytest.mark.parametrize("through", sorted(PREDICATES))
def test_through_each_predicate(x, brute, through):
    test = predicate(through, x.config)
    for name in sorted(x.violations):
        cx = counterexample_where(x, name, through=through)
        want = fewest(brute[name], through=through)
        if cx is None:
            assert want is None, name
            continue
        steps = assert_breaks_last(x.config, cx, name)
        assert any(test(st.post) for st in steps[:-1]), (name, through)
        assert len(cx) == want, name


def test_through_with_ends_with(x, brute):
    cx = counterexample_where(x, HOST, ends_with="host_write", through="after_finalize")
    steps = assert_breaks_last(x.config, cx, HOST)
    assert cx[-1]["op"] == "host_write" and any(st.post.finalized for st in steps[:-1])
    assert len(cx) == min(n for (op, passed, _), n in brute[HOST].items()
                          if op == "host_write" and "after_finalize" in passed)


def test_through_a_callable_on_one_page_without_symmetry():
    x = userspace(2, symmetry=False)
    second_pinned = lambda s: s.pages[1].pins > 0  # noqa: E731  (asks about one page)
    cx = counterexample_where(x, HOST, through=second_pinned)
    steps = assert_breaks_last(x.config, cx, HOST)
    assert any(second_pinned(st.post) for st in steps[:-1])
    assert cx != x.counterexample(HOST)  # that one pins and populates page 0


def test_a_callable_that_asks_about_one_page_needs_symmetry_off():
    # snp explores unreduced from 2 pages (its whole-range populate is order-dependent,
    # gmemlab.spec); the reduced search of the page-by-page action set stores sorted states.
    from gmemlab.explore import Spec
    from gmemlab.explore.search import search
    from gmemlab.spec import order_dependent
    assert not userspace(2).symmetry
    spec = Spec(Config(proposal="userspace-converts", platform="snp", series="v8"), Bounds(pages=2))
    spec.actions = [a for a in spec.actions if not order_dependent(spec.config, a)]
    spec.symmetric = True
    with pytest.raises(UsageError, match="depends on the order of pages"):
        counterexample_where(search(spec, engine="fast"), HOST, through=lambda s: s.pages[1].pins > 0)


# --- distinct -----------------------------------------------------------------------------

def test_distinct_are_distinct_and_each_shortest(x, brute):
    for name in sorted(x.violations):
        found = distinct_counterexamples(x, name, 6)
        assert found[0] == x.counterexample(name)
        keys = []
        for cx in found:
            steps = assert_breaks_last(x.config, cx, name)
            key = (cx[-1]["op"], canonical(steps[-1].post)[0])
            keys.append(key)
            assert len(cx) == fewest(brute[name], op=key[0], post=key[1]), (name, key)
        assert len(set(keys)) == len(keys), name
    # op first: the first answers for host_never_touches_te_private end in different ops
    ops = [cx[-1]["op"] for cx in distinct_counterexamples(x, HOST, 4)]
    assert len(set(ops)) == 4


def test_distinct_with_filters(x):
    found = distinct_counterexamples(x, HOST, 3, ends_with="host_write")
    assert len(found) >= 2 and all(cx[-1]["op"] == "host_write" for cx in found)
    assert len({json.dumps(cx[-2:], default=str) for cx in found}) == len(found)


# --- differ -------------------------------------------------------------------------------

@pytest.mark.parametrize("other", ["private-first", "populate-converts"])
def test_differ_breaks_under_one_and_not_the_other(x, other):
    y = explore(Config(proposal=other, platform="snp", series="v8"), Bounds(pages=1))
    answered = 0
    for name in sorted(x.violations):
        cx = differing_counterexample(x, other, name)
        if cx is not None:
            answered += 1
            assert_breaks_last(x.config, cx, name)
            assert not any(name in st.broken for st in replay(y.config, cx))
        # the reverse: what the other proposal breaks and userspace-converts does not
        back = differing_counterexample(y, "userspace-converts", name)
        assert back is None or not any(name in st.broken for st in replay(x.config, back))
    assert answered == len(x.violations)


def test_differ_both_ways_on_a_config_where_both_break():
    # snp v7 at 1 page: both break launch_contents_preserved and guest_never_sees_stale_data
    a, b = (explore(Config(proposal=p, platform="snp", series="v7"), Bounds(pages=1))
            for p in ("private-first", "userspace-converts"))
    both = sorted(set(a.violations) & set(b.violations))
    assert both
    for name in both:
        for one, two in ((a, b), (b, a)):
            cx = differing_counterexample(one, two.config.proposal, name)
            if cx is not None:
                assert_breaks_last(one.config, cx, name)
                assert not any(name in st.broken for st in replay(two.config, cx))


# --- bad requests --------------------------------------------------------------------------

def test_bad_names_are_usage_errors(x):
    with pytest.raises(UsageError, match="unknown op 'hostread'; known: .*host_read"):
        counterexample_where(x, HOST, ends_with="hostread")
    with pytest.raises(UsageError, match="unknown predicate 'populated'; known: after_populate, after_finalize"):
        counterexample_where(x, HOST, through="populated")
    with pytest.raises(UsageError, match="unknown invariant 'host_safe'; known: .*" + HOST):
        distinct_counterexamples(x, "host_safe", 2)
    with pytest.raises(UsageError, match="no_stuck_state is a property of the whole state graph"):
        counterexample_where(x, "no_stuck_state")
    with pytest.raises(UsageError, match="positive integer"):
        distinct_counterexamples(x, HOST, 0)
    with pytest.raises(UsageError, match="unknown proposal"):
        differing_counterexample(x, "private-last", HOST)
    with pytest.raises(UsageError, match="itself"):
        differing_counterexample(x, "userspace-converts", HOST)


def test_an_op_no_action_takes_has_no_answer(x):
    assert counterexample_where(x, HOST, ends_with="map_gpa_range") is None


# --- the renderers take the answers unchanged ------------------------------------------------

def test_answers_render_as_counterexamples(x):
    from gmemlab.render import views
    from gmemlab.render.lanes import compute, lanes_text
    from gmemlab.render.selftest import render
    from gmemlab.traces.format import loads
    cx = counterexample_where(x, HOST, ends_with="host_read", through="after_populate")
    lanes = compute(x.config, cx)
    assert [HOST in lanes.marks(k) for k in range(len(cx))] == [False, False, True]
    assert lanes_text(lanes).count("\n") > 5
    header, events = loads(views.trace_text(x.config, cx, "query"))
    assert "host_access(0x0ULL" in render(header, events)   # the selftest reads the page last


# --- notebook 03 with queries ----------------------------------------------------------------

def test_notebook_03_runs_queries(tmp_path):
    pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    from gmemlab.render import query_views
    from gmemlab.report import execute
    params = {"platform": "snp", "series": "v8", "pages": 1, "proposals": ["userspace-converts"],
              "ends_with": "host_write", "through": "after_populate", "distinct": 2,
              "differ_from": "private-first", "results_path": str(tmp_path / "r.json")}
    out = str(tmp_path / "03.ipynb")
    execute("03_counterexamples", params, out, NBDIR)
    nb = nbformat.read(out, as_version=4)
    shown = "\n".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    got = re.findall(r'<div class="gml-query" data-proposal="([^"]*)" data-invariant="([^"]*)" '
                     r'data-steps="([^"]*)">', shown)
    want = query_views.answers(["userspace-converts"], "snp", "v8", 1, [], "", "host_write", "after_populate",
                               2, "private-first")
    assert got == [(a.proposal, a.invariant, ",".join(str(len(cx.events)) for cx in a.found)) for a in want]
    assert any(steps for _, _, steps in got)
    assert "ending in host_write" in shown and "not broken by the same calls under private-first" in shown


# --- gmemlab query ----------------------------------------------------------------------------

def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_query_answers_and_exit_status(x):
    from gmemlab.traces.format import event_json
    r = _cli("query", HOST, "--proposal", "userspace-converts", "--pages", "1", "--ends-with", "host_read",
             "--through", "after_populate", "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    want = counterexample_where(x, HOST, ends_with="host_read", through="after_populate")
    assert out["counterexamples"] == [[event_json(e) for e in want]]
    r = _cli("query", HOST, "--proposal", "userspace-converts", "--pages", "1", "--distinct", "3")
    assert r.returncode == 1 and r.stdout.count(" steps\n") == 3
    r = _cli("query", "te_private_implies_kvm_private", "--pages", "1")    # private-first: none
    assert r.returncode == 0 and r.stdout.rstrip().endswith("none")


@pytest.mark.parametrize("args, message", [
    (["--ends-with", "hostread"], "unknown op 'hostread'; known: create_gmem"),
    (["--through", "populated"], "unknown predicate 'populated'; known: after_populate"),
    (["--distinct", "0"], "positive integer"),
    (["--differ-from", "nope"], "unknown proposal 'nope'"),
    (["--differ-from", "private-first", "--distinct", "2"], "do not combine"),
])
def test_cli_query_bad_values_exit_2(args, message):
    r = _cli("query", HOST, "--proposal", "userspace-converts", "--pages", "1", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_query_panel_answers_each_change():
    pytest.importorskip("ipywidgets")
    from gmemlab.render.query_panel import query_panel
    panel = query_panel(["userspace-converts", "private-first"], pages=1)
    (proposal, invariant, ends_with), (through, distinct, differ_from) = (b.children for b in panel.children[:2])
    view = panel.children[2]
    assert proposal.value == "userspace-converts"
    assert view.value.count('class="gml-query"') == 3             # each invariant broken
    invariant.value = HOST
    ends_with.value = "host_read"
    assert 'data-steps="3"' in view.value and "ending in host_read" in view.value
    distinct.value = 3
    through.value = "after_finalize"
    assert view.value.count('class="gml-cx"') == 3
    differ_from.value = "private-first"
    assert "not broken by the same calls under private-first" in view.value
    ends_with.value = "map_gpa_range"
    assert "No counterexample answers this." in view.value


def test_answers_do_not_depend_on_what_was_asked_before(x):
    asks = [dict(ends_with="host_write"), dict(through="pinned"), dict(ends_with="pin", through="after_populate")]
    warm = [counterexample_where(x, HOST, **a) for a in asks]       # x has answered other queries
    fresh = userspace()
    assert [counterexample_where(fresh, HOST, **a) for a in reversed(asks)][::-1] == warm


def test_answers_as_text_for_email(x):
    from gmemlab.render import query_views
    found = query_views.asked(x, HOST, ends_with="host_read")
    text = query_views.answers_text(found)
    assert text.startswith(f"userspace-converts, {HOST}: the shortest, ending in host_read\n")
    assert "3. host_read(0x0) = SIGBUS" in text and "host map" in text
