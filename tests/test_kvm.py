"""The running kernel as the oracle (gmemlab.kvm): facts probed on /dev/kvm, each checked
against the model of platform "default"; the trace corpus run on the kernel and its
recording replayed through the model; a differential fuzzer; and `gmemlab kvm-run`.

Without /dev/kvm these tests do not pass silently: they are skipped with the reason
"no /dev/kvm: the kernel oracle did not run" and the session's summary says so
(tests/conftest.py); GMEMLAB_REQUIRE_KVM=1 turns that into a failure (for CI, whose
machines have /dev/kvm).

Disagreements the oracle found, and what became of them (see also gmemlab.kvm.runner):
- create_gmem with a size of 2**63 or more: the kernel reads the u64 as a negative loff_t
  and refuses it (EINVAL, kvm_gmem_create); the model accepted it. Fixed in step.create_gmem.
- punch_hole at or past 2**63: vfs_fallocate refuses a negative offset or length (EINVAL)
  and an end past LLONG_MAX (EFBIG) before guest_memfd's alignment check; the model said
  0. Fixed in step.punch_hole_plan, and in the range replay (traces/ranges.py), whose
  compressed addresses had lost the magnitude.
- A guest access to a page of a file without INIT_SHARED: on this machine's vCPU (kvm_pvm,
  no hardware virtualization) the emulator goes through the memslot's userspace_addr and
  KVM exits with MMIO; on a hardware vCPU kvm_gmem_get_pfn serves it (what the model
  says). Not a model bug: kvm-run ends such a run with a note (test_vcpu_memory_path).
- Pins of zero length, unpins of nothing the run pinned, unpins past the end of the
  file: the model answers by convention (EINVAL / a no-op); there is no kernel call to
  judge, so kvm-run ends the run there (test_runner_ends_where_the_kernel_cannot_judge).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from glob import glob

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmemlab.kvm import uapi as U
from gmemlab.kvm.differential import PS, judge, make_event, outcome_key, random_events
from gmemlab.kvm.runner import CODE_GPA, Machine, _ioctl, errname, run_events
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import step
from gmemlab.model.vocab import SERIES
from gmemlab.traces.format import dumps, load, loads
from gmemlab.traces.replay import config_for, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = 1 << 63
FUZZ_EXAMPLES = int(os.environ.get("GMEMLAB_KVM_FUZZ_EXAMPLES", "1000"))


def on_kernel_and_model(kvm, events, allow_stop=False):
    """Run events on the kernel; the recording must replay through the model without a
    divergence. Returns the kernel's outcomes (the recording's "expect")."""
    v = judge(kvm, events)
    assert v.divergence is None, f"kernel and model disagree: {v.divergence}\n{v.text}"
    if not allow_stop:
        assert v.stopped is None, v.stopped
    _, recorded = loads(v.text, "<recording>")
    return [e["expect"] for e in recorded]


def create(pages=4, *flags):
    return make_event("create_gmem", size=pages * PS, flags=flags)


def ev(op, page=0, **kw):
    return make_event(op, offset=kw.pop("offset", page * PS), **kw)


SHARED = ("MMAP", "INIT_SHARED")


# --- facts probed on the kernel, each also the model's answer ----------------------------

def test_create_refuses_unknown_flags_and_bad_sizes(kvm):
    bad = [make_event("create_gmem", size=s, flags=SHARED) for s in (0, 1, PS - 1, PS + 1, TOP, (1 << 64) - PS)]
    unknown = [create(4, "NO_DIRECT_MAP"), create(4, *SHARED, "NO_DIRECT_MAP")]
    outs = on_kernel_and_model(kvm, bad + unknown + [create(4, *SHARED), create(1, "INIT_SHARED")])
    assert outs == [{"ret": "EINVAL"}] * 8 + [{"ret": 0}, {"ret": 0}]
    # Bits the trace format cannot name (kvm_gmem_create: flags & ~supported).
    with Machine(kvm) as m:
        for bit in (3, 4, 31, 63):
            assert m.create_gmem(PS, 1 << bit) == {"ret": "EINVAL"}, bit


def test_mmap_without_the_mmap_flag_is_enodev(kvm):
    outs = on_kernel_and_model(kvm, [create(2), ev("host_read"), ev("host_write", value=1), ev("pin", size=PS),
                                     create(2, "INIT_SHARED"), ev("host_read")])
    assert outs[1:4] == [{"ret": "ENODEV"}] * 3 and outs[5] == {"ret": "ENODEV"}


def test_without_init_shared_the_host_gets_sigbus(kvm):
    outs = on_kernel_and_model(kvm, [create(2, "MMAP"), ev("host_write", value=0xAA), ev("host_read", 1),
                                     ev("pin", size=PS)])
    assert outs[1:] == [{"signal": "SIGBUS"}, {"signal": "SIGBUS"}, {"ret": "EFAULT"}]


def test_init_shared_writes_read_back_and_punched_pages_read_zero(kvm):
    outs = on_kernel_and_model(kvm, [
        create(4, *SHARED),
        ev("host_read", 0),                          # a first fault gives a zero page
        ev("host_write", 1, value=ord("A")),
        ev("host_read", offset=PS + 17),             # the whole page holds the value
        ev("punch_hole", 1, size=PS),
        ev("host_read", 1),                          # refaulted: zero
        ev("host_read", 2),
        ev("punch_hole", offset=1, size=PS),         # unaligned offset
        ev("punch_hole", 0, size=PS - 1),            # unaligned length
        ev("punch_hole", 0, size=0),
        ev("punch_hole", 4, size=PS),                # at the end of the file
        ev("punch_hole", 9, size=2 * PS),            # past it
        ev("host_read", 4),                          # past the end: SIGBUS
    ])
    assert outs[1:] == [{"ok": True, "value": 0}, {"ok": True}, {"ok": True, "value": ord("A")}, {"ret": 0},
                        {"ok": True, "value": 0}, {"ok": True, "value": 0}, {"ret": "EINVAL"}, {"ret": "EINVAL"},
                        {"ret": "EINVAL"}, {"ret": 0}, {"ret": 0}, {"signal": "SIGBUS"}]


def test_fallocate_takes_a_signed_loff_t(kvm):
    outs = on_kernel_and_model(kvm, [
        create(1, *SHARED),
        ev("punch_hole", offset=TOP - 2 * PS, size=PS),   # ends below LLONG_MAX: fine
        ev("punch_hole", offset=TOP - PS, size=PS),       # ends at 2**63: EFBIG (vfs_fallocate)
        ev("punch_hole", offset=TOP, size=PS),            # a negative offset: EINVAL
        ev("punch_hole", offset=0, size=TOP),             # a negative length: EINVAL
        ev("punch_hole", offset=PS, size=TOP - PS),       # ends at 2**63: EFBIG
        ev("punch_hole", offset=1, size=TOP - 1),         # EFBIG comes before the alignment check
    ])
    assert outs[1:] == [{"ret": 0}, {"ret": "EFBIG"}, {"ret": "EINVAL"}, {"ret": "EINVAL"}, {"ret": "EFBIG"},
                        {"ret": "EFBIG"}]


def test_the_guest_sees_the_host_and_the_host_sees_the_guest(kvm):
    outs = on_kernel_and_model(kvm, [
        create(4, *SHARED),
        ev("host_write", 0, value=ord("H")),
        ev("guest_read", offset=5),                      # the vCPU reads what the host wrote
        ev("guest_write", 1, value=ord("G")),
        ev("host_read", offset=2 * PS - 1),              # the host reads what the guest wrote
        ev("guest_read", 2),                             # never written: zero
        ev("punch_hole", 0, size=PS),
        ev("guest_read", 0),                             # punched: zero again
        ev("guest_read", 4),                             # no memslot there
        ev("guest_write", 5, value=1),
        ev("guest_read", 1),
    ])
    assert outs[1:] == [{"ok": True}, {"ok": True, "value": ord("H")}, {"ok": True}, {"ok": True, "value": ord("G")},
                        {"ok": True, "value": 0}, {"ret": 0}, {"ok": True, "value": 0}, {"exit": "MMIO"},
                        {"exit": "MMIO"}, {"ok": True, "value": ord("G")}]


def test_pins_are_real_long_term_pins(kvm):
    outs = on_kernel_and_model(kvm, [
        create(4, *SHARED),
        ev("host_write", 1, value=7),
        ev("pin", 1, size=PS),
        ev("pin", 1, size=PS),                 # a second reference on the same page
        ev("pin", 3, size=2 * PS),             # reaches past the end: GUP gets SIGBUS, EFAULT
        ev("pin", 4, size=PS),
        ev("host_read", 1),
        ev("punch_hole", 1, size=PS),          # punching a pinned page works; the pin keeps the old folio
        ev("host_read", 1),
        ev("unpin", 1, size=PS),
        ev("unpin", 1, size=PS),
        create(2, "MMAP"),
        ev("pin", 0, size=PS),                 # no INIT_SHARED: the fault is refused, EFAULT
    ])
    assert outs[1:] == [{"ok": True}, {"ret": 0}, {"ret": 0}, {"ret": "EFAULT"}, {"ret": "EFAULT"},
                        {"ok": True, "value": 7}, {"ret": 0}, {"ok": True, "value": 0}, {"ret": 0}, {"ret": 0},
                        {"ret": 0}, {"ret": "EFAULT"}]


def test_before_any_guest_memfd_the_calls_get_ebadf(kvm):
    outs = on_kernel_and_model(kvm, [ev("host_read"), ev("punch_hole", size=PS), ev("pin", size=PS),
                                     make_event("create_gmem", size=1, flags=SHARED), ev("host_write", value=1)])
    assert outs == [{"ret": "EBADF"}] * 3 + [{"ret": "EINVAL"}, {"ret": "EBADF"}]


def test_the_guest_memfd_has_no_ioctls(kvm):
    """Why set_attributes is ENOTTY on platform "default": Linux 6.18's guest_memfd
    answers no ioctl (kvm_gmem_fops has no unlocked_ioctl)."""
    with Machine(kvm) as m:
        m.create_gmem(PS, U.GUEST_MEMFD_FLAG_MMAP | U.GUEST_MEMFD_FLAG_INIT_SHARED)
        for request in (U.KVM_CHECK_EXTENSION, U.KVM_CREATE_GUEST_MEMFD, U.KVM_SET_USER_MEMORY_REGION2):
            assert errname(-_ioctl(m.gmem, request, 0)) == "ENOTTY"
    cfg = Config(platform="default")
    s, _, _ = step(cfg, VmState(), {"op": "create_gmem", "size": PS, "flags": SHARED, "process": "vmm"})
    for attr in ("private", "shared"):
        out = step(cfg, s, {"op": "set_attributes", "offset": 0, "size": PS, "attributes": attr, "flags": (),
                            "process": "vmm"})[1]
        assert out == {"ret": "ENOTTY"}


def test_capabilities_are_what_the_docs_say(kvm):
    caps = kvm.capabilities
    assert caps["GUEST_MEMFD"] == 1 and caps["USER_MEMORY2"] == 1
    assert set(caps["GUEST_MEMFD_FLAGS"]) == {"MMAP", "INIT_SHARED"}
    assert caps["MEMORY_ATTRIBUTES"] == 0
    assert 0 in caps["VM_TYPES"]
    vm = _ioctl(kvm.fd, U.KVM_CREATE_VM, U.KVM_X86_SW_PROTECTED_VM)
    if vm >= 0:
        os.close(vm)
    assert (vm >= 0) == (U.KVM_X86_SW_PROTECTED_VM in caps["VM_TYPES"])


def test_vcpu_memory_path(kvm):
    """What INIT_SHARED absent means for the guest. A hardware vCPU faults a
    guest_memfd-only memslot through kvm_gmem_get_pfn, which ignores INIT_SHARED: the
    guest reads a zero page (the model's answer). A vCPU whose accesses go through the
    memslot's userspace_addr (the x86 emulator, e.g. under kvm_pvm) meets the host
    mapping's SIGBUS instead and KVM exits with MMIO; kvm-run then ends the run there."""
    with Machine(kvm) as m:
        m.create_gmem(2 * PS, U.GUEST_MEMFD_FLAG_MMAP)
        out = m.guest_access(PS, write=False, value=0)
    if kvm.vcpu_memory_path == "userspace_addr":
        assert out == {"exit": "MMIO"}
        rec = run_events(kvm, loads(dumps({"format": "gmemlab-trace/1", "platform": "default"},
                                          [create(2, "MMAP"), ev("guest_read", 1)]), "t")[1])
        assert rec.stopped["line"] == 3 and "userspace_addr" in rec.stopped["why"]
    else:
        assert out == {"ok": True, "value": 0}
        on_kernel_and_model(kvm, [create(2, "MMAP"), ev("guest_read", 1), ev("guest_write", 1, value=3),
                                  ev("guest_read", 1), ev("host_read", 1)])


@pytest.mark.parametrize("event,why", [
    ({"op": "set_attributes", "offset": 0, "size": PS, "attributes": "private", "flags": []},
     "KVM_SET_MEMORY_ATTRIBUTES2"),
    ({"op": "populate", "offset": 0, "size": PS, "src": None}, "launch ioctls"),
    ({"op": "finalize"}, "launch ioctls"),
    ({"op": "guest_accept", "offset": 0, "size": PS}, "trusted entity"),
    ({"op": "map_gpa_range", "offset": 0, "size": PS, "private": True}, "KVM_HC_MAP_GPA_RANGE"),
    ({"op": "guest_read", "offset": 0, "private": True}, "no private view"),
    ({"op": "pin", "offset": 0, "size": 0}, "zero-length pin"),
    ({"op": "unpin", "offset": 0, "size": PS}, "no pin of this run"),
    ({"op": "unpin", "offset": 3 * PS, "size": 2 * PS}, "past the end"),
    ({"op": "guest_read", "offset": CODE_GPA, "private": False}, "guest code"),
])
def test_runner_ends_where_the_kernel_cannot_judge(kvm, event, why):
    header = {"format": "gmemlab-trace/1", "platform": "default"}
    events = [create(4, *SHARED), event, ev("host_read")]
    rec = run_events(kvm, loads(dumps(header, events), "t.jsonl")[1])
    assert len(rec.events) == 1 and rec.events[0]["expect"] == {"ret": 0}
    assert rec.stopped["line"] == 3 and rec.stopped["op"] == event["op"] and why in rec.stopped["why"]


def test_a_file_without_mmap_is_not_what_the_guest_reaches(kvm):
    rec = run_events(kvm, loads(dumps({"format": "gmemlab-trace/1", "platform": "default"},
                                      [create(2, "INIT_SHARED"), ev("guest_read")]), "t")[1])
    assert rec.stopped["line"] == 3 and "KVM_MEMSLOT_GMEM_ONLY" in rec.stopped["why"]


# --- conformance: the corpus on the kernel, the recording through the model ------------

CORPUS = sorted(glob(os.path.join(ROOT, "data", "traces", "*", "*.jsonl"))
                + glob(os.path.join(ROOT, "data", "emulated", "*.jsonl")))


_JUDGED: dict = {}  # path -> Verdict (the corpus runs once per session)


def _judged(kvm, path):
    if path not in _JUDGED:
        header, events = load(path)
        _JUDGED[path] = judge(kvm, list(events), header)
    return _JUDGED[path]


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.relpath(p, ROOT) for p in CORPUS])
def test_corpus_on_the_kernel_agrees_with_the_model(kvm, path):
    v = _judged(kvm, path)
    name = os.path.relpath(path, ROOT)
    d = v.divergence
    assert d is None, (f"{name}:{d['line']} {d['op']}: the kernel gave {json.dumps(d['expected'])}, "
                       f"the model (platform default) predicts {json.dumps(d['predicted'])}")
    # No series of the model changes what a default VM does (no conversion, no populate).
    h, recorded = loads(v.text, "<recording>")
    for series in SERIES:
        r = replay(config_for(h, series=series), recorded)
        assert r.divergence is None, (series, r.divergence)


def test_the_corpus_reaches_the_kernel(kvm):
    """Not a vacuous conformance: most files run a prefix, some run whole."""
    ran = whole = 0
    for path in CORPUS:
        v = _judged(kvm, path)
        ran += v.events_run
        whole += v.stopped is None
    assert ran >= 500 and whole >= 7, (ran, whole)


# --- the differential fuzzer ---------------------------------------------------------------

REQUIRED_PAIRS = {("create_gmem", "ret=0"), ("create_gmem", "ret=EINVAL"), ("host_read", "ok+value"),
                  ("host_read", "signal=SIGBUS"), ("host_read", "ret=ENODEV"), ("host_write", "ok"),
                  ("punch_hole", "ret=0"), ("punch_hole", "ret=EINVAL"), ("punch_hole", "ret=EFBIG"),
                  ("pin", "ret=0"), ("pin", "ret=EFAULT"), ("unpin", "ret=0"), ("guest_read", "ok+value"),
                  ("guest_read", "exit=MMIO"), ("guest_write", "ok")}


def test_differential_fuzzer(kvm, tmp_path_factory):
    """Random op sequences on the kernel and through the model; the first disagreement
    fails with the (shrunk) sequence written as a trace that check-trace replays."""
    out = tmp_path_factory.mktemp("kvm-fuzz") / "disagreement.jsonl"
    stats = {"sequences": 0, "events": 0, "pairs": set()}

    @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(rnd=st.randoms(use_true_random=False))
    def one(rnd):
        v = judge(kvm, random_events(rnd))
        stats["sequences"] += 1
        stats["events"] += v.events_run
        stats["pairs"] |= v.pairs
        if v.divergence is not None:
            out.write_text(v.text)
            d = v.divergence
            raise AssertionError(f"line {d['line']} {d['op']}: the kernel gave {json.dumps(d['expected'])}, the "
                                 f"model predicts {json.dumps(d['predicted'])}; the sequence is {out} "
                                 f"(gmemlab check-trace {out})")

    one()
    assert stats["sequences"] >= min(FUZZ_EXAMPLES, 1000)
    assert stats["events"] >= 2 * stats["sequences"], stats["events"]
    missing = REQUIRED_PAIRS - stats["pairs"]
    assert not missing, f"the fuzzer never reached {sorted(missing)}"


def test_outcome_keys():
    assert outcome_key({"signal": "SIGBUS"}) == "signal=SIGBUS"
    assert outcome_key({"ok": True}) == "ok"


# --- the command -----------------------------------------------------------------------------

def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_kvm_run_agrees_and_writes_out(kvm, tmp_path):
    out = tmp_path / "rec.jsonl"
    r = _cli("kvm-run", "data/traces/selftests/mmap_supported.jsonl", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "every outcome the trace expected matches" in r.stderr
    header, events = load(str(out))
    assert header["platform"] == "default" and header["source"] == "recorded"
    assert header["kernel"] == os.uname().release and header["capabilities"]["GUEST_MEMFD"] == 1
    assert len(events) == 19 and all("expect" in e for e in events)
    assert _cli("check-trace", str(out)).returncode == 0


def test_kvm_run_json_reports_the_stop(kvm):
    r = _cli("kvm-run", "data/traces/selftests/truncate.jsonl", "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert set(obj) == {"kernel", "capabilities", "events", "stopped", "mismatches"}
    assert obj["events"] == 6 and obj["mismatches"] == []
    assert obj["stopped"]["line"] == 8 and obj["stopped"]["op"] == "set_attributes"


def test_kvm_run_exits_1_when_the_kernel_differs(kvm, tmp_path):
    trace = tmp_path / "wrong.jsonl"
    trace.write_text(dumps({"format": "gmemlab-trace/1", "platform": "sw_protected"}, [
        {"op": "create_gmem", "size": 2 * PS, "flags": ("MMAP", "INIT_SHARED"), "expect": {"ret": 0}},
        {"op": "host_write", "offset": 0, "value": 65, "expect": {"ok": True}},
        {"op": "host_read", "offset": 0, "expect": {"ok": True, "value": 66}},
    ]))
    out = tmp_path / "rec.jsonl"
    r = _cli("kvm-run", str(trace), "--json", "-o", str(out))
    assert r.returncode == 1, r.stderr
    obj = json.loads(r.stdout)
    assert obj["mismatches"] == [{"line": 4, "op": "host_read", "expected": {"ok": True, "value": "B"},
                                  "kernel": {"ok": True, "value": "A"}}]
    _, events = load(str(out))
    assert events[2]["expect"] == {"ok": True, "value": 65}
    assert events[2]["extra"]["trace_expect"] == {"ok": True, "value": "B"}
    r = _cli("kvm-run", str(trace))
    assert r.returncode == 1 and f"{trace}:4 host_read" in r.stderr


def test_kvm_run_bad_input_exits_2_naming_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "gmemlab-trace/1", "platform": "default"}\n{"op": "create_gmem", "size": 4096}\n'
                   '{"op": "host_read", "offset": -1}\n')
    r = _cli("kvm-run", str(bad))
    assert r.returncode == 2 and f"{bad}:3:" in r.stderr and "Traceback" not in r.stderr
    big = tmp_path / "big.jsonl"
    big.write_text('{"format": "gmemlab-trace/1", "platform": "default", "page_size": 8192}\n')
    r = _cli("kvm-run", str(big))
    assert r.returncode == 2 and f"{big}:1:" in r.stderr and "page size" in r.stderr
    r = _cli("kvm-run", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "missing.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_kvm_run_without_kvm_exits_2(tmp_path):
    r = _cli("kvm-run", "data/traces/selftests/flags.jsonl", "--device", str(tmp_path / "no-kvm"))
    assert r.returncode == 2 and "no-kvm" in r.stderr and "Traceback" not in r.stderr


# --- the trace format knows recordings ---------------------------------------------------------

def test_format_reads_a_recording_header():
    text = ('{"format": "gmemlab-trace/1", "platform": "default", "source": "recorded", "kernel": "6.18.0", '
            '"capabilities": {"GUEST_MEMFD": 1}, "vcpu_memory_path": "guest_memfd"}\n')
    header, _ = loads(text, "t.jsonl")
    assert header["kernel"] == "6.18.0" and header["capabilities"] == {"GUEST_MEMFD": 1}
    assert header["vcpu_memory_path"] == "guest_memfd"  # other optional fields are kept
    for bad, what in (('"kernel": 618', "kernel"), ('"capabilities": [1]', "capabilities")):
        with pytest.raises(Exception, match=what):
            loads('{"format": "gmemlab-trace/1", "platform": "default", ' + bad + '}\n', "t.jsonl")
