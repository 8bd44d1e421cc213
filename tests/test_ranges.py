"""The range engine (gmemlab.traces.ranges) against the page-level replay: same Reports,
same outcomes, same final states, on random traces over small files."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gmemlab.traces.replay as page_replay
from gmemlab.invariants import ALWAYS
from gmemlab.model.state import GARBAGE, STALE, Config, Page, VmState
from gmemlab.model.vocab import PLATFORMS, PROPOSALS, SERIES
from gmemlab.model.step import step
from gmemlab.traces.format import dumps, iter_events, iter_file, loads
from gmemlab.traces.ranges import RangeEngine, RunMap
from gmemlab.traces.replay import replay, replay_ranges

PS = 4096
MAX_U64 = (1 << 64) - 1

configs = st.builds(
    Config,
    proposal=st.sampled_from(PROPOSALS),
    platform=st.sampled_from(PLATFORMS),
    series=st.sampled_from(SERIES),
    refuse_unprepared_populate=st.booleans(),
    convert_after_populate=st.booleans(),
    no_direct_map_series=st.booleans(),
    huge_folios=st.booleans(),
)


@st.composite
def ranges(draw, npages):
    """(offset, size): mostly page-aligned and inside the file (often to its end, which
    makes long runs); sometimes empty, not aligned, past the end or huge."""
    first = draw(st.integers(0, npages - 1))
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return first * PS + draw(st.sampled_from([1, PS // 2, PS - 1])), draw(st.integers(1, 3)) * PS
    if kind == 1:
        return first * PS, 0
    if kind == 2:
        return first * PS, draw(st.integers(1, npages)) * PS + draw(st.sampled_from([1, PS - 1]))
    if kind == 3:
        return draw(st.sampled_from([first, npages, npages + 1])) * PS, draw(st.sampled_from([MAX_U64, 1 << 40]))
    if kind == 4:
        return draw(st.sampled_from([MAX_U64 - PS + 1, 1 << 40, (npages + 1) * PS])), PS
    if kind == 5:
        return first * PS, (npages - first + draw(st.integers(1, 2))) * PS  # just past the end
    if kind < 11:
        return first * PS, (npages - first) * PS
    return first * PS, draw(st.integers(1, npages - first)) * PS


values = st.sampled_from([0, 65, 66])
EXPECTS = [{"ret": 0}, {"ret": "EINVAL"}, {"ret": "EAGAIN", "error_offset": PS}, {"ret": 0, "done": 2},
           {"ret": "EIO"}, {"ok": True}, {"signal": "SIGBUS"}, {"exit": "MEMORY_FAULT"},
           {"ok": True, "value": 65}, {"ok": True, "value": None}, {"ret": 0, "done": 16}]


@st.composite
def events_for(draw, cfg, npages):
    op = draw(st.sampled_from(["set_attributes"] * 5 + ["populate"] * 3 + ["pin"] * 2 + [
        "host_write", "host_read", "unpin", "punch_hole", "finalize", "guest_read", "guest_write",
        "guest_accept", "map_gpa_range", "create_gmem"]))
    ev = {"op": op, "process": draw(st.sampled_from(["vmm", "vmm", "child"]))}
    if op == "create_gmem":
        ev["size"] = draw(st.sampled_from([npages * PS, PS, 3 * PS, 0, PS + 1]))
        ev["flags"] = draw(st.sampled_from([("MMAP", "INIT_SHARED"), ("MMAP",), ("MMAP", "NO_DIRECT_MAP"), ()]))
    elif op in ("set_attributes", "pin", "unpin", "punch_hole", "populate", "guest_accept", "map_gpa_range"):
        ev["offset"], ev["size"] = draw(ranges(npages))
    elif op != "finalize":
        offset, _ = draw(ranges(npages))
        ev["offset"] = offset
    if op == "set_attributes":
        ev["attributes"] = draw(st.sampled_from(["private", "shared"]))
        flags = ()
        if cfg.series == "v5" and draw(st.integers(0, 3)) == 0:
            flags = draw(st.sampled_from([("ZERO",), ("PRESERVE",), ("ZERO", "PRESERVE")]))
        elif draw(st.integers(0, 30)) == 0:
            flags = ("PRESERVE",)
        ev["flags"] = flags
    if op in ("host_write", "guest_write"):
        ev["value"] = draw(values)
    if op in ("guest_read", "guest_write", "map_gpa_range"):
        ev["private"] = draw(st.booleans())
    if op == "populate":
        ev["src"] = draw(st.sampled_from([None, None, "buffer"]))
        if ev["src"] == "buffer":
            ev["value"] = draw(values)
    if draw(st.integers(0, 3)) == 0:
        ev["expect"] = draw(st.sampled_from(EXPECTS))
    return ev


@st.composite
def traces(draw):
    cfg = draw(configs)
    npages = draw(st.integers(1, 16))
    flags = draw(st.sampled_from([("MMAP", "INIT_SHARED")] * 3 + [("MMAP",), (), ("INIT_SHARED",),
                                                                ("MMAP", "INIT_SHARED", "NO_DIRECT_MAP")]))
    events = []
    if draw(st.integers(0, 15)):
        events.append({"op": "create_gmem", "size": npages * PS, "flags": flags, "process": "vmm"})
    events += draw(st.lists(events_for(cfg, npages), max_size=30))
    for n, ev in enumerate(events, 2):
        ev["line"] = n
    return cfg, events


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(traces())
def test_same_report_and_state(trace):
    cfg, events = trace
    a = replay(cfg, events, "t")
    b = replay_ranges(cfg, iter(events), "t")
    assert a.to_json() == b.to_json()
    assert b.state.expand() == a.state


@FAST
@given(traces())
def test_same_outcome_effects_state_at_every_step(trace):
    cfg, events = trace
    engine = RangeEngine(cfg)
    state = VmState()
    state_props = [p for p in ALWAYS if p.on_state is not None]
    for ev in events:
        state, outcome, effects = step(cfg, state, ev)
        out, eff, _ = engine.apply(ev)
        assert out == outcome, ev
        assert eff == effects, ev
        assert engine.run_state().expand() == state, ev
        assert engine.state_holds() == [p.on_state(cfg, state) for p in state_props]
        runs = list(engine.map.runs())
        assert all(x[2] != y[2] for x, y in zip(runs, runs[1:])), "neighbouring runs not merged"


pages = st.builds(Page, private=st.booleans(), allocated=st.booleans(), uptodate=st.booleans(),
                  content=st.sampled_from([0, 65, STALE, GARBAGE]), loaded=st.sampled_from([0, 65]),
                  mapped=st.sampled_from([(), ("vmm",)]), pins=st.integers(0, 1), te=st.integers(0, 2),
                  measured=st.booleans(), dmap=st.booleans())


@settings(max_examples=200, deadline=None)
@given(configs, st.lists(pages, max_size=6), st.sampled_from([frozenset(), frozenset({"NO_DIRECT_MAP"})]),
       st.booleans())
def test_state_invariants_decompose_per_page(cfg, page_list, flags, finalized):
    """What the engine's per-page counting relies on: a state invariant holds on a state
    exactly when it holds on the VM-wide fields alone and on each page alone."""
    whole = VmState(True, flags, tuple(page_list), finalized)
    for p in ALWAYS:
        if p.on_state is None:
            continue
        parts = p.on_state(cfg, whole._replace(pages=())) and all(
            p.on_state(cfg, whole._replace(pages=(pg,))) for pg in page_list)
        assert p.on_state(cfg, whole) == parts, p.name


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 64), st.integers(0, 2)), max_size=60))
def test_runmap_assign_matches_a_list(writes):
    """The blocked interval map against a plain list, with blocks small enough to split."""
    import gmemlab.traces.ranges as R
    old = R.BLOCK
    R.BLOCK = 4
    try:
        vals = [Page(content=c) for c in range(3)]
        ref = [vals[0]] * 64
        m = RunMap(64, vals[0])
        for a, length, v in writes:
            e = min(64, a + length)
            ref[a:e] = [vals[v]] * (e - a)
            m.assign(a, e, [(a, vals[v])])
            assert list(m.expand()) == ref
            runs = list(m.runs())
            assert all(x[2] != y[2] for x, y in zip(runs, runs[1:]))
            assert [m.page(i) for i in range(64)] == ref
    finally:
        R.BLOCK = old


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 8), st.integers(0, 2), st.booleans()),
                max_size=80))
def test_runmap_set_page_matches_a_list(writes):
    """RunMap.set_page (the range engine's one-page write-back) against a plain list,
    mixed with assign(), with blocks small enough to split and shrink."""
    import gmemlab.traces.ranges as R
    old = R.BLOCK
    R.BLOCK = 4
    try:
        vals = [Page(content=c) for c in range(3)]  # one object per value, as _canon keeps them
        ref = [vals[0]] * 64
        m = RunMap(64, vals[0])
        for a, length, v, one in writes:
            if one:
                ref[a] = vals[v]
                m.set_page(a, vals[v])
            else:
                e = min(64, a + length)
                ref[a:e] = [vals[v]] * (e - a)
                m.assign(a, e, [(a, vals[v])])
            assert list(m.expand()) == ref
            runs = list(m.runs())
            assert all(x[2] != y[2] for x, y in zip(runs, runs[1:]))
            assert [m.page(i) for i in range(64)] == ref
    finally:
        R.BLOCK = old


def _big_trace(npages):
    h = {"format": "gmemlab-trace/1", "platform": "snp", "series": "v8", "page_size": PS}
    evs = [{"op": "create_gmem", "size": npages * PS, "flags": ("MMAP", "INIT_SHARED")},
           {"op": "host_write", "offset": 7 * PS, "value": 65},
           {"op": "pin", "offset": 9 * PS, "size": PS},
           {"op": "set_attributes", "offset": 0, "size": npages * PS, "attributes": "private", "flags": (),
            "expect": {"ret": "EAGAIN", "error_offset": 9 * PS}},
           {"op": "unpin", "offset": 9 * PS, "size": PS},
           {"op": "set_attributes", "offset": 0, "size": npages * PS, "attributes": "private", "flags": ()},
           {"op": "populate", "offset": 0, "size": 16 * PS, "src": None, "expect": {"ret": 0, "done": 16}},
           {"op": "finalize"},
           {"op": "guest_read", "offset": 7 * PS, "private": True, "expect": {"ok": True, "value": 65}},
           {"op": "guest_read", "offset": 8 * PS, "private": True, "expect": {"ok": True, "value": 0}},
           {"op": "map_gpa_range", "offset": 4 * PS, "size": 2 * PS, "private": False},
           {"op": "set_attributes", "offset": 4 * PS, "size": 2 * PS, "attributes": "shared", "flags": ()},
           {"op": "pin", "offset": 4 * PS, "size": 2 * PS},
           {"op": "set_attributes", "offset": 0, "size": npages * PS, "attributes": "private", "flags": ()},
           {"op": "populate", "offset": (npages - 2) * PS, "size": 4 * PS, "src": None, "expect": {"ret": 0}}]
    return dumps(h, evs)


def test_check_trace_uses_runs_for_large_files(tmp_path):
    text = _big_trace(5000)
    header, events = loads(text, "big")
    cfg = page_replay.config_for(header)
    auto = replay(cfg, events, "big")
    assert type(auto.state).__name__ == "RunState"
    pages = replay(cfg, events, "big", engine="pages")
    assert auto.to_json() == pages.to_json()
    assert auto.state.expand() == pages.state
    # A range past the end of the file is no argument error (kvm_gmem_populate clamps it to
    # the memslot); this one comes after finalize, which SNP answers with EIO.
    assert auto.divergence == {"line": 16, "op": "populate", "expected": {"ret": 0},
                               "predicted": {"ret": "EIO", "done": 0}}
    # streaming from a file gives the same events
    path = tmp_path / "big.jsonl"
    path.write_text(text)
    assert list(iter_file(str(path))) == list(iter_events(text, str(path)))


def test_handover_mid_trace_keeps_what_was_judged():
    small = [{"op": "create_gmem", "size": 2 * PS, "flags": ("MMAP", "INIT_SHARED")},
             {"op": "pin", "offset": 0, "size": PS},
             {"op": "populate", "offset": 0, "size": 2 * PS, "src": None}]
    cfg = Config(proposal="userspace-converts", platform="snp")
    big = [{"op": "create_gmem", "size": 8192 * PS, "flags": ("MMAP", "INIT_SHARED")},
           {"op": "pin", "offset": 0, "size": PS}, {"op": "populate", "offset": 0, "size": 2 * PS, "src": None}]
    evs = [dict(ev, line=n, process="vmm") for n, ev in enumerate(small + big, 2)]
    a = replay(cfg, evs)
    b = replay_ranges(cfg, evs)
    assert a.to_json() == b.to_json()
    assert [v["line"] for v in a.violations] == [4, 4, 4, 7, 7, 7]


def test_guest_scale_file_stays_small():
    cfg = Config(platform="tdx")
    eng = RangeEngine(cfg)
    n = 1 << 24
    eng.apply({"op": "create_gmem", "size": n * PS, "flags": ("MMAP", "INIT_SHARED"), "process": "vmm"})
    for i in range(0, 1 << 20, 512):
        out, _, _ = eng.apply({"op": "set_attributes", "offset": i * PS * 8, "size": 512 * PS,
                               "attributes": "private", "flags": ()})
        assert out == {"ret": 0}
    assert eng.runs == 4096
    out, _, _ = eng.apply({"op": "set_attributes", "offset": 0, "size": n * PS, "attributes": "private",
                           "flags": ()})
    assert out == {"ret": 0} and eng.runs == 1
