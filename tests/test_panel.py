"""The 02 panel never hangs (issue 12): explorations in a worker thread with a progress
bar, the previous result on screen (dimmed) meanwhile, the latest request wins, an error
in the worker shown in the panel and logged, a configuration explored already shown at
once. Without a browser (tests/test_browser.py drives the panel in JupyterLab)."""

import logging

import pytest

from gmemlab.render import views

pytest.importorskip("ipywidgets")
from gmemlab.render.widgets import compare_panel, config_key  # noqa: E402


def _result(p):
    """(config key, focus) of the matrix on screen, from its wrapper."""
    import re
    m = re.search(r'class="gml-result" data-config="([^"]*)" data-focus="([^"]*)"', p.matrix.value)
    return m and (m.group(1), m.group(2))


def _progress_shown(p):
    return p.progress.layout.display != "none"


@pytest.fixture
def panel():
    views._compare.cache_clear()   # every exploration below is a new one
    p = compare_panel(platform="snp", series="v8", pages=1, engine="python", background=True)
    yield p
    assert p.wait(120)


def test_not_in_a_kernel_the_panel_explores_where_it_is_called():
    p = compare_panel(platform="snp", series="v8", pages=1, engine="python")
    assert p.background is False   # plain Python, pytest, and so the tests and papermill's first drawing
    assert _result(p) == ("snp/v8/1/-", "userspace-converts") and not _progress_shown(p)


def test_an_exploration_runs_in_the_background_with_a_progress_bar(panel):
    p = panel
    before = p.matrix.value
    p.knobs["huge_folios"].value = True
    # at once: the bar, and the previous matrix dimmed on screen
    assert _progress_shown(p) and "exploring" in p.bar_label.value and "huge_folios" in p.bar_label.value
    assert p.bar.max > 1   # the estimate
    assert p.matrix.value == before and "gml-stale" in p.matrix._dom_classes
    assert p.wait(60)
    assert _result(p) == ("snp/v8/1/huge_folios", "userspace-converts")
    assert not _progress_shown(p) and "gml-stale" not in p.matrix._dom_classes
    assert "gml-stale" not in p.graph._dom_classes and 'class="gml-graph"' in p.graph.value
    assert p.status.value == "" and p.error is None
    # explored once: back and forth is shown at once, no bar
    p.knobs["huge_folios"].value = False
    assert _result(p) == ("snp/v8/1/-", "userspace-converts") and not _progress_shown(p)
    p.knobs["huge_folios"].value = True
    assert _result(p) == ("snp/v8/1/huge_folios", "userspace-converts") and not _progress_shown(p)
    assert p.data()["matrix"] == views.matrix_data(views.comparison("snp", "v8", 1, ["huge_folios"]))


def test_the_progress_bar_counts_states_proposal_by_proposal(panel):
    p = panel
    seen = []
    p.bar_label.observe(lambda c: seen.append(c["new"]), names="value")
    p.pages.value = 2
    assert p.wait(120)
    assert _result(p) == ("snp/v8/2/-", "userspace-converts")
    said = " ".join(seen)
    assert "proposal 1 of 3" in said and "states (estimate)" in said
    assert any("proposal 3 of 3" in s for s in seen), seen


def test_the_latest_request_wins_and_the_older_exploration_stops(panel):
    p = panel
    p.pages.value = 2                      # 2 pages: a good part of a second
    p.knobs["convert_after_populate"].value = True
    p.knobs["refuse_unprepared_populate"].value = True    # supersedes both
    p.focus.value = "populate-converts"    # same configuration: the worker under way shows it
    assert p.wait(120)
    assert _result(p) == ("snp/v8/2/refuse_unprepared_populate+convert_after_populate", "populate-converts")
    assert not _progress_shown(p) and "gml-stale" not in p.matrix._dom_classes
    # the superseded explorations stopped at their next batch: never finished, never cached
    assert views.cached_comparison("snp", "v8", 2) is None
    assert views.cached_comparison("snp", "v8", 2, ["convert_after_populate"]) is None


def test_back_to_a_configuration_superseded_meanwhile(panel):
    p = panel
    p.pages.value = 2
    p.pages.value = 1        # explored already: shown at once, the 2-page worker stops
    assert _result(p) == ("snp/v8/1/-", "userspace-converts") and not _progress_shown(p)
    p.pages.value = 2        # wanted again (the old worker may still be ending)
    assert p.wait(120)
    assert _result(p) == ("snp/v8/2/-", "userspace-converts") and not _progress_shown(p)


def test_an_error_in_the_worker_is_shown_and_logged(panel, monkeypatch, caplog):
    p = panel

    def broken(*a, **k):
        raise KeyError("huge_folios")
    monkeypatch.setattr(views, "compare", broken)   # only the exploration fails, in the worker
    with caplog.at_level(logging.ERROR, logger="gmemlab.render.widgets"):
        p.knobs["huge_folios"].value = True
        assert _progress_shown(p)
        assert p.wait(60)
    assert "gml-error" in p.status.value and "KeyError" in p.status.value and "huge_folios" in p.status.value
    assert not _progress_shown(p) and p.matrix.value == ""
    assert p.data()["error"].startswith("KeyError")
    assert any("snp/v8/1/huge_folios" in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    p.knobs["huge_folios"].value = False   # recovers on the next change (explored already)
    assert p.status.value == "" and p.error is None and _result(p) == ("snp/v8/1/-", "userspace-converts")


def test_config_key():
    assert config_key({"platform": "tdx", "series": "v7", "pages": 2,
                       "knobs": {"huge_folios": True, "allocation_failures": True}}) == \
        "tdx/v7/2/huge_folios+allocation_failures"


def test_comparison_reports_progress_and_stops_when_told():
    views._compare.cache_clear()
    calls = []
    t = views.comparison("tdx", "v7", 1, progress=lambda *a: calls.append(a))
    done = [a for a in calls if a[3]]
    assert [a[0] for a in done] == [len(c.exploration.states) for c in t.columns]   # once per proposal, at its end
    assert all(a[0] >= 1 for a in calls)
    assert views.cached_comparison("tdx", "v7", 1) is t

    class Stop(Exception):
        pass

    def stop(*a):
        raise Stop
    with pytest.raises(Stop):
        views.comparison("tdx", "v7", 1, ["huge_folios"], progress=stop)
    assert views.cached_comparison("tdx", "v7", 1, ["huge_folios"]) is None   # stopped: not cached
