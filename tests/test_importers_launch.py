"""The QEMU importer on SNP launch events: kvm_sev_snp_launch_update -> populate,
kvm_sev_snp_launch_finish -> finalize.

The sample lines are written here from the trace-events format strings
(target/i386/trace-events: kvm_sev_snp_launch_update "src 0x%PRIx64 gpa 0x%PRIx64 len
0x%PRIx64 (%s page)", kvm_sev_snp_launch_finish "id_block %s id_auth %s host_data %s";
page type names from snp_page_type_to_str, target/i386/sev.c), not copied from a log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from gmemlab.errors import InputError
from gmemlab.model.state import Config
from gmemlab.traces import format as fmt
from gmemlab.traces.importers import qemu, run_import
from gmemlab.traces.replay import replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One guest_memfd (fd 20), 16 KiB at gpa 0, and 8 KiB more at gpa 0x10000 (offset 0x4000).
SLOT0 = ("kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x4000"
         " ua=0x7f0000000000 guest_memfd=20 guest_memfd_offset=0x0 ret=0")
SLOT1 = ("kvm_set_user_memory AddrSpace#0 Slot#1 flags=0x4 gpa=0x10000 size=0x2000"
         " ua=0x7f0000010000 guest_memfd=20 guest_memfd_offset=0x4000 ret=0")
PLAIN = ("kvm_set_user_memory AddrSpace#0 Slot#2 flags=0x0 gpa=0x20000 size=0x1000"
         " ua=0x7f0000020000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0")
FINISH = "kvm_sev_snp_launch_finish id_block (null) id_auth (null) host_data 0000"


def lu(src: int, gpa: int, length: int, kind: str = "Normal") -> str:
    return f"kvm_sev_snp_launch_update src {src:#x} gpa {gpa:#x} len {length:#x} ({kind} page)"


def q(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def convert(*lines: str):
    _, events, skipped = qemu.convert(q(SLOT0, SLOT1, PLAIN, *lines), "boot.log")
    assert events[0]["op"] == "create_gmem"
    return events[1:], skipped


def test_a_launch_update_becomes_a_populate_with_an_unknown_source_and_no_result():
    (ev,), _ = convert(lu(0x7f0000000000, 0x0, 0x4000))
    assert (ev["op"], ev["offset"], ev["size"], ev["src"]) == ("populate", 0, 0x4000, "unknown")
    assert "expect" not in ev and "value" not in ev
    assert "result not in the log" in ev["note"] and "Normal" in ev["note"]
    assert ev["line"] == 4


@pytest.mark.parametrize("src,kind", [(0x7f0000001000, "Zero"), (0, "Normal"), (0, "Cpuid")])
def test_a_zero_page_or_a_null_source_is_populated_in_place(src, kind):
    (ev,), _ = convert(lu(src, 0x1000, 0x1000, kind))
    assert ev["src"] is None and ev["offset"] == 0x1000


def test_a_resumed_call_shows_the_previous_one_returned_0_with_its_pages_done():
    events, _ = convert(lu(0x7f0000000000, 0x0, 0x4000),
                        "kvm_convert_memory start 0x1000 size 0x3000 shared_to_private",
                        lu(0x7f0000001000, 0x1000, 0x3000), FINISH)
    pops = [e for e in events if e["op"] == "populate"]
    assert pops[0]["expect"] == {"ret": 0, "done": 1}
    assert "expect" not in pops[1]  # the last call of the loop: success or an error, the log cannot say
    assert events[-1]["op"] == "finalize" and "expect" not in events[-1]


@pytest.mark.parametrize("second", [
    lu(0x7f0000000000, 0x0, 0x4000),              # EAGAIN: QEMU re-issues it unchanged
    lu(0x7f0000005000, 0x1000, 0x3000),           # src not advanced with gpa
    lu(0x7f0000001000, 0x1000, 0x2000),           # len not reduced by the same amount
    lu(0x7f0000001000, 0x1000, 0x3000, "Cpuid"),  # another call altogether
])
def test_no_result_is_inferred_where_the_next_call_does_not_resume_this_one(second):
    events, _ = convert(lu(0x7f0000000000, 0x0, 0x4000), second)
    assert "expect" not in events[0]


def test_a_finish_in_between_ends_the_inference():
    events, _ = convert(lu(0x7f0000000000, 0x0, 0x4000), FINISH, lu(0x7f0000001000, 0x1000, 0x3000))
    assert "expect" not in events[0]


def test_a_range_past_its_memslot_is_cut_where_the_kernel_clamps_it():
    (ev,), _ = convert(lu(0x7f0000002000, 0x2000, 0x4000))
    assert (ev["offset"], ev["size"]) == (0x2000, 0x2000)
    assert "clamps the call to the first 2 pages" in ev["note"]


def test_types_the_kernel_refuses_are_skipped_and_counted():
    events, skipped = convert(lu(0x7f0000000000, 0x0, 0x1000, "Vmsa"), lu(0x7f0000000000, 0x0, 0x1000, "unknown"))
    assert events == []
    assert skipped == {"kvm_sev_snp_launch_update (page type Vmsa: refused by the kernel before any page)": 1,
                       "kvm_sev_snp_launch_update (page type unknown: refused by the kernel before any page)": 1}


def test_the_conversion_is_a_valid_trace_that_replays():
    text, _ = run_import(q(SLOT0, "kvm_convert_memory start 0x0 size 0x4000 shared_to_private",
                           lu(0x7f0000000000, 0x0, 0x4000), lu(0, 0x0, 0x1000, "Zero"), FINISH),
                         "boot.log", "qemu")
    header, events = fmt.loads(text, "boot.jsonl")
    assert [e["op"] for e in events] == ["create_gmem", "set_attributes", "populate", "populate", "finalize"]
    assert events[2]["src"] == "unknown"
    report = replay(Config(platform="snp"), events)
    assert report.conforms  # nothing expected that the model could contradict


@pytest.mark.parametrize("line,problem", [
    ("kvm_sev_snp_launch_update src 0x0 gpa 0x0 len 0x1000", "kvm_sev_snp_launch_update"),
    ("kvm_sev_snp_launch_update src 0x0 gpa 0x0 len 0x1000 (Normal)", "kvm_sev_snp_launch_update"),
    ("kvm_sev_snp_launch_update src 0xzz gpa 0x0 len 0x1000 (Normal page)", "kvm_sev_snp_launch_update"),
    ("kvm_sev_snp_launch_update src 0x0 gpa 0x10000000000000000 len 0x1000 (Normal page)",
     "kvm_sev_snp_launch_update"),
    ("kvm_sev_snp_launch_update src 0x0 gpa 0x800 len 0x1000 (Normal page)", "not page aligned"),
    ("kvm_sev_snp_launch_update src 0x0 gpa 0x0 len 0x0 (Normal page)", "empty"),
    ("kvm_sev_snp_launch_update src 0xfffffffffffff000 gpa 0x0 len 0x2000 (Normal page)", "2^64"),
    ("kvm_sev_snp_launch_update src 0x0 gpa 0xfffffffffffff000 len 0x2000 (Normal page)", "2^64"),
    ("kvm_sev_snp_launch_update src 0x0 gpa 0x8000 len 0x1000 (Normal page)", "in no memslot"),
    ("kvm_sev_snp_launch_update src 0x0 gpa 0x20000 len 0x1000 (Normal page)", "has no guest_memfd"),
    ("kvm_sev_snp_launch_finish id_block x", "kvm_sev_snp_launch_finish"),
])
def test_hostile_lines_are_input_errors_naming_the_line(line, problem):
    with pytest.raises(InputError) as e:
        qemu.convert(q(SLOT0, SLOT1, PLAIN, "kvm_run_exit cpu_index 0, reason 3", line), "boot.log")
    assert (e.value.path, e.value.line) == ("boot.log", 5)
    assert problem in e.value.problem


def test_the_command_exits_2_naming_file_and_line(tmp_path):
    log = tmp_path / "boot.log"
    log.write_bytes(q(SLOT0, lu(0, 0x800, 0x1000)))
    r = subprocess.run([sys.executable, "-m", "gmemlab", "import", str(log), "--from", "qemu"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert f"{log}:2" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("tail", [
    "src 0x" + "0" * 200_000 + " gpa 0x0 len 0x1000 (Normal page)",
    "src 0x0 gpa 0x0 len 0x1000 (" + "N" * 200_000 + " page)",
    "src 0x0 gpa 0x0 len 0x1000 (Normal page)" + " " * 200_000 + "x",
])
def test_long_hostile_lines_are_refused_in_linear_time(tail):
    start = time.perf_counter()
    with pytest.raises(InputError):
        qemu.convert(q(SLOT0, "kvm_sev_snp_launch_update " + tail), "boot.log")
    with pytest.raises(InputError):
        qemu.convert(q(SLOT0, "kvm_sev_snp_launch_finish id_block " + "a " * 100_000), "boot.log")
    assert time.perf_counter() - start < 2.0
