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
from gmemlab.render.thread_lanes import lanes_html, lanes_text, rows, threads_of, unrun
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
        left = set(unrun(cx))
        assert sorted(starts) == [n for n in range(1, len(cx) + 1) if n not in left], name
        for n, ev in enumerate(cx, 1):
            if n in left:
                continue
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
            note = ev.get("note")
            assert r.text == outcome_text(ev["expect"]) + (f" ({note})" if note else "")
        text = lanes_text(cx)
        last = cx[-1]
        if last["op"] == "run" and not last["expect"].get("pending") and not last["expect"].get("blocked"):
            assert f"-> {outcome_text(last['expect'])}" in text


def test_steps_count_per_call(cxs):
    """A run's step number counts its thread's runs since its call began."""
    for cx in cxs.values():
        since = {}
        for r in rows(cx):
            ev = cx[r.number - 1]
            t = ev.get("thread")
            if t and ev["op"] != "run":
                since[t] = 0
            elif r.kind == "step" and r.text.startswith("step "):
                since[t] += 1
                assert r.text.split(":")[0] == f"step {since[t]}"


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


def test_html_cells_say_their_alignment(cxs):
    """A notebook's stylesheet right-aligns table cells: every cell of the lanes says its
    alignment inline, and the event of no thread is a labelled row of its own."""
    for cx in cxs.values():
        page = lanes_html(cx)
        cells = re.findall(r"<t[dh]\b[^>]*>", page)
        assert len(cells) > len(cx)
        for cell in cells:
            assert re.search(r'style="[^"]*text-align:(left|right)', cell), cell
        lane_cells = re.findall(r"<td\b[^>]*>", page)
        assert sum("text-align:left" in c for c in lane_cells) == sum("text-align:right" not in c for c in lane_cells)
        atomic = [ev for ev in cx if not ev.get("thread")]
        assert page.count('colspan="') == len(atomic) and page.count("no thread:") == len(atomic)


def _gup_fast_race():
    """The counterexample of the issue: snp, private-first, 1 page, 2 threads, no re-check.
    Its event 12 begins a second set_attributes that takes no step before the end."""
    x = explore(Config(platform="snp", proposal="private-first", gup_fast_no_recheck=True),
                Bounds(pages=1, interleave=2))
    return x.counterexample("private_not_pinned")


def test_calls_begun_and_never_run_are_left_out_of_the_lanes():
    from gmemlab.render import races as R
    from gmemlab.traces.format import loads
    from gmemlab.traces.replay import config_for, replay
    from gmemlab.render.views import trace_text
    cx = _gup_fast_race()
    assert unrun(cx) == [12] and cx[11]["op"] == "set_attributes" and cx[11]["thread"] == "vmm"
    assert not any(ev.get("thread") == "vmm" and ev["op"] == "run" for ev in cx[12:])
    text = lanes_text(cx)
    numbered = [int(m.group(1)) for m in re.finditer(r"^(\d+) ", text, re.M)]
    assert numbered == [n for n in range(1, len(cx) + 1) if n != 12]
    assert text.count("set_attributes(") == 2      # the one that runs, and the note's
    note = " ".join(text.split("\n")[-4:])
    assert "Left out: vmm's set_attributes(0x0, 0x1000, private) (row 12)" in note
    assert "begun, never run: no step of it comes before the counterexample ends" in note
    page = lanes_html(cx)
    assert page.count('class="gml-unrun"') == 1 and page.count(">12</td>") == 0
    # the overlaps run from each call's first step; the unrun call is in none of them
    assert R.overlap_text(cx) == ("vmm's set_attributes(0x0, 0x1000, private) (steps 6-11) overlaps "
                                  "io's gup_fast(0x0, 0x1000) (steps 8-14).")
    # the counterexample itself is unchanged: it still replays, and breaks the invariant
    header, events = loads(trace_text(Config(platform="snp"), cx, "the gup_fast_no_recheck race"))
    assert len(events) == len(cx)
    rep = replay(config_for(header, "private-first", gup_fast_no_recheck=True), events)
    assert rep.conforms and "private_not_pinned" in {v["invariant"] for v in rep.violations}


def test_no_note_when_every_call_runs(cxs):
    for cx in cxs.values():
        if not unrun(cx):
            assert "Left out" not in lanes_text(cx) and "gml-unrun" not in lanes_html(cx)


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


def test_races_headline_one_page_note_and_assumptions():
    """07's summary line is derived from its runs; at one page the populate_holds_lock column
    repeats "none", and the matrix says so; the assumptions come from model.assumptions."""
    from gmemlab.model.assumptions import ASSUMPTIONS
    from gmemlab.render import races as R
    r = R.explore_races(["private-first"], ["snp"], knobs=["gup_fast_no_recheck", "populate_holds_lock"])
    runs = {s: r.runs[("snp", "private-first", s)] for s in ("none", "populate_holds_lock")}
    assert runs["none"].broken.keys() == runs["populate_holds_lock"].broken.keys()
    assert runs["none"].states == runs["populate_holds_lock"].states
    said = R.headline(r)
    assert said.startswith("With no race knob on, no interleaving breaks an invariant the atomic calls keep")
    assert "gup_fast_no_recheck breaks private_not_pinned" in said and "populate_holds_lock breaks nothing" in said
    assert R.race_summary(r).startswith(R.wrap(said, ""))
    note = R.one_page_note(r)
    assert "necessarily the same" in note and "the runs agree" in note
    assert 'class="gml-one-page"' in R.matrix_html(r)
    page = R.assumptions_html()
    for name in ("A-speculative-ref", "A-guest-fault-waits"):
        assert name in page and R.esc(ASSUMPTIONS[name]) in page


def test_the_explorer_names_each_step_from_the_model(cxs):
    """Every run that takes a step of a call carries in its note what the kernel does
    there (threads.step_name): a plan's phase, populate's page, GUP-fast's look; the
    lanes show it; and a knob that changes a step changes its name."""
    from gmemlab.model import threads
    named = 0
    for cx in cxs.values():
        for r in rows(cx):
            ev = cx[r.number - 1]
            if r.kind == "step" and ev["op"] == "run":   # a step of a call of several
                assert ev.get("note"), (r, ev)
                assert ev["note"] in r.text
                named += 1
            elif r.kind == "end" and ev.get("note"):
                assert ev["note"] in r.text
    assert named
    notes = {ev.get("note") for cx in cxs.values() for ev in cx}
    assert {"unmap", "reference check", threads.GUP_FAST_STEPS[0]} <= notes, notes


def test_a_step_name_follows_the_knob():
    from gmemlab.explore import Bounds, explore
    from gmemlab.model.state import Config
    names = {}
    for knob in (False, True):
        x = explore(Config(platform="sw_protected", gup_fast_no_recheck=knob), Bounds(pages=1, interleave=2))
        cx = x.counterexample("private_not_pinned")
        names[knob] = {ev.get("note") for ev in cx or ()}
    assert "keep the reference (no second look)" in names[True]
    assert "keep the reference (no second look)" not in names[False]
