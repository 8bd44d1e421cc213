"""One model, one checker: every replay in gmemlab is a fold over gmemlab.traces.walk.

check-trace's Report, the memory-map lanes and the conformance coverage must say the
same thing about a trace as walk does (they used to disagree on a trace that observed
ENOMEM); events are Events (immutable, hashable), and what the reader reads the writer
writes back byte for byte."""

import copy
import glob
import os
import pickle
from collections import Counter

import pytest

from gmemlab.model.events import Event, InvalidEvent, event, from_json
from gmemlab.model.state import Config
from gmemlab.model.vocab import PROPOSALS
from gmemlab.render.lanes import compute, lanes_text
from gmemlab.render.views import LANE_PAGES, _outcome_kind, conformance
from gmemlab.traces.format import dumps, load, loads
from gmemlab.traces.replay import CHECKED, config_for, outcome_json, replay
from gmemlab.traces.walk import trace_of, walk, walk_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
TRACES = sorted(glob.glob(os.path.join(DATA, "traces", "**", "*.jsonl"), recursive=True))
EMULATED = sorted(glob.glob(os.path.join(DATA, "emulated", "*.jsonl")))
EVERY = sorted(glob.glob(os.path.join(DATA, "**", "*.jsonl"), recursive=True))
BOOT_EVENTS = 150  # the emulated guest boots, cut to their first events


def _largest(events, cfg) -> int:
    return max((ev["size"] // cfg.page_size for ev in events if ev["op"] == "create_gmem"), default=0)


ENOMEM_TRACE = "\n".join([
    '{"format": "gmemlab-trace/1", "platform": "tdx"}',
    '{"op": "create_gmem", "size": 16384, "flags": ["MMAP", "INIT_SHARED"]}',
    '{"op": "host_write", "offset": 0, "value": "A", "expect": {"ok": true}}',
    '{"op": "set_attributes", "offset": 0, "size": 16384, "attributes": "private", "flags": [],'
    ' "expect": {"ret": "ENOMEM", "error_offset": 0}}',
    '{"op": "host_read", "offset": 0, "expect": {"ok": true, "value": "A"}}',
]) + "\n"


def test_observed_enomem_check_trace_and_lanes_agree(tmp_path):
    header, events = loads(ENOMEM_TRACE, "enomem.jsonl")
    cfg = config_for(header)
    report = replay(cfg, events, "enomem.jsonl")
    assert report.ok and report.events == 4
    lanes = compute(cfg, events, by_line=True)
    # the conversion fails as observed, the page stays shared and the host reads it
    assert lanes.outcomes[2] == {"ret": "ENOMEM", "error_offset": 0}
    assert lanes.outcomes[3] == {"ok": True, "value": 65}
    assert not any("signal" in o for o in lanes.outcomes)
    assert [s.pages[0].private for s in lanes.states] == [False] * 4
    assert "P" not in lanes_text(lanes).split("attribute")[1].splitlines()[0]
    # the walk itself, on pages and on runs
    for engine in ("pages", "ranges"):
        steps = list(walk(cfg, events, engine=engine))
        assert [st.outcome for st in steps] == lanes.outcomes
        assert steps[2].event["fail"] == "ENOMEM" and not any(st.diverged for st in steps)
    # the conformance coverage counts the failure, not a success
    path = tmp_path / "enomem.jsonl"
    path.write_text(ENOMEM_TRACE)
    c = conformance([str(path)])
    assert c.outcomes[("set_attributes", "ENOMEM")] == 1 and c.outcomes[("set_attributes", "0")] == 0
    assert c.outcomes[("host_read", "ok")] == 1 and c.verdicts() == {"enomem.jsonl": "conforms"}


def _cases():
    out = []
    for path in TRACES + EMULATED:
        for proposal in PROPOSALS:
            out.append((path, proposal))
    return out


def _report_from_steps(steps) -> dict:
    """The Report check-trace must give, written from the Steps alone."""
    div = next((st for st in steps if st.diverged), None)
    return {"conforms": div is None,
            "divergence": None if div is None else {
                "line": div.line, "op": div.event["op"],
                "expected": outcome_json({k: v for k, v in div.expected.items() if k in CHECKED}),
                "predicted": outcome_json(div.outcome)},
            "violations": [{"invariant": name, "line": st.line} for st in steps for name in st.broken],
            "events": len(steps)}


@pytest.mark.parametrize("path,proposal", _cases(),
                         ids=[f"{os.path.relpath(p, DATA)}:{q}" for p, q in _cases()])
def test_every_consumer_agrees_with_walk(path, proposal):
    header, events = load(path)
    cfg = config_for(header, proposal)
    big = _largest(events, cfg) > LANE_PAGES
    if big:
        events = events[:BOOT_EVENTS]
    steps = list(walk(cfg, events))
    assert [st.line for st in steps] == [ev["line"] for ev in events]
    # check-trace
    assert replay(cfg, events, path).to_json() == _report_from_steps(steps)
    # the page-level path and the runs give the same steps (for the guest boots, where
    # walk is on runs, the page path is what the lanes show)
    other = list(walk(cfg, events, engine="pages" if big else "ranges"))
    assert [(st.outcome, st.broken, st.diverged, st.effects) for st in other] == \
           [(st.outcome, st.broken, st.diverged, st.effects) for st in steps]
    page_steps = other if big else steps
    # the lanes
    lanes = compute(cfg, events)
    assert lanes.outcomes == [st.outcome for st in page_steps]
    assert lanes.broken == [list(st.broken) for st in page_steps]
    assert lanes.states == [st.post for st in page_steps]


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_noteworthy_walk_yields_the_steps_that_diverge_or_break(proposal):
    # check-trace folds over walk(noteworthy=True): the same Steps as the full walk keeps
    # of those that diverged or broke an invariant, and every event counted, on both paths.
    for path in TRACES + EMULATED:
        header, events = load(path)
        cfg = config_for(header, proposal)
        for engine in ("pages", "ranges") if _largest(events, cfg) <= LANE_PAGES else ("ranges",):
            full = [st for st in walk(cfg, events, engine=engine) if st.diverged or st.broken]
            w = walk(cfg, events, engine=engine, noteworthy=True)
            noteworthy = list(w)
            assert w.events == len(events), path
            assert [(st.line, st.outcome, st.broken, st.diverged, st.expected, st.effects) for st in noteworthy] == \
                   [(st.line, st.outcome, st.broken, st.diverged, st.expected, st.effects) for st in full], path


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_conformance_coverage_agrees_with_walk(proposal):
    c = conformance([os.path.join(DATA, "traces"), os.path.join(DATA, "emulated")], proposal)
    outcomes = Counter()
    for r in c.results:
        steps = list(walk(r.config, r.events))
        assert r.report.to_json() == _report_from_steps(steps), r.name
        if _largest(r.events, r.config) <= LANE_PAGES:
            outcomes.update((st.event["op"], _outcome_kind(st.outcome)) for st in steps)
    assert +c.outcomes == outcomes


def test_walk_is_lazy_and_its_state_follows():
    cfg = Config(platform="snp")
    seen = []

    def events():
        yield event("create_gmem", size=8192, flags=("MMAP", "INIT_SHARED"))
        seen.append(len(w.state.pages))
        yield event("set_attributes", offset=0, size=4096, attributes="private")
        seen.append(w.state.pages[0].private)

    w = walk(cfg, events())
    steps = list(w)
    assert seen == [2, True] and len(steps) == 2 and w.state is steps[-1].post
    assert not w.on_runs


def test_walk_hands_over_to_runs_on_a_large_file():
    cfg = Config(platform="snp")
    evs = [event("create_gmem", size=2 * 4096, flags=("MMAP", "INIT_SHARED"), line=2),
           event("pin", offset=0, size=4096, line=3),
           event("create_gmem", size=8192 * 4096, flags=("MMAP", "INIT_SHARED"), line=4),
           event("pin", offset=0, size=4096, line=5),
           event("set_attributes", offset=0, size=8192 * 4096, attributes="private", line=6)]
    w = walk(cfg, evs)
    steps = list(w)
    assert w.on_runs and w.state.npages == 8192
    assert steps[-1].outcome == {"ret": "EAGAIN", "error_offset": 0}
    assert [st.outcome for st in steps] == [st.outcome for st in walk(cfg, evs, engine="pages")]
    with pytest.raises(ValueError):
        walk(cfg, evs, engine="fast")


def test_walk_events_gives_the_models_trace():
    cfg = Config(platform="tdx")
    evs = [{"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"]},
           {"op": "set_attributes", "offset": 0, "size": 8192, "attributes": "private", "fail": "ENOMEM"},
           {"op": "host_read", "offset": 0}]
    out = walk_events(cfg, evs)
    assert all(type(e) is Event for e in out)
    assert [e["expect"] for e in out] == [{"ret": 0}, {"ret": "ENOMEM", "error_offset": 0}, {"ok": True, "value": 0}]
    assert "fail" not in out[1] and out[0]["flags"] == ("MMAP", "INIT_SHARED")
    # replaying the model's own trace conforms, the failure coming back from "expect"
    assert replay(cfg, [e.replace(line=n) for n, e in enumerate(out, 2)]).ok
    assert trace_of(walk(cfg, out)) == out


# --- the Event -------------------------------------------------------------------------

def test_event_is_immutable_hashable_and_equal_by_fields():
    a = event("set_attributes", offset=0, size=4096, attributes="private", expect={"ret": 0})
    b = from_json({"op": "set_attributes", "offset": 0, "size": 4096, "attributes": "private",
                   "flags": [], "expect": {"ret": 0}})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a == dict(a) and dict(a) == a and {a: 1}[b] == 1
    assert a != a.replace(size=8192) and a.replace(size=8192)["size"] == 8192 and a["size"] == 4096
    assert "flags" not in a.without("flags") and "flags" in a
    assert a.replace(expect=None) == a.without("expect")
    for change in (lambda: a.__setitem__("size", 1), lambda: a.__delitem__("op"), lambda: a.update(size=1),
                   lambda: a.pop("op"), lambda: a.popitem(), lambda: a.clear(), lambda: a.setdefault("x", 1)):
        with pytest.raises(TypeError):
            change()
    with pytest.raises(TypeError):
        c = a
        c |= {"size": 1}
    assert a["size"] == 4096
    for other in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
        assert type(other) is Event and other == a and hash(other) == hash(a)
    assert repr(a).startswith("Event({'op': 'set_attributes'")


def test_event_refuses_what_the_schema_refuses():
    with pytest.raises(ValueError):
        event("poke")
    with pytest.raises(ValueError):
        event("pin", offset=0)
    with pytest.raises(InvalidEvent, match="0..255"):
        from_json({"op": "host_write", "offset": 0, "value": 256})
    assert issubclass(InvalidEvent, ValueError)


# --- read, write, read ---------------------------------------------------------------------

@pytest.mark.parametrize("path", EVERY, ids=[os.path.relpath(p, DATA) for p in EVERY])
def test_every_data_trace_round_trips_byte_for_byte(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    header, events = loads(text, path)
    assert all(type(ev) is Event for ev in events)
    # comment lines are for readers of the file, not part of the trace
    lines = [line for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#")]
    assert dumps(header, events) == "\n".join(lines) + "\n"
    assert [ev.without("line") for ev in loads(dumps(header, events), path)[1]] == \
           [ev.without("line") for ev in events]
