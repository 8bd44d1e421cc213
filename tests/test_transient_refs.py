"""The transient_refs knob: a reference nobody holds on purpose (a new folio's LRU batch),
counted by the refcount check before v13, drained by v13's, dropped by lru_drain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.explore.recovery import vmm_recovers
from gmemlab.model.events import event
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import step
from gmemlab.spec import Spec, thread_of

PS = 4096


def _run(cfg, evs):
    s, outs = VmState(), []
    for ev in evs:
        r = step(cfg, s, ev)
        s = r.state
        outs.append(r.outcome)
    return s, outs


WRITE_THEN_CONVERT = [event("create_gmem", size=PS, flags=("MMAP", "INIT_SHARED")),
                      event("host_write", offset=0, value=65),
                      event("set_attributes", offset=0, size=PS, attributes="private", flags=())]


@pytest.mark.parametrize("series", ["v5", "v7", "v8"])
def test_before_v13_the_batch_reference_fails_the_conversion_until_a_drain(series):
    cfg = Config(platform="snp", series=series, transient_refs=True)
    s, outs = _run(cfg, WRITE_THEN_CONVERT[:2])
    assert s.pages[0].lru and s.pages[0].pins == 0       # nobody pinned it
    s, outs = _run(cfg, WRITE_THEN_CONVERT[:3])
    assert outs[-1] == {"ret": "EAGAIN", "error_offset": 0}
    assert not s.pages[0].private and s.pages[0].mapped == ()   # unmapped first, as with a pin
    r = step(cfg, s, event("lru_drain"))
    assert r.outcome == {"ok": True} and not r.state.pages[0].lru
    r = step(cfg, r.state, WRITE_THEN_CONVERT[2])
    assert r.outcome == {"ret": 0} and r.state.pages[0].private


def test_v13_drains_the_batches_itself_and_without_the_knob_there_are_none():
    for cfg in (Config(platform="snp", series="v13", transient_refs=True), Config(platform="snp", series="v8")):
        s, outs = _run(cfg, WRITE_THEN_CONVERT)
        assert outs[-1] == {"ret": 0} and not any(p.lru for p in s.pages)
    # an lru_drain with nothing in a batch changes nothing
    s, _ = _run(Config(platform="snp"), WRITE_THEN_CONVERT[:2])
    r = step(Config(platform="snp"), s, event("lru_drain"))
    assert r.state == s and r.outcome == {"ok": True}


def test_huge_folios_skip_the_batches_and_a_punch_frees_the_reference():
    s, _ = _run(Config(platform="snp", transient_refs=True, huge_folios=True), WRITE_THEN_CONVERT[:2])
    assert not s.pages[0].lru
    cfg = Config(platform="snp", transient_refs=True)
    s, _ = _run(cfg, WRITE_THEN_CONVERT[:2] + [event("punch_hole", offset=0, size=PS)])
    assert not s.pages[0].allocated and not s.pages[0].lru


def test_the_explorer_drains_and_every_engine_agrees():
    cfg = Config(platform="snp", series="v8", transient_refs=True)
    assert event("lru_drain") in Spec(cfg, Bounds(pages=1)).actions
    assert event("lru_drain") not in Spec(Config(platform="snp"), Bounds(pages=1)).actions
    fast = explore(cfg, Bounds(pages=2), engine="fast").to_json()
    ref = explore(cfg, Bounds(pages=2), engine="reference").to_json()
    assert fast == ref
    plain = explore(Config(platform="snp", series="v8"), Bounds(pages=2)).to_json()
    assert fast["states"] > plain["states"]
    assert ({k: v["holds"] for k, v in fast["invariants"].items()}
            == {k: v["holds"] for k, v in plain["invariants"].items()})


def test_with_threads_the_io_thread_drains_and_the_reduction_agrees():
    assert thread_of("lru_drain", 1) == "vmm" and thread_of("lru_drain", 2) == "io"
    cfg = Config(platform="sw_protected", series="v8", transient_refs=True)
    red = explore(cfg, Bounds(pages=1, interleave=2)).to_json()
    full = explore(cfg, Bounds(pages=1, interleave=2, reduce=False)).to_json()
    assert ({k: v["holds"] for k, v in red["invariants"].items()}
            == {k: v["holds"] for k, v in full["invariants"].items()})
    assert red["states"] <= full["states"]


def test_populate_converts_on_snp_v8_gives_up_with_no_pin_taken():
    """The finding: the VMM writes the image (a new folio, in a batch), populate converts,
    the check counts the batch's reference, and LAUNCH_UPDATE says EIO, which the VMM
    cannot tell from a fatal error. Without the knob it takes another process's pin."""
    r = vmm_recovers(Config(proposal="populate-converts", platform="snp", series="v8", transient_refs=True),
                     Bounds(pages=1))
    assert not r.holds and r.gives_up_on == "populate EIO"
    assert [actor for actor, _ in r.steps] == ["vmm", "vmm", "vmm"]
    assert [ev["op"] for _, ev in r.steps] == ["create_gmem", "host_write", "populate"]
    without = vmm_recovers(Config(proposal="populate-converts", platform="snp", series="v8"), Bounds(pages=1))
    assert "other" in [actor for actor, _ in without.steps]
    for p in ("private-first", "userspace-converts"):
        assert vmm_recovers(Config(proposal=p, platform="snp", series="v8", transient_refs=True),
                            Bounds(pages=1)).holds
    # tdx: the error is EAGAIN, which the VMM retries, and the batches drain
    assert vmm_recovers(Config(proposal="populate-converts", platform="tdx", series="v8", transient_refs=True),
                        Bounds(pages=1)).holds


def test_check_trace_takes_the_knob(tmp_path):
    trace = tmp_path / "lru.jsonl"
    lines = [{"format": "gmemlab-trace/1", "platform": "snp", "series": "v8", "page_size": PS,
              "source": "scenario", "description": "a new folio's LRU batch reference"},
             {"op": "create_gmem", "size": PS, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}},
             {"op": "host_write", "offset": 0, "value": "A", "expect": {"ok": True}},
             {"op": "set_attributes", "offset": 0, "size": PS, "attributes": "private",
              "expect": {"ret": "EAGAIN", "error_offset": 0}},
             {"op": "lru_drain", "expect": {"ok": True}},
             {"op": "set_attributes", "offset": 0, "size": PS, "attributes": "private", "expect": {"ret": 0}}]
    trace.write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def gm(*args):
        return subprocess.run([sys.executable, "-m", "gmemlab", *args], capture_output=True, text=True, env=env)
    r = gm("check-trace", "--transient-refs", str(trace))
    assert r.returncode == 0, r.stdout + r.stderr
    r = gm("check-trace", str(trace))          # without the knob nothing holds the page
    assert r.returncode == 1 and "diverges at line 4" in r.stdout
