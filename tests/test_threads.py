"""Interleavings (gmemlab.model.threads, Bounds.interleave): calls in steps at the kernel's
lock boundaries, made by threads whose steps run in every order.

- One thread making every call reproduces every verdict of the atomic model.
- The partial-order reduction (Spec.ample) agrees with the unreduced search: the same
  verdicts, the same states once the threads' slots are set aside, counterexamples as
  long (begins left out: they are the invisible steps the reduction moves).
- The races the designers ask about: GUP-fast that does not read the page table again,
  a reference check before the unmap; each breaks private_not_pinned, and its
  counterexample replays through check-trace as it was found.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.invariants import INVARIANT_NAMES
from gmemlab.model.events import event, from_json
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import step
from gmemlab.model.vocab import PLATFORMS, PROPOSALS
from gmemlab.traces.format import dumps
from gmemlab.traces.replay import config_for, replay


def _verdicts(x) -> dict:
    return {n: x.holds(n) for n in INVARIANT_NAMES}


def _visible_length(cx) -> int:
    """Steps of a counterexample but the begins (a call event of a thread)."""
    return sum(1 for e in cx if not ("thread" in e and e["op"] != "run"))


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("proposal", PROPOSALS)
def test_one_thread_gives_the_atomic_verdicts(proposal, platform):
    cfg = Config(proposal=proposal, platform=platform, series="v8")
    assert _verdicts(explore(cfg, Bounds(pages=1, interleave=1))) == _verdicts(explore(cfg, Bounds(pages=1)))


@pytest.mark.parametrize("series", ["v7", "v13"])
def test_one_thread_gives_the_atomic_verdicts_at_two_pages(series):
    cfg = Config(proposal="private-first", platform="sw_protected", series=series)
    a, b = explore(cfg, Bounds(pages=2)), explore(cfg, Bounds(pages=2, interleave=1))
    assert _verdicts(a) == _verdicts(b)


def _projection(x) -> set:
    return {s._replace(threads=(), lock="") for s in x.states}


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("proposal,platform,knobs", [
    ("private-first", "snp", {}), ("userspace-converts", "snp", {}),
    ("populate-converts", "tdx", {"gup_fast_no_recheck": True}),
    ("private-first", "sw_protected", {"check_before_unmap": True})])
def test_the_reduction_agrees_with_the_unreduced_search(proposal, platform, knobs, threads):
    if threads == 3 and platform != "sw_protected":
        pytest.skip("3 threads on a TE platform: covered by the sw_protected case (seconds, not minutes)")
    cfg = Config(proposal=proposal, platform=platform, **knobs)
    red = explore(cfg, Bounds(pages=1, interleave=threads))
    full = explore(cfg, Bounds(pages=1, interleave=threads, reduce=False))
    assert len(red.states) < len(full.states)                      # it reduces
    assert _verdicts(red) == _verdicts(full)
    assert _projection(red) == _projection(full)
    for name in INVARIANT_NAMES:
        a, b = red.counterexample(name), full.counterexample(name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert _visible_length(a) == _visible_length(b), name


@pytest.mark.parametrize("knob", ["gup_fast_no_recheck", "check_before_unmap"])
@pytest.mark.parametrize("proposal", ["private-first", "userspace-converts"])
def test_a_race_knob_breaks_private_not_pinned(proposal, knob):
    base = explore(Config(proposal=proposal, platform="snp"), Bounds(pages=1, interleave=2))
    x = explore(Config(proposal=proposal, platform="snp", **{knob: True}), Bounds(pages=1, interleave=2))
    assert base.holds("private_not_pinned") and not x.holds("private_not_pinned")
    cx = x.counterexample("private_not_pinned")
    assert {e.get("thread") for e in cx[1:]} == {"vmm", "io"}      # a race of two threads
    # the counterexample replays through check-trace as found
    header = {"format": "gmemlab-trace/1", "platform": "snp", "series": "v8", "page_size": 4096,
              "source": "emulated"}
    text = dumps(header, cx)
    events = [from_json(json.loads(line), k) for k, line in enumerate(text.splitlines()[1:], 2)]
    report = replay(config_for(header, proposal, **{knob: True}), events)
    assert report.conforms
    assert any(v["invariant"] == "private_not_pinned" for v in report.violations)


def _s(cfg, s, **ev):
    r = step(cfg, s, event(**ev))
    return r.state, r.outcome


def _started(cfg):
    s = step(cfg, VmState(), event("create_gmem", size=4096, flags=("MMAP", "INIT_SHARED"))).state
    s = step(cfg, s, event("host_write", offset=0, value=65)).state        # mapped by the vmm process
    s, out = _s(cfg, s, op="set_attributes", offset=0, size=4096, attributes="private", thread="vmm")
    assert out == {"pending": True}
    s, out = _s(cfg, s, op="gup_fast", offset=0, size=4096, thread="io")
    return s


def _run(cfg, s, *threads):
    outs = []
    for t in threads:
        s, out = _s(cfg, s, op="run", thread=t)
        outs.append(out)
    return s, outs


def test_gup_fast_before_the_check_makes_the_conversion_fail():
    cfg = Config(platform="snp")
    # io reads the entry and takes its reference before vmm's unmap and check
    s, outs = _run(cfg, _started(cfg), "vmm", "io", "io", "io", "vmm", "vmm", "vmm")
    assert outs[3] == {"ret": 0}                                        # the pin, kept
    assert outs[-1] == {"ret": "EAGAIN", "error_offset": 0}             # the reference check
    assert not s.pages[0].private and s.pages[0].pins == 1 and s.threads == () and s.lock == ""


def test_gup_fast_across_the_conversion_drops_its_reference():
    cfg = Config(platform="snp")
    # io reads the entry; vmm unmaps, checks (no reference yet) and converts; io takes
    # its reference on the folio, reads the entry again: gone, so it drops it and pins
    # through the slow path, which meets a private page (EFAULT)
    s, outs = _run(cfg, _started(cfg), "io", "vmm", "vmm", "vmm", "vmm", "io", "vmm", "io", "io")
    assert outs[5] == {"pending": True} and outs[6] == {"ret": 0}       # the conversion ends
    assert outs[-1] == {"ret": "EFAULT"}
    assert s.pages[0].private and s.pages[0].pins == 0


def test_without_the_second_look_the_pin_survives_on_a_private_page():
    cfg = Config(platform="snp", gup_fast_no_recheck=True)
    s, outs = _run(cfg, _started(cfg), "io", "vmm", "vmm", "vmm", "vmm", "io", "vmm", "io")
    assert outs[-1] == {"ret": 0}
    assert s.pages[0].private and s.pages[0].pins == 1


def test_a_host_fault_waits_for_the_conversion():
    cfg = Config(platform="snp")
    s = step(cfg, VmState(), event("create_gmem", size=4096, flags=("MMAP", "INIT_SHARED"))).state
    s, _ = _s(cfg, s, op="set_attributes", offset=0, size=4096, attributes="private", thread="vmm")
    s, _ = _s(cfg, s, op="host_read", offset=0, thread="io")
    s, outs = _run(cfg, s, "vmm", "io")                                 # vmm takes the lock
    assert outs == [{"pending": True}, {"blocked": True}] and s.lock == "vmm"
    s, outs = _run(cfg, s, "vmm", "vmm", "vmm", "vmm", "io")
    assert outs[-2] == {"ret": 0} and outs[-1] == {"signal": "SIGBUS"}   # private by then


def test_populate_drops_the_lock_between_pages_unless_told_to_keep_it():
    for holds in (False, True):
        cfg = Config(platform="snp", populate_holds_lock=holds)
        s = step(cfg, VmState(), event("create_gmem", size=8192, flags=("MMAP",))).state
        s, _ = _s(cfg, s, op="populate", offset=0, size=8192, src=None, thread="vmm")
        s, outs = _run(cfg, s, "vmm", "vmm", "vmm")                     # checks, lock, page 0
        assert outs == [{"pending": True}] * 3
        assert s.lock == ("vmm" if holds else "")
        s, outs = _run(cfg, s, *(["vmm"] * (1 if holds else 2)))
        assert outs[-1] == {"ret": 0, "done": 2} and s.lock == "" and s.threads == ()


def test_thread_events_are_checked(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"format": "gmemlab-trace/1", "platform": "snp", "series": "v8", "page_size": 4096}\n'
                 '{"op": "create_gmem", "size": 4096, "flags": ["MMAP"]}\n'
                 '{"op": "run"}\n')
    r = subprocess.run([sys.executable, "-m", "gmemlab", "check-trace", str(f)], capture_output=True, text=True)
    assert r.returncode == 2 and f"{f}:3: run needs \"thread\"" in r.stderr
    f.write_text(f.read_text().replace('{"op": "run"}', '{"op": "run", "thread": "a b"}'))
    r = subprocess.run([sys.executable, "-m", "gmemlab", "check-trace", str(f)], capture_output=True, text=True)
    assert r.returncode == 2 and "thread must be a short name" in r.stderr and "Traceback" not in r.stderr


def test_explore_cli_interleaves(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gmemlab", "explore", "--platform", "snp", "--pages", "1",
                        "--interleave", "--check-before-unmap", "--json"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["config"]["symmetry"] is False
    assert not out["invariants"]["private_not_pinned"]["holds"]
    cx = out["invariants"]["private_not_pinned"]["counterexample"]
    assert any(e["op"] == "run" for e in cx)
    r = subprocess.run([sys.executable, "-m", "gmemlab", "explore", "--interleave", "4"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_a_memory_error_poisons_the_folio_and_every_way_in_says_so():
    """memory_failure -> kvm_gmem_error_folio: the folio stays, poisoned; the guest gets
    EHWPOISON, a host fault SIGBUS, a pin EHWPOISON, populate stops there; a punched hole
    frees it."""
    cfg = Config(platform="snp")
    s = step(cfg, VmState(), event("create_gmem", size=8192, flags=("MMAP", "INIT_SHARED"))).state
    s = step(cfg, s, event("host_write", offset=0, value=65)).state
    s, out = _s(cfg, s, op="memory_failure", offset=0)
    assert out == {"ok": True} and s.pages[0].poisoned and s.pages[0].mapped == ()
    assert _s(cfg, s, op="host_read", offset=0)[1] == {"signal": "SIGBUS"}
    assert _s(cfg, s, op="pin", offset=0, size=4096)[1] == {"ret": "EHWPOISON"}
    s2, out = _s(cfg, s, op="set_attributes", offset=0, size=8192, attributes="private")
    assert out == {"ret": 0}
    assert _s(cfg, s2, op="populate", offset=0, size=8192, src=None)[1] == {"ret": "EIO", "done": 0}
    s3, out = _s(cfg, s, op="punch_hole", offset=0, size=4096)
    assert out == {"ret": 0} and not s3.pages[0].poisoned
    # an index with no folio has nothing to fail
    assert _s(cfg, s, op="memory_failure", offset=4096)[0] == s


def test_the_memory_error_handler_waits_for_the_invalidate_lock():
    cfg = Config(platform="snp", memory_failures=True)
    s = step(cfg, VmState(), event("create_gmem", size=4096, flags=("MMAP", "INIT_SHARED"))).state
    s = step(cfg, s, event("host_write", offset=0, value=65)).state
    s, _ = _s(cfg, s, op="set_attributes", offset=0, size=4096, attributes="private", thread="vmm")
    s, _ = _s(cfg, s, op="memory_failure", offset=0, thread="mce")
    s, outs = _run(cfg, s, "vmm", "mce")
    assert outs == [{"pending": True}, {"blocked": True}]
    s, outs = _run(cfg, s, "vmm", "vmm", "vmm", "vmm", "mce")
    assert outs[-2] == {"ret": 0} and outs[-1] == {"ok": True} and s.pages[0].poisoned
    x = explore(cfg, Bounds(pages=1, interleave=2))
    assert any(a.get("thread") == "mce" for a in x.actions)
