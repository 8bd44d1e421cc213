"""Thread lanes (gmemlab.render.thread_lanes) over real counterexamples of interleavings:
snp, 1 page, 2 threads, with the gup_fast_no_recheck knob (GUP-fast keeps a reference
it took on a page that turned private: private_not_pinned breaks)."""

import re

import pytest

from gmemlab.explore import explore
from gmemlab.invariants import ALWAYS
from gmemlab.model.state import Config
from gmemlab.render.html import steps_html
from gmemlab.render.text import WIDTH, call_text, explore_text, outcome_text, steps_text
from gmemlab.render.thread_lanes import lanes_html, lanes_text, rows, threads_of
from gmemlab.spec import THREADS, Bounds


@pytest.fixture(scope="module")
def x():
    return explore(Config(platform="snp", gup_fast_no_recheck=True), Bounds(pages=1, interleave=2))


@pytest.fixture(scope="module")
def cxs(x):
    found = {p.name: x.counterexample(p.name) for p in ALWAYS}
    found = {k: v for k, v in found.items() if v is not None}
    assert "private_not_pinned" in found      # the knob's race
    return found


def _columns(text: str) -> tuple[list[str], dict[str, int]]:
    """The lanes' header: the threads and where each column starts."""
    head = text.split("\n")[0]
    names = head.split()
    return names, {t: head.index(t) for t in names}


def test_every_event_once_in_its_lane_in_order(cxs):
    for name, cx in cxs.items():
        text = lanes_text(cx)
        names, at = _columns(text)
        assert names == [t for t in THREADS if any(ev.get("thread") == t for ev in cx)]
        # the first line of each numbered row: its number, then its cell in one column
        starts = {}
        for line in text.split("\n")[2:]:
            m = re.match(r"(\d+) +", line)
            if m:
                starts[int(m.group(1))] = (len(m.group(0)), line[len(m.group(0)):])
        assert sorted(starts) == list(range(1, len(cx) + 1)), name
        for n, ev in enumerate(cx, 1):
            col, cell = starts[n]
            if ev.get("thread") is None:
                assert col == at[names[0]] and cell.startswith(call_text(ev).split("(")[0])
                continue
            assert col == at[ev["thread"]], (name, n, ev)
            if ev["op"] != "run":
                # the call, whole, across the cell's wrapped lines
                assert cell.startswith(ev["op"] + "(")


def test_ending_run_shows_the_outcome(cxs):
    for cx in cxs.values():
        ends = [r for r in rows(cx) if r.kind == "end"]
        assert ends, "every counterexample ends some call"
        for r in ends:
            ev = cx[r.number - 1]
            assert ev["op"] == "run" and not ev["expect"].get("pending")
            assert r.text == outcome_text(ev["expect"])
        text = lanes_text(cx)
        last = cx[-1]
        if last["op"] == "run" and not last["expect"].get("pending") and not last["expect"].get("blocked"):
            assert f"-> {outcome_text(last['expect'])}" in text


def test_steps_count_per_call(cxs):
    """A run's step number counts its thread's runs since its call began."""
    for cx in cxs.values():
        since = {}
        for r, ev in zip(rows(cx), cx):
            t = ev.get("thread")
            if t and ev["op"] != "run":
                since[t] = 0
            elif r.kind == "step" and r.text.startswith("step "):
                since[t] += 1
                assert r.text == f"step {since[t]}"


@pytest.mark.parametrize("width", [72, 60, 48])
def test_fits_the_width(cxs, width):
    for cx in cxs.values():
        text = lanes_text(cx, width)
        assert max(len(line) for line in text.split("\n")) <= width
        assert text.isascii()


def test_explore_text_draws_lanes(x, cxs):
    out = explore_text(x)
    cx = cxs["private_not_pinned"]
    drawn = steps_text(cx, "      ")
    assert drawn in out and drawn.startswith("          vmm ")
    assert max(len(line) for line in drawn.split("\n")) <= WIDTH
    assert "run() = ok" not in out          # the flat list's empty runs are gone


def test_html_escapes_and_has_one_column_per_thread(cxs):
    cx = cxs["private_not_pinned"]
    page = lanes_html(cx)
    assert page == steps_html(cx)
    assert page.count("<th") == 1 + len(threads_of(cx))
    assert "href" not in page and "src=" not in page.replace("src=NULL", "")
    # the quote in host_write(0x0, 'A') is escaped
    assert "'A'" not in page and "&#x27;A&#x27;" in page
    hostile = [dict(cx[0]), {"op": "run", "thread": "<script>", "expect": {"exception": "<b>&"}}]
    bad = lanes_html(hostile)
    assert "<script>" not in bad and "&lt;script&gt;" in bad and "&lt;b&gt;&amp;" in bad


def test_atomic_steps_unchanged():
    evs = [{"op": "create_gmem", "size": 4096, "flags": ("MMAP",), "expect": {"ret": 0}},
           {"op": "pin", "offset": 0, "size": 4096, "expect": {"ret": 0}}]
    assert steps_text(evs) == "  1. create_gmem(0x1000, MMAP) = 0\n  2. pin(0x0, 0x1000) = 0"
    assert "<ol" in steps_html(evs)


# --- the races matrix of notebook 07 (gmemlab.render.races) -----------------------------------

def test_races_matrix_kinds_and_why():
    from gmemlab.render import races as R
    r = R.explore_races(["private-first"], ["snp"], knobs=["gup_fast_no_recheck"])
    runs = {s: r.runs[("snp", "private-first", s)] for s in ("atomic", "none", "gup_fast_no_recheck")}
    # the knob's race: held atomically and interleaved without the knob, broken with it
    assert "private_not_pinned" not in runs["atomic"].broken and "private_not_pinned" not in runs["none"].broken
    assert r.kind("snp", "private-first", "gup_fast_no_recheck", "private_not_pinned") == "knob"
    assert "gup_fast_pte_range" in R.why_text(r, "snp", "private-first", "gup_fast_no_recheck", "private_not_pinned")
    cx = runs["gup_fast_no_recheck"].broken["private_not_pinned"]
    said = R.overlap_text(cx)
    assert "io's gup_fast(0x0, 0x1000)" in said and "vmm's set_attributes" in said
    page = R.counterexamples_html(r)
    assert page.count('class="gml-race"') == len(runs["gup_fast_no_recheck"].broken)
    assert page.count('class="gml-thread-lanes"') == page.count('class="gml-race"')
    data = R.race_data(r)["runs"]["snp"]["private-first"]
    assert data["gup_fast_no_recheck"]["broken"]["private_not_pinned"] == {"steps": len(cx), "kind": "knob"}


def test_races_refuse_bad_input():
    from gmemlab.errors import UsageError
    from gmemlab.render import races as R
    with pytest.raises(UsageError, match="not a race knob"):
        R.explore_races(["private-first"], ["snp"], knobs=["huge_folios"])
    with pytest.raises(UsageError):
        R.explore_races(["private-first"], ["snp"], threads=4)
