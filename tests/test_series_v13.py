"""Series v13 (the post-v8 shape), per-platform invalidation, and kvm.gmem_in_place_conversion off.

Each v13-vs-v8 difference is shown by a short event sequence through step() and through
``gmemlab check-trace`` on a trace file (data/traces/series_v13/); the engines agree on
v13; the in_place_off knob answers as the post-v8 code does; compare runs on v13.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.model import step as M
from gmemlab.model import vocab
from gmemlab.model.platforms import PLATFORMS
from gmemlab.model.series import SERIES_RECORDS
from gmemlab.model.state import GARBAGE, STALE, TE_NONE, TE_VALID, ZERO, Config, Page, VmState
from gmemlab.model.step import cause, step

import helpers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "data", "traces", "series_v13")
PS = 4096


def run(cfg: Config, events, s: VmState = VmState()):
    return helpers.run(cfg, *events, state=s)


def ev(op, **kw):
    return {"op": op, **kw}


CREATE_SHARED = ev("create_gmem", size=2 * PS, flags=("MMAP", "INIT_SHARED"))


# --- the series are data -----------------------------------------------------------

def test_every_series_has_a_record_and_the_rules_never_name_a_series():
    assert tuple(SERIES_RECORDS) == vocab.SERIES
    assert "v13" in vocab.SERIES and vocab.SERIES_INFO["v13"][2].startswith("<20260910-")
    # the semantics read features, never the series' name
    import gmemlab.model.vmm
    import gmemlab.spec
    for module in (M, gmemlab.spec, gmemlab.model.vmm):
        assert "cfg.series" not in inspect.getsource(module), module.__name__
    assert Config(series="v13").features.invalidate_scope == "range"
    assert Config(series="v8").features.invalidate_scope == "converting"


# --- v13 vs v8, through step() ----------------------------------------------------------

def _mixed_range(platform, series):
    """userspace-converts' first steps, then a conversion to shared over a mixed range."""
    cfg = Config(proposal="userspace-converts", platform=platform, series=series)
    return run(cfg, [CREATE_SHARED,
                     ev("host_write", offset=0, value=ord("K")),
                     ev("host_write", offset=PS, value=ord("L")),
                     ev("populate", offset=0, size=2 * PS, src=None),
                     ev("set_attributes", offset=0, size=PS, attributes="private", flags=()),
                     ev("set_attributes", offset=0, size=2 * PS, attributes="shared", flags=())])


@pytest.mark.parametrize("platform,released", [("snp", GARBAGE), ("tdx", ZERO)])
def test_v13_to_shared_releases_every_te_page_of_the_range(platform, released):
    s8, outs8 = _mixed_range(platform, "v8")
    s13, outs13 = _mixed_range(platform, "v13")
    assert outs8 == outs13 and outs13[-1] == {"ret": 0}
    # page 0 changed attribute: released in both series
    assert s8.pages[0].te == s13.pages[0].te == TE_NONE
    # page 1 was shared already: v8 leaves it to the TE, v13 releases it
    assert s8.pages[1].te == TE_VALID and s8.pages[1].content == ord("L")
    assert s13.pages[1].te == TE_NONE and s13.pages[1].content == released


def test_v13_to_private_touches_no_te_page():
    for series in ("v8", "v13"):
        cfg = Config(proposal="userspace-converts", platform="tdx", series=series)
        s, outs = run(cfg, [CREATE_SHARED, ev("host_write", offset=0, value=ord("K")),
                            ev("populate", offset=0, size=PS, src=None),
                            ev("set_attributes", offset=0, size=2 * PS, attributes="private", flags=())])
        assert outs[-1] == {"ret": 0}
        assert s.pages[0].te == TE_VALID and s.pages[0].content == ord("K"), series


def test_v13_populate_gets_the_folio_before_its_private_check():
    for series, allocated in (("v8", False), ("v13", True)):
        cfg = Config(platform="tdx", series=series)
        s, outs = run(cfg, [CREATE_SHARED, ev("populate", offset=PS, size=PS, src=None)])
        assert outs[-1] == {"ret": "EINVAL", "done": 0}
        p = s.pages[1]
        assert p.allocated == allocated, series
        if allocated:  # __kvm_gmem_get_pfn zeroed it
            assert p.uptodate and p.content == ZERO and p.te == TE_NONE


def test_populate_up_to_date_mark_per_series():
    # v7: populate never zeroes, and marks the folio up to date after post_populate: the
    # never-written page is measured stale. v13: zeroed in __kvm_gmem_get_pfn, no mark after.
    assert not SERIES_RECORDS["v13"].populate_marks_uptodate and SERIES_RECORDS["v7"].populate_marks_uptodate
    for series, content in (("v7", STALE), ("v8", ZERO), ("v13", ZERO)):
        cfg = Config(platform="snp", series=series)
        s, outs = run(cfg, [ev("create_gmem", size=PS, flags=("MMAP",)),
                            ev("populate", offset=0, size=PS, src=None)])
        assert outs[-1] == {"ret": 0, "done": 1}
        assert s.pages[0].uptodate and s.pages[0].content == content, series


def test_v13_outstanding_references():
    mapped = Page(allocated=True, uptodate=True, mapped=("vmm",))
    assert M._busy_mapped(mapped) == "EAGAIN" and M._busy(mapped) is None
    assert M._busy_mapped(Page(allocated=True, pins=1)) == "EAGAIN"
    # the unmap runs before the check, so a mapped-only page converts in both series
    for series in ("v8", "v13"):
        cfg = Config(platform="snp", series=series)
        s, outs = run(cfg, [CREATE_SHARED, ev("host_write", offset=0, value=1),
                            ev("pin", offset=PS, size=PS),
                            ev("set_attributes", offset=0, size=2 * PS, attributes="private", flags=()),
                            ev("set_attributes", offset=0, size=PS, attributes="private", flags=())])
        assert outs[-2] == {"ret": "EAGAIN", "error_offset": PS}
        assert outs[-1] == {"ret": 0} and s.pages[0].mapped == ()


# --- per-platform invalidation ---------------------------------------------------------

def test_what_a_zap_of_a_te_page_destroys_per_platform():
    held = Page(private=True, allocated=True, uptodate=True, content=ord("K"), te=TE_VALID)
    snp, tdx = PLATFORMS["snp"], PLATFORMS["tdx"]
    assert snp.zap_private(held) == held                      # RMP independent of the NPT
    assert snp.make_shared(held).te == TE_NONE and snp.make_shared(held).content == GARBAGE
    assert tdx.zap_private(held).te == TE_NONE and tdx.zap_private(held).content == ZERO
    assert tdx.make_shared(held) == held                       # no arch convert hook: the zap does it
    assert PLATFORMS["sw_protected"].zap_private(held) == held
    if "cca" in PLATFORMS:  # a TE platform inherits "the mapping is the ownership"
        assert PLATFORMS["cca"].zap_releases_te


# --- kvm.gmem_in_place_conversion off ------------------------------------------------

@pytest.mark.parametrize("platform,null_src,null_cause", [("snp", "EIO", "EINVAL"), ("tdx", "EOPNOTSUPP", "EOPNOTSUPP")])
def test_in_place_off(platform, null_src, null_cause):
    cfg = Config(platform=platform, series="v13", in_place_off=True)
    assert step(cfg, VmState(), CREATE_SHARED).outcome == {"ret": "EINVAL"}
    s, outs = run(cfg, [ev("create_gmem", size=2 * PS, flags=("MMAP",)),
                        ev("set_attributes", offset=0, size=PS, attributes="shared", flags=())])
    assert outs == [{"ret": 0}, {"ret": "ENOTTY"}]
    pop = ev("populate", offset=0, size=2 * PS, src=None)
    assert step(cfg, s, pop).outcome == {"ret": null_src, "done": 0}
    assert cause(cfg, s, pop) == null_cause
    s, outs = run(cfg, [ev("populate", offset=0, size=2 * PS, src="buffer", value=ord("K")), ev("finalize"),
                        ev("guest_read", offset=PS, private=True)], s)
    assert outs == [{"ret": 0, "done": 2}, {"ret": 0}, {"ok": True, "value": ord("K")}]
    # with the knob off the same calls are the in-place ones
    on = Config(platform=platform, series="v13")
    assert step(on, VmState(), CREATE_SHARED).outcome == {"ret": 0}


def test_in_place_off_keeps_init_shared_where_there_is_no_te():
    cfg = Config(platform="sw_protected", in_place_off=True)
    assert step(cfg, VmState(), CREATE_SHARED).outcome == {"ret": 0}
    assert vocab.KNOBS["in_place_off"].page_local and vocab.KNOBS["in_place_off"].flag == "--in-place-off"


def test_header_in_place_false_turns_the_knob_on_and_bad_values_name_the_line(tmp_path):
    from gmemlab.traces.format import load
    from gmemlab.traces.replay import config_for
    header, _ = load(os.path.join(TRACES, "snp_in_place_off.jsonl"))
    assert config_for(header).in_place_off and not config_for({**header, "in_place": True}).in_place_off
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "gmemlab-trace/1", "platform": "snp", "in_place": "no"}\n{"op": "finalize"}\n')
    r = subprocess.run([sys.executable, "-m", "gmemlab", "check-trace", str(bad)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and f"{bad}:1" in r.stderr and "in_place" in r.stderr
    assert "Traceback" not in r.stderr


# --- check-trace on the trace files ----------------------------------------------------

def _check(name, series, proposal="userspace-converts", *extra):
    r = subprocess.run([sys.executable, "-m", "gmemlab", "check-trace", os.path.join(TRACES, name),
                        "--proposal", proposal, "--series", series, "--json", *extra],
                       capture_output=True, text=True, cwd=ROOT)
    return r.returncode, json.loads(r.stdout)


@pytest.mark.parametrize("name,line", [("snp_mixed_range_to_shared_v13.jsonl", 8),
                                       ("tdx_mixed_range_to_shared_v13.jsonl", 9)])
def test_check_trace_tells_v13_from_v8(name, line):
    rc13, out13 = _check(name, "v13")
    rc8, out8 = _check(name, "v8")
    assert out13["conforms"] and "conversion_spares_unconverted" in {v["invariant"] for v in out13["violations"]}
    assert not out8["conforms"] and out8["divergence"]["line"] == line
    assert rc13 == rc8 == 1


def test_check_trace_in_place_off_from_the_header_and_the_flag():
    rc, out = _check("tdx_in_place_off.jsonl", "v13", "private-first")
    assert rc == 0 and out["conforms"] and not out["violations"]
    # the same trace without its header field diverges at the refused INIT_SHARED create
    text = open(os.path.join(TRACES, "tdx_in_place_off.jsonl")).read().replace('"in_place": false, ', "")
    from gmemlab.traces.format import loads
    from gmemlab.traces.replay import config_for, replay
    header, events = loads(text, "no-header-field.jsonl")
    rep = replay(config_for(header), events)
    assert not rep.conforms and rep.divergence["line"] == 2
    rep = replay(config_for(header, in_place_off=True), loads(text, "x.jsonl")[1])
    assert rep.conforms


# --- engines, explore, compare -----------------------------------------------------------

def _same(cfg, pages):
    fast = json.dumps(explore(cfg, Bounds(pages=pages), engine="fast").to_json())
    ref = json.dumps(explore(cfg, Bounds(pages=pages), engine="reference").to_json())
    assert fast == ref, cfg


@pytest.mark.parametrize("proposal", vocab.PROPOSALS)
@pytest.mark.parametrize("platform", ["snp", "tdx"])
def test_engines_agree_on_v13_with_in_place_off(proposal, platform):
    _same(Config(proposal=proposal, platform=platform, series="v13", in_place_off=True), 1)
    _same(Config(proposal=proposal, platform=platform, series="v13", in_place_off=True), 2)


@pytest.mark.parametrize("platform", ["snp", "tdx"])
def test_compare_and_explore_run_on_v13(platform):
    r = subprocess.run([sys.executable, "-m", "gmemlab", "compare", "--platform", platform, "--series", "v13",
                        "--pages", "1", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode in (0, 1), r.stderr
    table = json.loads(r.stdout)
    assert table["series"] == "v13" and table["platform"] == platform
    r = subprocess.run([sys.executable, "-m", "gmemlab", "explore", "--series", "v13", "--platform", platform,
                        "--pages", "1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode in (0, 1) and "private-first/" + platform + "/v13" in r.stdout, r.stderr
