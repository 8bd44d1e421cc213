"""The recording importers: QEMU trace logs and ftrace text to gmemlab-trace/1.

Every line shape each importer reads, the committed samples byte for byte, memslot
translation, skip counting, errors that name the line, and a mutation property: any
damaged recording is either converted into a valid trace or refused with an InputError
naming a line, never another exception.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmemlab.errors import InputError, UsageError
from gmemlab.traces import format as fmt
from gmemlab.traces.importers import ftrace, qemu, run_import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDINGS = os.path.join(ROOT, "data", "recordings")

# recording, --from, --platform, committed conversion
SAMPLES = [
    ("qemu-snp-boot.log", "qemu", "snp", "qemu-snp-boot.jsonl"),
    ("qemu-snp-boot-pid.log", "qemu", "snp", "qemu-snp-boot-pid.jsonl"),
    ("qemu-snp-boot-iso.log", "qemu", "snp", "qemu-snp-boot-iso.jsonl"),
    ("ftrace-snp-boot.txt", "ftrace", "snp", "ftrace-snp-boot.jsonl"),
    ("tracefs-sw-protected.txt", "ftrace", "sw_protected", "tracefs-sw-protected.jsonl"),
    ("perf-script-sw-protected.txt", "ftrace", "sw_protected", "perf-script-sw-protected.jsonl"),
]

GIB = 1 << 30
# One guest_memfd (fd 20) for 4 GiB of RAM: 2 GiB below 4 GiB, 2 GiB above it at
# guest_memfd_offset 2 GiB (QEMU's q35 split of one RAMBlock).
SLOT_LOW = ("kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x80000000"
            " ua=0x7f0000000000 guest_memfd=20 guest_memfd_offset=0x0 ret=0")
SLOT_HIGH = ("kvm_set_user_memory AddrSpace#0 Slot#1 flags=0x4 gpa=0x100000000 size=0x80000000"
             " ua=0x7f0080000000 guest_memfd=20 guest_memfd_offset=0x80000000 ret=0")


def read(name: str) -> bytes:
    with open(os.path.join(RECORDINGS, name), "rb") as f:
        return f.read()


def q(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def qemu_events(*lines: str) -> tuple[list[dict], dict]:
    _, events, skipped = qemu.convert(q(*lines), "t.log")
    assert events[0]["op"] == "create_gmem"
    return events[1:], skipped


def ftrace_events(*lines: str) -> tuple[list[dict], dict]:
    _, events, skipped = ftrace.convert(q(*lines), "t.txt")
    assert events[0]["op"] == "create_gmem"
    return events[1:], skipped


def brief(ev: dict) -> tuple:
    keys = ("op", "offset", "size", "attributes", "private")
    return tuple(ev[k] for k in keys if k in ev)


# --- the committed samples ---------------------------------------------------------

@pytest.mark.parametrize("recording,kind,platform,converted", SAMPLES)
def test_sample_converts_to_the_committed_trace_byte_for_byte(recording, kind, platform, converted):
    text, _ = run_import(read(recording), os.path.join(RECORDINGS, recording), kind, platform)
    assert text.encode("utf-8") == read(converted)


@pytest.mark.parametrize("recording,kind,platform,converted", SAMPLES)
def test_sample_conversion_is_a_valid_trace_with_inferred_create_gmem(recording, kind, platform, converted):
    header, events = fmt.load(os.path.join(RECORDINGS, converted))
    assert header["platform"] == platform and header["source"] == "recorded"
    assert header["series"] == "v8" and header["page_size"] == 4096
    assert header["description"] == f"imported from {recording} ({'qemu log' if kind == 'qemu' else 'ftrace text'})"
    first = events[0]
    assert first["op"] == "create_gmem" and first["flags"] == () and "inferred" in first["note"]
    assert all(e["op"] != "create_gmem" for e in events[1:])
    assert all("expect" not in e for e in events)
    assert all(e["offset"] + e["size"] <= first["size"] for e in events[1:])


def test_sample_skip_counts():
    _, skipped = run_import(read("qemu-snp-boot.log"), "qemu-snp-boot.log", "qemu")
    assert skipped == {"kvm_memory_fault": 2, "kvm_run_exit": 5, "kvm_sev_init": 1,
                       "kvm_sev_snp_launch_start": 1,
                       "kvm_vm_ioctl": 1, "ram_block_attributes_state_change": 9}
    _, skipped = run_import(read("tracefs-sw-protected.txt"), "x.txt", "ftrace", "sw_protected")
    assert skipped == {"kvm_hypercall (nr 0x5)": 1, "kvm_page_fault": 1}


def test_same_input_gives_the_same_bytes():
    for recording, kind, platform, _ in SAMPLES:
        data = read(recording)
        assert run_import(data, recording, kind, platform) == run_import(bytes(data), recording, kind, platform)


# --- QEMU: line prefixes -----------------------------------------------------------

CONVERT = "kvm_convert_memory start 0x1000 size 0x2000 private_to_shared"


@pytest.mark.parametrize("line,t", [
    (CONVERT, None),                                                   # log backend, no -msg timestamp
    ("412880@1718712003.018774:" + CONVERT, 1718712003.018774),       # -msg timestamp=on, older QEMU
    ("2025-07-21T18:43:28.089815Z " + CONVERT, 1753123408.089815),     # -msg timestamp=on, newer QEMU
    ("2025-07-21T20:43:28.089815+02:00 " + CONVERT, 1753123408.089815),  # a non-UTC offset
    ("2025-07-21T18:43:28Z " + CONVERT, 1753123408.0),                 # no fraction
    ("2025-07-21T18:43:28.089815Z [fish food] qemu-system-x86_64: (1144713:CPU 0/KVM): " + CONVERT,
     1753123408.089815),                                               # message context prefixes
    ("qemu-system-x86_64: (1144713:CPU 0/KVM): " + CONVERT, None),     # program name, thread, no time
    (CONVERT + "\r", None),                                            # CRLF line ends
    ("   " + CONVERT + "   ", None),                                   # stray blanks
])
def test_qemu_line_prefixes(line, t):
    events, skipped = qemu_events(SLOT_LOW, line)
    assert [brief(e) for e in events] == [("set_attributes", 0x1000, 0x2000, "shared")]
    assert events[0].get("t") == t
    assert skipped == {}


def test_qemu_bad_iso_timestamp_is_an_input_error():
    with pytest.raises(InputError) as e:
        qemu_events(SLOT_LOW, "2025-13-21T18:43:28.089815Z " + CONVERT)
    assert e.value.line == 2 and "timestamp" in e.value.problem


# --- QEMU: memslots ----------------------------------------------------------------

def test_translation_through_a_second_slot_above_4gib():
    events, _ = qemu_events(SLOT_LOW, SLOT_HIGH,
                            "kvm_convert_memory start 0x100001000 size 0x1000 private_to_shared",
                            "kvm_convert_memory start 0x7ffff000 size 0x1000 private_to_shared")
    assert [brief(e) for e in events] == [("set_attributes", 0x80001000, 0x1000, "shared"),
                                          ("set_attributes", 0x7ffff000, 0x1000, "shared")]
    _, all_events, _ = qemu.convert(q(SLOT_LOW, SLOT_HIGH), "t.log")
    assert all_events[0]["size"] == 4 * GIB  # covers both slots of the guest_memfd


def test_range_over_two_slots_contiguous_in_the_guest_memfd_is_one_event():
    events, _ = qemu_events(
        "kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x100000 ua=0x7f0000000000 guest_memfd=5 guest_memfd_offset=0x0 ret=0",
        "kvm_set_user_memory AddrSpace#0 Slot#1 flags=0x4 gpa=0x100000 size=0x100000 ua=0x7f0000100000 guest_memfd=5 guest_memfd_offset=0x100000 ret=0",
        "kvm_convert_memory start 0xff000 size 0x2000 shared_to_private")
    assert [brief(e) for e in events] == [("set_attributes", 0xff000, 0x2000, "private")]


def test_range_over_two_slots_apart_in_the_guest_memfd_is_split_with_a_note():
    events, _ = qemu_events(
        "kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x100000 ua=0x7f0000000000 guest_memfd=5 guest_memfd_offset=0x200000 ret=0",
        "kvm_set_user_memory AddrSpace#0 Slot#1 flags=0x4 gpa=0x100000 size=0x100000 ua=0x7f0000100000 guest_memfd=5 guest_memfd_offset=0x0 ret=0",
        "kvm_convert_memory start 0xff000 size 0x2000 shared_to_private")
    assert [brief(e) for e in events] == [("set_attributes", 0x2ff000, 0x1000, "private"),
                                          ("set_attributes", 0x0, 0x1000, "private")]
    assert events[0]["note"].endswith("piece 1 of 2") and events[1]["note"].endswith("piece 2 of 2")


def test_second_guest_memfd_is_laid_after_the_first():
    header, events, _ = qemu.convert(q(
        SLOT_LOW,
        "kvm_set_user_memory AddrSpace#0 Slot#3 flags=0x4 gpa=0xffc00000 size=0x400000 ua=0x7f3b20000000 guest_memfd=22 guest_memfd_offset=0x0 ret=0",
        "kvm_convert_memory start 0xffc01000 size 0x1000 shared_to_private"), "t.log")
    assert events[0]["size"] == 2 * GIB + 0x400000
    assert "fd 20 at offset 0x0, fd 22 at offset 0x80000000" in events[0]["note"]
    assert brief(events[1]) == ("set_attributes", 2 * GIB + 0x1000, 0x1000, "private")


@pytest.mark.parametrize("slot_line,gmem", [
    (SLOT_LOW, True),
    # before "trace: Split address space and slot id": no AddrSpace#
    ("kvm_set_user_memory Slot#0 flags=0x4 gpa=0x0 size=0x80000000 ua=0x7f0000000000 guest_memfd=20 guest_memfd_offset=0x0 ret=0", True),
    # before KVM_SET_USER_MEMORY_REGION2: no guest_memfd fields, so no guest_memfd
    ("kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 size=0x80000000 ua=0x7f0000000000 ret=0", False),
    # a plain RAM slot of a guest_memfd VM (e.g. vga.vram)
    ("kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 size=0x80000000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0", False),
])
def test_kvm_set_user_memory_shapes(slot_line, gmem):
    log = [slot_line, SLOT_HIGH, "kvm_convert_memory start 0x2000 size 0x1000 shared_to_private"]
    if gmem:
        events, _ = qemu_events(*log)
        assert [brief(e) for e in events] == [("set_attributes", 0x2000, 0x1000, "private")]
    else:
        with pytest.raises(InputError) as e:
            qemu_events(*log)
        assert e.value.line == 3 and "has no guest_memfd" in e.value.problem


def test_deleted_slot_no_longer_translates():
    with pytest.raises(InputError) as e:
        qemu_events(SLOT_HIGH, SLOT_LOW,
                    SLOT_LOW.replace("size=0x80000000", "size=0x0"),
                    "kvm_convert_memory start 0x2000 size 0x1000 shared_to_private")
    assert e.value.line == 4 and "in no memslot" in e.value.problem


def test_failed_kvm_set_user_memory_changes_nothing_and_is_counted():
    events, skipped = qemu_events(SLOT_LOW, SLOT_HIGH.replace("ret=0", "ret=-22"),
                                  "kvm_convert_memory start 0x2000 size 0x1000 shared_to_private")
    assert skipped == {"kvm_set_user_memory (failed, ret != 0)": 1}
    with pytest.raises(InputError):
        qemu_events(SLOT_LOW, SLOT_HIGH.replace("ret=0", "ret=-22"),
                    "kvm_convert_memory start 0x100000000 size 0x1000 shared_to_private")


def test_smm_address_space_slots_do_not_translate():
    with pytest.raises(InputError) as e:
        qemu_events(SLOT_LOW, SLOT_HIGH.replace("AddrSpace#0 Slot#1", "AddrSpace#1 Slot#1"),
                    "kvm_convert_memory start 0x100000000 size 0x1000 shared_to_private")
    assert e.value.line == 3


@pytest.mark.parametrize("line,problem", [
    ("kvm_convert_memory start 0x200000000 size 0x1000 shared_to_private", "gpa 0x200000000 is in no memslot"),
    ("kvm_convert_memory start 0x7ffff000 size 0x2000 private_to_shared", "gpa 0x80000000 is in no memslot"),
    ("kvm_hc_map_gpa_range gpa 0x200000000 size 0x1000 attributes 0x10 flags 0x1", "gpa 0x200000000 is in no memslot"),
])
def test_gpa_in_no_guest_memfd_slot_is_an_input_error_naming_the_line(line, problem):
    with pytest.raises(InputError) as e:
        qemu_events(SLOT_LOW, SLOT_HIGH, line)
    assert e.value.line == 3 and problem in e.value.problem
    assert str(e.value).startswith("t.log:3: ")


def test_conversion_before_any_memslot_names_the_missing_events():
    with pytest.raises(InputError) as e:
        qemu_events("kvm_convert_memory start 0x1000 size 0x1000 shared_to_private", SLOT_LOW)
    assert e.value.line == 1 and "kvm_set_user_memory" in e.value.problem


def test_conversions_qemu_itself_drops_are_skipped_and_counted():
    # QEMU traces kvm_convert_memory before checking it: an unaligned or empty range is
    # refused, and a private_to_shared range outside every memslot (TDX vMMIO) ignored.
    events, skipped = qemu_events(
        SLOT_LOW,
        "kvm_convert_memory start 0x1800 size 0x1000 shared_to_private",
        "kvm_convert_memory start 0x1000 size 0x0 private_to_shared",
        "kvm_convert_memory start 0xfe000000 size 0x1000 private_to_shared",
        "kvm_hc_map_gpa_range gpa 0xfe000000 size 0x1000 attributes 0x0 flags 0x1")
    assert events == []
    assert skipped == {
        "kvm_convert_memory (empty or not page aligned: QEMU refuses it)": 2,
        "kvm_convert_memory (to shared outside guest RAM: QEMU ignores it)": 1,
        "kvm_hc_map_gpa_range (to shared outside guest RAM: QEMU ignores it)": 1,
    }


def test_no_guest_memfd_slot_at_all_is_an_input_error():
    with pytest.raises(InputError) as e:
        qemu.convert(q("kvm_run_exit cpu_index 0, reason 3", "kvm_cpu_exec ", ""), "t.log")
    assert e.value.line == 2 and "kvm_set_user_memory" in e.value.problem
    with pytest.raises(InputError) as e:
        qemu.convert(b"", "empty.log")
    assert e.value.line == 1


# --- QEMU: events ------------------------------------------------------------------

def test_kvm_hc_map_gpa_range_becomes_map_gpa_range():
    events, _ = qemu_events(SLOT_LOW, SLOT_HIGH,
                            "kvm_hc_map_gpa_range gpa 0x100200000 size 0x200000 attributes 0x11 flags 0x1",
                            "kvm_hc_map_gpa_range gpa 0x3000 size 0x1000 attributes 0x0 flags 0x1")
    assert [brief(e) for e in events] == [("map_gpa_range", 0x80200000, 0x200000, True),
                                          ("map_gpa_range", 0x3000, 0x1000, False)]


@pytest.mark.parametrize("flags,view,attributes", [("0x8", "private", "private"), ("0x0", "shared", "shared")])
def test_kvm_memory_fault_is_counted_and_noted_on_the_conversion_answering_it(flags, view, attributes):
    direction = "shared_to_private" if attributes == "private" else "private_to_shared"
    events, skipped = qemu_events(SLOT_LOW, f"kvm_memory_fault start 0x7fe00000 size 0x1000 flags {flags}",
                                  "kvm_run_exit cpu_index 1, reason 39",
                                  f"kvm_convert_memory start 0x7fe00000 size 0x1000 {direction}",
                                  f"kvm_convert_memory start 0x7fe00000 size 0x1000 {direction}")
    assert [brief(e) for e in events] == [("set_attributes", 0x7fe00000, 0x1000, attributes)] * 2
    assert events[0]["note"] == f"answers kvm_memory_fault at line 2 (a {view} access)"
    assert "note" not in events[1]
    assert skipped == {"kvm_memory_fault": 1, "kvm_run_exit": 1}


def test_unknown_events_and_other_lines_are_skipped_and_counted():
    events, skipped = qemu_events(
        SLOT_LOW, "kvm_run_exit cpu_index 0, reason 3", "kvm_run_exit cpu_index 1, reason 39",
        "kvm_cpu_exec ", "ram_block_attributes_state_change offset 0x0 size 0x1000 from 'populated' to 'discarded'",
        "qemu-system-x86_64: warning: something", "Formatting 'disk.qcow2', fmt=qcow2", "", CONVERT)
    assert len(events) == 1
    assert skipped == {"(not a trace event)": 2, "kvm_cpu_exec": 1, "kvm_run_exit": 2,
                       "ram_block_attributes_state_change": 1}


@pytest.mark.parametrize("line,name", [
    ("kvm_convert_memory start 0x1000 size 0x1000 to_private", "kvm_convert_memory"),
    ("kvm_convert_memory start 0x1000 size 0x1000", "kvm_convert_memory"),
    ("kvm_convert_memory start 0xzz000 size 0x1000 shared_to_private", "kvm_convert_memory"),
    ("kvm_convert_memory start 0x10000000000000000 size 0x1000 shared_to_private", "kvm_convert_memory"),
    ("kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x1000 ret=0", "kvm_set_user_memory"),
    ("kvm_set_user_memory AddrSpace#0 Slot#9 flags=0x4 gpa=0xfffffffffffff000 size=0x2000 ua=0x0 guest_memfd=3 guest_memfd_offset=0x0 ret=0",
     "kvm_set_user_memory"),
    ("kvm_memory_fault start 0x1000 size 0x1000", "kvm_memory_fault"),
    ("kvm_hc_map_gpa_range gpa 0x1000 size 0x1000 attributes 0x10", "kvm_hc_map_gpa_range"),
    ("ram_block_attributes_state_change offset 0x0 size 0x1000", "ram_block_attributes_state_change"),
    ("412880@1718712003.018774:kvm_convert_memory start 0x1000", "kvm_convert_memory"),
])
def test_malformed_line_of_a_known_qemu_event_is_an_input_error_naming_the_line(line, name):
    with pytest.raises(InputError) as e:
        qemu.convert(q(SLOT_LOW, "kvm_run_exit cpu_index 0, reason 3", line), "boot.log")
    assert e.value.line == 3 and e.value.path == "boot.log"
    assert name in e.value.problem


# --- ftrace: line shapes -----------------------------------------------------------

ATTR_FIELDS = "0x000000000ffc00 -- 0x00000000100000 [0x8]"


@pytest.mark.parametrize("line,t", [
    # trace-cmd report
    ("        qemu-kvm-12693 [136]  1430.988101: kvm_vm_set_mem_attributes: " + ATTR_FIELDS, 1430.988101),
    # /sys/kernel/tracing/trace, irq/preempt flags column (the tracepoint patch's sample)
    ("qemu-kvm-12693   [136] .....  1430.988101: kvm_vm_set_mem_attributes:  " + ATTR_FIELDS, 1430.988101),
    ("   <...>-12693   [059] .N...  1430.988101: kvm_vm_set_mem_attributes:  " + ATTR_FIELDS, 1430.988101),
    # tracefs with options/record-tgid
    ("qemu-kvm-12693  (  12690) [136] d..1.  1430.988101: kvm_vm_set_mem_attributes: " + ATTR_FIELDS, 1430.988101),
    ("qemu-kvm-12693  (-------) [136] .....  1430.988101: kvm_vm_set_mem_attributes: " + ATTR_FIELDS, 1430.988101),
    # comm with spaces and dashes (QEMU vCPU threads), trace-cmd report -t (nanoseconds)
    ("   CPU 0/KVM-x-12701 [005]  1430.988101234: kvm_vm_set_mem_attributes: " + ATTR_FIELDS, 1430.988101234),
    # perf script, with and without -F +pid
    ("        qemu-kvm 12693 [136]  1430.988101: kvm:kvm_vm_set_mem_attributes: " + ATTR_FIELDS, 1430.988101),
    ("       CPU 0/KVM 12690/12701 [005]  1430.988101: kvm:kvm_vm_set_mem_attributes: " + ATTR_FIELDS, 1430.988101),
    # an earlier revision of the tracepoint marked pieces of a split request with " ."
    ("qemu-kvm-12693   [187] .....  1430.988101: kvm_vm_set_mem_attributes:  . " + ATTR_FIELDS, 1430.988101),
])
def test_ftrace_line_shapes(line, t):
    events, skipped = ftrace_events(line)
    assert [brief(e) for e in events] == [("set_attributes", 0xFFC00000, 0x400000, "private")]
    assert events[0]["t"] == t and skipped == {}


@pytest.mark.parametrize("fields,offset,size,attributes", [
    ("0000000000000000 -- 0x000000000000a0 [0x8]", 0, 0xA0000, "private"),  # libtraceevent prints 0 without 0x
    ("0x00000000000000 -- 0x000000000000a0 [0x8]", 0, 0xA0000, "private"),  # the kernel prints 0x0...
    ("0x00000000007e6d -- 0x00000000007e6e [0x0]", 0x7E6D000, 0x1000, "shared"),
])
def test_kvm_vm_set_mem_attributes_fields(fields, offset, size, attributes):
    events, _ = ftrace_events("qemu-kvm-12693 [002]  1428.512301: kvm_vm_set_mem_attributes: " + fields)
    assert [brief(e) for e in events] == [("set_attributes", offset, size, attributes)]


def test_kvm_hypercall_map_gpa_range_and_others():
    events, skipped = ftrace_events(
        " private_mem_con-4185 [001] .....  5120.774950: kvm_hypercall: nr 0xc a0 0x10000000 a1 0x10 a2 0x0 a3 0x0",
        " private_mem_con-4185 [001] .....  5120.775604: kvm_hypercall: nr 0xc a0 0x10000000 a1 0x10 a2 0x10 a3 0x0",
        " private_mem_con-4185 [001] .....  5120.776120: kvm_hypercall: nr 0xc a0 0x10100000 a1 0x100 a2 0x11 a3 0x0",
        " private_mem_con-4185 [001] .....  5120.777015: kvm_hypercall: nr 0x5 a0 0x0 a1 0x1 a2 0x0 a3 0x0",
        " private_mem_con-4185 [001] .....  5120.777016: kvm_hypercall: nr 0xc a0 0x10000800 a1 0x1 a2 0x0 a3 0x0",
        " private_mem_con-4185 [001] .....  5120.777017: kvm_hypercall: nr 0xc a0 0x10000000 a1 0x0 a2 0x0 a3 0x0")
    assert [brief(e) for e in events] == [("map_gpa_range", 0x10000000, 0x10000, False),
                                          ("map_gpa_range", 0x10000000, 0x10000, True),
                                          ("map_gpa_range", 0x10100000, 0x100000, True)]
    assert skipped == {"kvm_hypercall (nr 0x5)": 1,
                       "kvm_hypercall (nr 0xc refused by KVM: unaligned gpa or no pages)": 2}


def test_ftrace_skips_page_faults_unknown_events_headers_and_counts_lost_events():
    events, skipped = ftrace_events(
        "# tracer: nop", "#", "cpus=16", "version = 6", "CPU 3 is empty",
        "   CPU 0/KVM-12701 [005]  1430.988104: kvm_page_fault:       vcpu 0 rip 0xfffffff0 address 0x00000000fffffff0 error_code 0x100000014",
        "   CPU 0/KVM-12701 [005]  1430.988105: kvm_page_fault: address fffffff0 error_code 14",
        "       CPU 0/KVM 12701 [005]  1430.988106: kvm:kvm_page_fault: vcpu 0 rip 0x402b6e address 0x0000000010000000 error_code 0x182",
        "   CPU 0/KVM-12701 [005]  1430.988101: kvm_exit:             vcpu 0 reason npf rip 0xfffffff0",
        "   CPU 0/KVM-12701 [005]  1430.988102: kvm_entry: vcpu 0, rip 0xfffffff0",
        "CPU:2 [LOST 17 EVENTS]", "CPU:3 [4 EVENTS DROPPED]",
        "some other text",
        "qemu-kvm-12693 [002]  1428.512301: kvm_vm_set_mem_attributes: " + ATTR_FIELDS)
    assert len(events) == 1
    assert skipped == {"(lost events)": 21, "(not a trace event)": 1, "kvm_entry": 1, "kvm_exit": 1,
                       "kvm_page_fault": 3}


def test_ftrace_create_gmem_covers_the_highest_offset():
    _, events, _ = ftrace.convert(q(
        "qemu-kvm-12693 [002]  1.5: kvm_vm_set_mem_attributes: 0x00000000000010 -- 0x00000000000020 [0x8]",
        "vcpu-1 [002]  1.6: kvm_hypercall: nr 0xc a0 0x30000 a1 0x3 a2 0x10 a3 0x0"), "t.txt")
    assert events[0]["size"] == 0x33000 and events[0]["line"] == 1 and events[0]["flags"] == ()


@pytest.mark.parametrize("line,name", [
    ("qemu-kvm-12693 [002]  1428.512301: kvm_vm_set_mem_attributes: 0x10 - 0x20 [0x8]", "kvm_vm_set_mem_attributes"),
    ("qemu-kvm-12693 [002]  1428.512301: kvm_vm_set_mem_attributes: 0x20 -- 0x10 [0x8]", "kvm_vm_set_mem_attributes"),
    ("qemu-kvm-12693 [002]  1428.512301: kvm_vm_set_mem_attributes: 0x20 -- 0x20 [0x8]", "kvm_vm_set_mem_attributes"),
    ("qemu-kvm-12693 [002]  1428.512301: kvm_vm_set_mem_attributes:", "kvm_vm_set_mem_attributes"),
    ("CPU 0/KVM-12701 [005]  5120.77: kvm_hypercall: nr 0xc a0 0x0", "kvm_hypercall"),
    ("CPU 0/KVM-12701 [005]  5120.77: kvm_hypercall: nr 0xc a0 0x1000 a1 0x10000000000000 a2 0x0 a3 0x0", "kvm_hypercall"),
    ("CPU 0/KVM-12701 [005]  5120.77: kvm_page_fault: vcpu 0 rip 0x1", "kvm_page_fault"),
    ("qemu-kvm-12693 [xx]  1428.512301: kvm_vm_set_mem_attributes: " + ATTR_FIELDS, "kvm_vm_set_mem_attributes"),
])
def test_malformed_line_of_a_known_ftrace_event_is_an_input_error_naming_the_line(line, name):
    with pytest.raises(InputError) as e:
        ftrace.convert(q("cpus=2", "qemu-kvm-12693 [002]  1.0: kvm_exit: reason npf", line), "boot.txt")
    assert e.value.line == 3 and e.value.path == "boot.txt" and name in e.value.problem


def test_ftrace_without_any_converted_event_is_an_input_error():
    with pytest.raises(InputError) as e:
        ftrace.convert(q("cpus=2", "qemu-kvm-12693 [002]  1.0: kvm_exit: reason npf"), "t.txt")
    assert e.value.line == 2 and "kvm_vm_set_mem_attributes" in e.value.problem


# --- run_import --------------------------------------------------------------------

def test_run_import_refuses_unknown_kind_and_platform():
    with pytest.raises(UsageError, match="known: ftrace, qemu"):
        run_import(b"", "x", "strace")
    with pytest.raises(UsageError, match="known: sw_protected, snp, tdx"):
        run_import(read("qemu-snp-boot.log"), "x", "qemu", "sev")


def test_run_import_platform_goes_in_the_header():
    text, _ = run_import(read("qemu-snp-boot-pid.log"), "boot.log", "qemu", "tdx")
    assert json.loads(text.splitlines()[0])["platform"] == "tdx"


@pytest.mark.parametrize("kind", ["qemu", "ftrace"])
@pytest.mark.parametrize("data,line", [(b"ok\n\xff\xfe\n", 2), (b"a\nb\x00c\n", 2)])
def test_binary_input_is_an_input_error(kind, data, line):
    with pytest.raises(InputError) as e:
        run_import(data, "x.bin", kind)
    assert e.value.line == line


# --- damaged recordings ------------------------------------------------------------

def _mutate(data: bytes, ops: list) -> bytes:
    for op in ops:
        kind, a, b = op
        if kind == "flip" and data:
            i = a % len(data)
            data = data[:i] + bytes([data[i] ^ (b % 255 + 1)]) + data[i + 1:]
        elif kind == "truncate":
            data = data[: a % (len(data) + 1)]
        elif kind in ("swap", "drop", "dup"):
            lines = data.split(b"\n")
            i, j = a % len(lines), b % len(lines)
            if kind == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            elif kind == "drop":
                del lines[i]
            else:
                lines.insert(j, lines[i])
            data = b"\n".join(lines)
        elif kind == "garbage":
            i = a % (len(data) + 1)
            data = data[:i] + bytes([b % 256]) * ((b // 256) % 40 + 1) + data[i:]
        elif kind == "text":
            i = a % (len(data) + 1)
            data = data[:i] + b + data[i:]
    return data


_ops = st.lists(st.one_of(
    st.tuples(st.sampled_from(["flip", "truncate", "swap", "drop", "dup", "garbage"]),
              st.integers(0, 1 << 20), st.integers(0, 1 << 16)),
    st.tuples(st.just("text"), st.integers(0, 1 << 20),
              st.sampled_from([b" 0x", b"0", b"\n", b"-- ", b"[", b"]", b":", b"ffffffffffffffff",
                               b"size=0x0", b"Slot#1", b"private_to_shared", b"\r\n", b"\t", b"@", b"Z "])),
), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=st.sampled_from(SAMPLES), ops=_ops)
def test_damaged_recording_is_converted_or_refused_with_a_line(sample, ops):
    recording, kind, platform, _ = sample
    data = _mutate(read(recording), ops)
    try:
        text, skipped = run_import(data, recording, kind, platform)
    except InputError as e:
        assert isinstance(e.line, int) and e.line >= 1
        assert str(e).startswith(f"{recording}:{e.line}: ")
        return
    # Accepted: a valid trace whose create_gmem covers every event, the same each time.
    header, events = fmt.loads(text, "converted.jsonl")
    assert events[0]["op"] == "create_gmem"
    assert all(e["offset"] + e["size"] <= events[0]["size"] for e in events[1:])
    assert all(isinstance(v, int) and v > 0 for v in skipped.values())
    assert run_import(data, recording, kind, platform) == (text, skipped)
