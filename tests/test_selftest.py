"""gmemlab selftest: traces as C selftests that the system gcc builds (and, with
/dev/kvm, that run and pass on a default VM when they need no conversion)."""

from __future__ import annotations

import json
import os
import platform as _platform
import shutil
import subprocess
import sys

import pytest

from gmemlab.errors import InputError
from gmemlab.explore import Bounds, explore
from gmemlab.invariants import INVARIANT_NAMES, SOMETIMES
from gmemlab.model import vocab
from gmemlab.model.state import Config
from gmemlab.render.selftest import GUEST_OPS, NOT_ON_CCA, NOT_ON_CVM, NOT_USERSPACE, render, render_file
from gmemlab.traces.format import dumps, loads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELFTESTS = os.path.join(ROOT, "data", "traces", "selftests")
GCC = shutil.which("gcc")
HEADER = {"format": "gmemlab-trace/1", "platform": "sw_protected", "series": "v8", "page_size": 4096}


def _gcc() -> str:
    # gcc is installed wherever the tests run (CI included): no skip, a failure says so
    assert GCC, "gcc is needed to check the C that gmemlab selftest writes"
    return GCC


def build(c_text: str, tmp_path, name: str = "t") -> str:
    """Compile and link the program with -Wall -Wextra -Werror; the binary's path."""
    src = tmp_path / f"{name}.c"
    src.write_text(c_text)
    exe = tmp_path / name
    r = subprocess.run([_gcc(), "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{name}.c does not build:\n{r.stderr}"
    return str(exe)


def _trace_text(header: dict, events: list) -> str:
    return dumps(header, events)


def _explored_traces():
    """Every counterexample (and witness) the explorer finds on sw_protected, 1-2 pages,
    for every proposal and series: (label, header, events), deduplicated."""
    seen, out = set(), []
    for proposal in vocab.proposal_names():
        for series in vocab.SERIES:
            for pages in (1, 2):
                r = explore(Config(proposal=proposal, platform="sw_protected", series=series),
                            Bounds(pages=pages))
                found = [("cx", n, r.counterexample(n)) for n in INVARIANT_NAMES if not r.holds(n)]
                found += [("witness", p.name, r.witness(p.name)) for p in SOMETIMES]
                for kind, name, events in found:
                    if not events:
                        continue
                    header = dict(HEADER, series=series)
                    text = _trace_text(header, events)
                    if text in seen:
                        continue
                    seen.add(text)
                    out.append((f"{proposal}/{series}/{pages}/{kind}:{name}", kind, text))
    return out


EXPLORED = _explored_traces()


def test_explored_traces_exist():
    kinds = {k for _, k, _ in EXPLORED}
    assert "cx" in kinds, "sw_protected should break an invariant somewhere (v5 content modes)"
    assert len(EXPLORED) >= 5


def _render_or_refuse(text: str, path: str):
    """The C, or None when the trace is refused; a refusal must name a line holding
    an op that is no userspace call on this platform (or an inexpressible detail)."""
    header, events = loads(text, path)
    try:
        return render(header, events, path)
    except InputError as e:
        assert e.path == path and isinstance(e.line, int) and e.line >= 2, str(e)
        ev = next(ev for ev in events if ev["line"] == e.line)
        assert ev["op"] in NOT_USERSPACE or ev["op"] in NOT_ON_CVM or ev["op"] in GUEST_OPS \
            or ev["op"] in ("pin", "unpin"), str(e)
        assert ev["op"] in str(e)
        return None


def test_every_expressible_counterexample_and_witness_builds(tmp_path):
    built = 0
    for i, (label, kind, text) in enumerate(EXPLORED):
        c = _render_or_refuse(text, f"{i}.jsonl")
        if c is None:
            continue
        build(c, tmp_path, f"x{i}")
        built += 1
    # every counterexample on sw_protected is host-side (set_attributes, host access)
    cx = [t for _, k, t in EXPLORED if k == "cx"]
    assert cx and all(_render_or_refuse(t, "cx.jsonl") is not None for t in cx)
    assert built >= len(cx)


def _selftest_traces():
    return sorted(os.path.join(SELFTESTS, f) for f in os.listdir(SELFTESTS) if f.endswith(".jsonl"))


def test_every_expressible_selftest_trace_builds(tmp_path):
    built = []
    for path in _selftest_traces():
        with open(path, encoding="utf-8") as f:
            c = _render_or_refuse(f.read(), path)
        if c is not None:
            build(c, tmp_path, os.path.basename(path)[:-6])
            built.append(os.path.basename(path))
    assert {"fallocate.jsonl", "fault_private.jsonl", "mmap_supported.jsonl",
            "invalid_punch_hole.jsonl"} <= set(built), built


def _runnable(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        _, events = loads(f.read(), path)
    return all(ev["op"] not in NOT_USERSPACE and ev["op"] != "set_attributes" and not ev.get("private")
               for ev in events)


PIN_TRACE = "\n".join(json.dumps(x) for x in [
    HEADER,
    {"op": "create_gmem", "size": 16384, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}},
    {"op": "host_write", "offset": 8192, "value": "A", "expect": {"ok": True}},
    {"op": "pin", "offset": 8192, "size": 4096, "expect": {"ret": 0}},
    {"op": "host_read", "offset": 8192, "process": "child", "expect": {"ok": True, "value": "A"}},
    {"op": "unpin", "offset": 8192, "size": 4096, "expect": {"ret": 0}},
    {"op": "punch_hole", "offset": 8192, "size": 4096, "expect": {"ret": 0}},
    {"op": "host_read", "offset": 8192, "expect": {"ok": True, "value": 0}},
    {"op": "host_read", "offset": 16384, "expect": {"signal": "SIGBUS"}},
]) + "\n"


def test_pin_trace_builds(tmp_path):
    header, events = loads(PIN_TRACE, "pin.jsonl")
    c = render(header, events, "pin.jsonl")
    assert "IORING_REGISTER_BUFFERS" in c and "pin_range(0x2000ULL, 0x1000ULL)" in c
    build(c, tmp_path, "pin")


def test_runnable_traces_pass_on_a_default_vm(tmp_path):
    """With /dev/kvm: every built trace that needs no conversion runs on a default VM
    of the running kernel and exits 0 (every outcome as the trace expects)."""
    if not os.path.exists("/dev/kvm"):
        if os.environ.get("GMEMLAB_REQUIRE_KVM"):
            pytest.fail("no /dev/kvm: the kernel oracle did not run (GMEMLAB_REQUIRE_KVM is set)")
        pytest.skip("no /dev/kvm: the kernel oracle did not run")
    pin = tmp_path / "pin.jsonl"
    pin.write_text(PIN_TRACE)
    paths = [p for p in _selftest_traces() if _runnable(p)] + [str(pin)]
    assert len(paths) >= 5
    for path in paths:
        name = os.path.basename(path)[:-6]
        exe = build(render_file(path, vm="default"), tmp_path, name)
        r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{name}: exit {r.returncode}\n{r.stdout}{r.stderr}"
        assert r.stdout.startswith(f"ok {name}:")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_cli_writes_c_and_refuses_populate_naming_the_line(tmp_path):
    out = tmp_path / "t.c"
    r = _cli("selftest", os.path.join(SELFTESTS, "fault_private.jsonl"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "assert_access(r, SIGBUS);" in out.read_text()
    build(out.read_text(), tmp_path, "fault_private")

    trace = tmp_path / "launch.jsonl"
    trace.write_text("\n".join(json.dumps(x) for x in [
        HEADER,
        {"op": "create_gmem", "size": 8192, "flags": ["MMAP"], "expect": {"ret": 0}},
        {"op": "populate", "offset": 0, "size": 4096, "expect": {"ret": 0}},
    ]) + "\n")
    r = _cli("selftest", str(trace), "-o", str(tmp_path / "p.c"))
    assert r.returncode == 2
    assert f"{trace}:3: populate: not a userspace call on this platform" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "p.c").exists()


def test_refusals_name_the_line():
    def refuse(events, header=HEADER):
        text = "\n".join(json.dumps(x) for x in [header, *events]) + "\n"
        h, evs = loads(text, "t.jsonl")
        with pytest.raises(InputError) as e:
            render(h, evs, "t.jsonl")
        return e.value
    create = {"op": "create_gmem", "size": 8192, "flags": ["MMAP"], "expect": {"ret": 0}}
    e = refuse([create, {"op": "host_read", "offset": 0}])
    assert e.line == 3 and "expect" in e.problem
    default = dict(HEADER, platform="default")
    e = refuse([create, {"op": "guest_read", "offset": 0, "private": True, "expect": {"ok": True}}], default)
    assert e.line == 3 and "no private view" in e.problem
    e = refuse([{"op": "create_gmem", "size": 8192, "expect": {"ret": 0}},
                {"op": "guest_read", "offset": 0, "private": False, "expect": {"ok": True}}], default)
    assert e.line == 3 and "without MMAP" in e.problem
    e = refuse([create, {"op": "guest_accept", "offset": 0, "size": 4096, "expect": {"ok": True}}])
    assert e.line == 3 and "not a userspace call" in e.problem
    for platform in ("snp", "tdx"):
        e = refuse([create, {"op": "guest_read", "offset": 0, "private": True, "expect": {"ok": True}}],
                   dict(HEADER, platform=platform))
        assert e.line == 3 and f"not expressible on {platform}" in e.problem
    e = refuse([create, {"op": "finalize", "expect": {"ret": 0}}])
    assert e.line == 3
    e = refuse([create, {"op": "unpin", "offset": 0, "size": 4096, "expect": {"ret": 0}}])
    assert e.line == 3 and "no pin" in e.problem
    h, evs = loads("\n".join(json.dumps(x) for x in [HEADER, create]) + "\n", "t.jsonl")
    with pytest.raises(InputError) as ei:
        render(dict(h, platform="pkvm"), evs, "t.jsonl")   # a platform the reader does not know yet
    assert ei.value.line == 1 and "pkvm" in ei.value.problem
    cca = dict(HEADER, platform="cca")
    e = refuse([create, {"op": "finalize", "expect": {"ret": 0}}], cca)
    assert e.line == 3 and "not expressible on cca" in e.problem and "KVM_RUN" in e.problem
    e = refuse([create, {"op": "guest_read", "offset": 0, "private": True, "expect": {"ok": True}}], cca)
    assert e.line == 3 and "not expressible on cca" in e.problem
    e = refuse([create, {"op": "populate", "offset": 0, "size": 100, "src": None, "expect": {"ret": 0}}],
               dict(HEADER, platform="tdx"))
    assert e.line == 3 and "unaligned" in e.problem


def test_set_attributes_asserts_ret_and_error_offset():
    text = "\n".join(json.dumps(x) for x in [
        HEADER,
        {"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}},
        {"op": "set_attributes", "offset": 0, "size": 8192, "attributes": "private", "flags": [],
         "expect": {"ret": "EAGAIN", "error_offset": 4096}},
    ]) + "\n"
    h, evs = loads(text, "t.jsonl")
    c = render(h, evs, "t.jsonl")
    assert "set_attributes(0x0ULL, 0x2000ULL, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0, &error_offset);" in c
    assert "assert_ret(r, -EAGAIN);" in c and "TEST_ASSERT_EQ(error_offset, 0x1000ULL);" in c
    assert "#define TRACE_VM_TYPE KVM_X86_SW_PROTECTED_VM" in c


def _trace(header: dict, events: list) -> tuple:
    text = "\n".join(json.dumps(x) for x in [header, *events]) + "\n"
    return loads(text, "t.jsonl")


LAUNCH = [
    {"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}},
    {"op": "host_write", "offset": 0, "value": "K", "expect": {"ok": True}},
    {"op": "set_attributes", "offset": 0, "size": 8192, "attributes": "private", "flags": [], "expect": {"ret": 0}},
    {"op": "populate", "offset": 0, "size": 8192, "src": None, "expect": {"ret": 0, "done": 2}},
    {"op": "populate", "offset": 4096, "size": 4096, "src": "buffer", "value": "L",
     "expect": {"ret": "EIO", "done": 0}},
    {"op": "finalize", "expect": {"ret": 0}},
]


def test_launch_ioctls_on_snp_and_tdx(tmp_path):
    """populate and finalize become the platform's launch ioctls, their errno and the
    range the kernel writes back asserted; the program builds, and skips where the VM
    type is absent."""
    for platform in ("snp", "tdx"):
        h, evs = _trace(dict(HEADER, platform=platform), LAUNCH)
        c = render(h, evs, f"{platform}_launch.jsonl")
        assert c == render(h, evs, f"{platform}_launch.jsonl")     # same input, same bytes
        assert "r = populate(0x0ULL, 0x2000ULL, 0, 0x00);" in c
        assert "r = populate(0x1000ULL, 0x1000ULL, 1, 0x4c);" in c
        assert "assert_ret(r, -EIO);" in c and "r = finalize();" in c
        if platform == "snp":
            assert "KVM_SEV_SNP_LAUNCH_UPDATE" in c and "KVM_SEV_SNP_LAUNCH_FINISH" in c
            assert "TEST_ASSERT_EQ(snp_update.gfn_start, 0x2ULL);" in c
            assert "TEST_ASSERT_EQ(snp_update.len, 0x0ULL);" in c
            assert "\tsnp_setup();" in c and "#define TRACE_VM_TYPE KVM_X86_SNP_VM" in c
        else:
            assert "KVM_TDX_INIT_MEM_REGION" in c and "KVM_TDX_FINALIZE_VM" in c
            assert "TEST_ASSERT_EQ(tdx_region.gpa, 0x2000ULL);" in c
            assert "TEST_ASSERT_EQ(tdx_region.nr_pages, 0x0ULL);" in c
            assert "TEST_ASSERT_EQ(tdx_region.gpa, 0x1000ULL);" in c   # the EIO: nothing added
            assert "\ttdx_setup();" in c and "#define TRACE_VM_TYPE KVM_X86_TDX_VM" in c
        exe = build(c, tmp_path, f"{platform}_launch")
        if os.path.exists("/dev/kvm"):
            r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
            assert r.returncode in (0, 1, 4), r.stdout + r.stderr
            if r.returncode == 4:
                assert r.stdout.startswith("SKIP: "), r.stdout


CCA_LAUNCH = [
    {"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}},
    {"op": "host_write", "offset": 0, "value": "K", "expect": {"ok": True}},
    {"op": "set_attributes", "offset": 0, "size": 8192, "attributes": "private", "flags": [], "expect": {"ret": 0}},
    {"op": "populate", "offset": 0, "size": 8192, "src": None, "expect": {"ret": "EINVAL", "done": 0}},
    {"op": "populate", "offset": 0, "size": 8192, "src": "buffer", "value": "L", "expect": {"ret": 0, "done": 2}},
    {"op": "host_read", "offset": 0, "expect": {"signal": "SIGBUS"}},
    {"op": "punch_hole", "offset": 0, "size": 4096, "expect": {"ret": 0}},
]


def test_cca_populate_is_kvm_arm_rmi_populate_and_skips_off_arm64(tmp_path):
    """On cca, populate becomes KVM_ARM_RMI_POPULATE on a KVM_VM_TYPE_ARM_REALM VM (no
    set-up call), measured, from a buffer or with source_uaddr 0; its progress is asserted
    through the base, size and source_uaddr the kernel wrote back. Built here (x86-64),
    the program skips (exit 4) before touching /dev/kvm."""
    h, evs = _trace(dict(HEADER, platform="cca"), CCA_LAUNCH)
    c = render(h, evs, "cca_launch.jsonl")
    assert c == render(h, evs, "cca_launch.jsonl")
    assert "#define TRACE_VM_TYPE KVM_VM_TYPE_ARM_REALM" in c and "#define TRACE_REALM 1" in c
    assert "ioctl(vm_fd, KVM_ARM_RMI_POPULATE, &rmi_populate)" in c
    assert ".flags = KVM_ARM_RMI_POPULATE_FLAGS_MEASURE" in c
    assert "r = populate(0x0ULL, 0x2000ULL, 0, 0x00);\n\tassert_ret(r, -EINVAL);" in c
    assert "TEST_ASSERT_EQ(rmi_populate.base, 0x0ULL);" in c          # the EINVAL: nothing moved
    assert "r = populate(0x0ULL, 0x2000ULL, 1, 0x4c);" in c
    assert "TEST_ASSERT_EQ(rmi_populate.base, 0x2000ULL);" in c
    assert "TEST_ASSERT_EQ(rmi_populate.size, 0x0ULL);" in c
    assert "TEST_ASSERT_EQ(rmi_populate.source_uaddr - rmi_source, 0x2000ULL);" in c
    assert "assert_access(r, SIGBUS);" in c
    assert "_setup();" not in c.split("int main(void)")[1]     # no launch context on cca
    assert "KVM_SEV_" not in c.split("---- end of gmemlab_uapi.h ----")[1]
    exe = build(c, tmp_path, "cca_launch")
    r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    if _platform.machine() not in ("aarch64", "arm64"):
        assert r.returncode == 4, r.stdout + r.stderr
        assert r.stdout.startswith("SKIP: ") and "arm64" in r.stdout, r.stdout
    else:
        assert r.returncode in (0, 1, 4), r.stdout + r.stderr


GUEST_TRACE = [
    {"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}},
    {"op": "host_write", "offset": 4096, "value": "A", "expect": {"ok": True}},
    {"op": "guest_read", "offset": 4097, "private": False, "expect": {"ok": True, "value": "A"}},
    {"op": "guest_write", "offset": 0, "private": False, "value": "B", "expect": {"ok": True}},
    {"op": "host_read", "offset": 100, "expect": {"ok": True, "value": "B"}},
    {"op": "guest_read", "offset": 16384, "private": False, "expect": {"exit": "MMIO"}},
    {"op": "guest_read", "offset": 0, "private": False, "expect": {"ok": True, "value": "B"}},
]


def test_guest_accesses_run_on_a_default_vm(tmp_path):
    """guest_read / guest_write: a vCPU runs real-mode code (as gmemlab kvm-run does);
    with /dev/kvm the program runs on a default VM and every outcome matches."""
    h, evs = _trace(dict(HEADER, platform="default"), GUEST_TRACE)
    c = render(h, evs, "guest.jsonl")
    assert "r = guest_access(0x1001ULL, 0, 0x00, &val);" in c and "assert_exit(r, KVM_EXIT_MMIO);" in c
    assert "KVM_CREATE_VCPU" in c and "KVM_GET_VCPU_MMAP_SIZE" in c
    exe = build(c, tmp_path, "guest")
    if not os.path.exists("/dev/kvm"):
        if os.environ.get("GMEMLAB_REQUIRE_KVM"):
            pytest.fail("no /dev/kvm: the guest program did not run (GMEMLAB_REQUIRE_KVM is set)")
        pytest.skip("no /dev/kvm: the guest program did not run")
    r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert r.stdout.startswith("ok guest: 7 event(s)")


def test_map_gpa_range_builds(tmp_path):
    """map_gpa_range: the guest's KVM_HC_MAP_GPA_RANGE, answered by userspace with
    KVM_SET_MEMORY_ATTRIBUTES2 (built, not run: docs/cli.md says where it runs)."""
    h, evs = _trace(HEADER, [
        {"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}},
        {"op": "map_gpa_range", "offset": 100, "size": 4096, "private": True, "expect": {"ret": "EINVAL"}},
        {"op": "map_gpa_range", "offset": 0, "size": 4096, "private": True, "expect": {"ret": 0}},
    ])
    c = render(h, evs, "map.jsonl")
    assert "r = map_gpa_range(0x64ULL, 0x1000ULL, 1);" in c and "assert_ret(r, -EINVAL);" in c
    assert "enable_hypercall_exit();" in c and "KVM_EXIT_HYPERCALL" in c
    build(c, tmp_path, "map")


def _traces(folder: str):
    """(name, path, header, events) of every trace in data/traces/FOLDER, by name."""
    where = os.path.join(ROOT, "data", "traces", folder)
    for name in sorted(os.listdir(where)):
        path = os.path.join(where, name)
        with open(path, encoding="utf-8") as f:
            header, events = loads(f.read(), path)
        yield name, path, header, events


def test_launch_traces_render_up_to_their_guest_events():
    """The hand-written launch traces: everything up to the first guest event is
    expressed; a guest access on snp/tdx is refused naming its line."""
    for name, path, header, events in _traces("launch"):
        guest = [ev for ev in events if ev["op"] in NOT_ON_CVM]
        try:
            render(header, events, path)
        except InputError as e:
            assert guest and e.line == guest[0]["line"], (name, str(e))
        else:
            assert not guest, name


def test_cca_traces_render_up_to_their_activation():
    """The hand-written cca traces: everything before the first finalize (the Realm's
    activation at its first KVM_RUN) or guest event is expressed, and that event is
    refused naming its line; a trace without one renders (a Realm program)."""
    rendered = 0
    for name, path, header, events in _traces("cca"):
        refused = [ev for ev in events if ev["op"] in NOT_ON_CCA]
        try:
            c = render(header, events, path)
        except InputError as e:
            assert refused and e.line == refused[0]["line"], (name, str(e))
            assert "not expressible on cca" in e.problem, (name, str(e))
        else:
            assert not refused, name
            assert "KVM_VM_TYPE_ARM_REALM" in c
            rendered += 1
    assert rendered >= 1   # punch_shared_delegated_granule.jsonl
