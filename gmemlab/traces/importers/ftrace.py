"""Import kernel tracepoint text (trace-cmd report, tracefs, perf script) into gmemlab-trace/1.

Line shapes read:

- ``trace-cmd report`` and /sys/kernel/tracing/trace print one event a line as
  ``<comm>-<pid> [<cpu>] <secs>.<usecs>: <event>: <fields>``; tracefs (and trace-cmd
  with latency output) adds the irqs-off/need-resched/preempt column after the CPU
  (``qemu-kvm-12693 [136] ..... 1430.988101: kvm_vm_set_mem_attributes: ...``, the
  sample output of Liam Merwick's patch adding the tracepoint), and the ``record-tgid``
  option a ``(<tgid>)`` column before it. The comm may hold spaces and dashes (QEMU's
  vCPU threads are "CPU 0/KVM"): the pid is the last ``-<digits>`` before the CPU.
- ``perf script`` prints ``<comm> <tid> [<cpu>] <secs>.<usecs>: <system>:<event>:
  <fields>`` (``<pid>/<tid>`` with ``-F +pid``).
- Header and comment lines (``# tracer: nop``, ``cpus=8``, ``version = 6``, ``CPU 3 is
  empty``) are ignored; ``CPU:2 [LOST 17 EVENTS]`` (tracefs) and ``CPU:2 [17 EVENTS
  DROPPED]`` are counted under "(lost events)", since the converted trace then misses
  events.

The fields come from each tracepoint's TP_printk; trace-cmd and perf format them in
user space (libtraceevent), where ``%#llx`` prints 0 as ``0`` without the ``0x`` the
kernel's vsnprintf prints, so both spellings are read.

- ``kvm:kvm_vm_set_mem_attributes`` (include/trace/events/kvm.h): "%#016llx -- %#016llx
  [0x%lx]" = start gfn, end gfn (exclusive), attributes -> set_attributes with offset =
  gfn * 4096 and "private" when KVM_MEMORY_ATTRIBUTE_PRIVATE (0x8) is set, else
  "shared". An earlier revision of the patch printed ``" ."`` before a piece of a split
  request; it is read too. The tracepoint sits on the per-VM KVM_SET_MEMORY_ATTRIBUTES
  path only: conversions through the guest_memfd ioctl of the in-place series have no
  tracepoint (record QEMU's trace events instead).
- ``kvm:kvm_hypercall`` (arch/x86/kvm/trace.h): "nr 0x%lx a0 0x%lx a1 0x%lx a2 0x%lx a3
  0x%lx". nr 0xc is KVM_HC_MAP_GPA_RANGE (Documentation/virt/kvm/x86/hypercalls.rst: a0
  the gpa, a1 the number of 4 KiB pages, a2 bit 4 = encrypted) -> map_gpa_range. KVM
  refuses an unaligned gpa, zero pages or a wrapping range before any exit to user space
  (kvm_emulate_hypercall); such lines are skip-counted. Other hypercall numbers are
  skip-counted by number. Only a guest's own VMCALL/VMMCALL passes this tracepoint: an
  SNP guest's page-state change reaches user space as the same KVM_HC_MAP_GPA_RANGE exit
  but is built directly in arch/x86/kvm/svm/sev.c (snp_begin_psc, snp_begin_psc_msr),
  so an SNP recording shows only the VMM's answer (kvm_vm_set_mem_attributes); QEMU's
  kvm_hc_map_gpa_range sees both kinds.
- ``kvm:kvm_page_fault`` (arch/x86/kvm/trace.h): "vcpu %u rip 0x%lx address 0x%016llx
  error_code 0x%llx", formerly "address %lx error_code %llx". Read and skip-counted: a
  fault is KVM's side of an access, not one of the trace format's ops (it tells neither
  the value nor whether it ended in a conversion).

Every other event is skipped and counted by name.

Modelling choice, marked as such: the trace format binds one guest_memfd at gpa 0, so a
gpa is taken as the guest_memfd offset (a kernel trace shows no memslots), and the
create_gmem size is the highest offset seen, rounded up to a page. A recording of
several VMs mixes them: record one (trace-cmd record -P <qemu pid>).

>>> text = b"qemu-kvm-12693 [136] ..... 1430.988101: kvm_vm_set_mem_attributes:  0x000000000ffc00 -- 0x00000000100000 [0x8]\\n"
>>> header, events, skipped = convert(text, "boot.txt")
>>> [(e["op"], hex(e.get("offset", 0)), hex(e["size"])) for e in events]
[('create_gmem', '0x0', '0x100000000'), ('set_attributes', '0xffc00000', '0x400000')]
"""

from __future__ import annotations

import re
from typing import Any

from gmemlab.errors import InputError
from gmemlab.model.events import Event, event
from gmemlab.traces.format import iter_lines
from gmemlab.traces.importers import (
    MAX_U64, NOT_AN_EVENT, PAGE_SIZE, check_range, create_gmem, finish_skipped, make_header,
    round_up, shown,
)

KVM_MEMORY_ATTRIBUTE_PRIVATE = 0x8   # include/uapi/linux/kvm.h, (1ULL << 3)
KVM_HC_MAP_GPA_RANGE = 0xC           # include/uapi/linux/kvm_para.h, 12
KVM_MAP_GPA_RANGE_ENCRYPTED = 0x10   # include/uapi/linux/kvm_para.h, ENC_STAT(1) = 1 << 4

# Linear time on any line (a line of 200k spaces, digits or punctuation included): every
# quantifier before the event is bounded (a comm is at most 15 characters in the kernel,
# TASK_COMM_LEN; 64 allows for "<...>" and padding), so the lazy comm and the spaces
# around it cannot backtrack against each other over the whole line; the rest is
# possessive or between disjoint classes. MAX_PREFIX is the longest prefix read.
_COMM = r"(?P<comm>.{0,64}?)"
_SP = r"\s{1,32}+"
_TAIL = (r"(?P<ts>\d{1,12}+(?:\.\d{1,12}+)?):\s++(?:(?P<system>\w{1,128}+):)?(?P<event>\w{1,128}+):"
         r"(?:\s++(?P<args>.*))?\Z")
_TRACE_CMD = re.compile(
    r"\s{0,64}+" + _COMM + r"-(?P<pid>\d{1,10}+)" + _SP + r"(?:\(\s{0,16}+(?:\d{1,10}+|-{1,16}+)\)" + _SP
    + r")?\[(?P<cpu>\d{1,5}+)\]" + _SP + r"(?:[^\s\[\]]{1,8}+" + _SP + r")?" + _TAIL)
_PERF_SCRIPT = re.compile(
    r"\s{0,64}+" + _COMM + _SP + r"(?P<pid>\d{1,10}+)(?:/\d{1,10}+)?" + _SP + r"\[(?P<cpu>\d{1,5}+)\]"
    + _SP + _TAIL)
_IGNORED = re.compile(r"#.*|cpus=\d+|version = \S+|CPU \d+ is empty")
_LOST = re.compile(r"CPU:\s*\d+ \[(?:LOST (\d{1,20}) EVENTS|(\d{1,20}) EVENTS DROPPED)\]")

_X = r"([0-9a-fA-F]{1,16})"
_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "kvm_vm_set_mem_attributes": (re.compile(
        r"(?:\.\s+)?(?:0x)?" + _X + r" -- (?:0x)?" + _X + r" \[0x" + _X + r"\]\Z"),
        "START_GFN -- END_GFN [0xATTR]"),
    "kvm_hypercall": (re.compile(
        r"nr 0x" + _X + r" a0 0x" + _X + r" a1 0x" + _X + r" a2 0x" + _X + r" a3 0x" + _X + r"\Z"),
        "nr 0x.. a0 0x.. a1 0x.. a2 0x.. a3 0x.."),
    "kvm_page_fault": (re.compile(
        r"(?:vcpu \d{1,10} rip 0x[0-9a-fA-F]{1,16} )?address (?:0x)?" + _X
        + r" error_code (?:0x)?" + _X + r"\Z"),
        "vcpu N rip 0x.. address 0x.. error_code 0x.."),
}
_KNOWN_MENTION = re.compile(r"\b(" + "|".join(_FORMATS) + r"):")


def convert(data: bytes | str, path: str = "<ftrace text>", platform: str = "snp"
            ) -> tuple[dict[str, Any], list[Event], dict[str, int]]:
    """trace-cmd report / tracefs / perf script text -> (header, events, {skipped: count})."""
    header = make_header(path, platform, "ftrace text")
    skipped: dict[str, int] = {}
    events: list[Event] = []
    last_line = 1

    def skip(key: str, n: int = 1) -> None:
        skipped[key] = skipped.get(key, 0) + n

    for n, raw in iter_lines(data, path):
        line = raw.strip()
        if not line:
            continue
        last_line = n
        if _IGNORED.fullmatch(line):
            continue
        lost = _LOST.fullmatch(line)
        if lost:
            skip("(lost events)", int(lost.group(1) or lost.group(2)))
            continue
        m = _TRACE_CMD.fullmatch(line) or _PERF_SCRIPT.fullmatch(line)
        if m is None:
            known = _KNOWN_MENTION.search(line)
            if known:
                raise InputError(path, n, f"{known.group(1)}: cannot read the line's prefix; expected"
                                 " trace-cmd 'COMM-PID [CPU] SECS: EVENT: ...' or perf script"
                                 f" 'COMM TID [CPU] SECS: SYSTEM:EVENT: ...', got {shown(line)}")
            skip(NOT_AN_EVENT)
            continue
        name, args = m.group("event"), (m.group("args") or "").strip()
        if name not in _FORMATS:
            skip(name)
            continue
        pattern, expected = _FORMATS[name]
        fm = pattern.fullmatch(args)
        if fm is None:
            raise InputError(path, n, f"{name}: expected {expected!r}, got {shown(args)}")
        t = float(m.group("ts"))
        if name == "kvm_page_fault":
            skip(name)
            continue
        if name == "kvm_vm_set_mem_attributes":
            start, end, attrs = (int(x, 16) for x in fm.groups())
            if end <= start:
                raise InputError(path, n, f"{name}: end gfn {end:#x} is not above start gfn {start:#x}")
            offset, size = start * PAGE_SIZE, (end - start) * PAGE_SIZE
            check_range(path, n, name, offset, size)
            attributes = "private" if attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE else "shared"
            events.append(event("set_attributes", offset=offset, size=size, attributes=attributes, t=t, line=n))
            continue
        nr, gpa, npages, attrs, _ = (int(x, 16) for x in fm.groups())
        if nr != KVM_HC_MAP_GPA_RANGE:
            skip(f"{name} (nr {nr:#x})")
            continue
        if gpa % PAGE_SIZE or npages == 0 or gpa // PAGE_SIZE + npages > MAX_U64:
            skip(f"{name} (nr 0xc refused by KVM: unaligned gpa or no pages)")
            continue
        check_range(path, n, f"{name} (KVM_HC_MAP_GPA_RANGE)", gpa, npages * PAGE_SIZE)
        events.append(event("map_gpa_range", offset=gpa, size=npages * PAGE_SIZE,
                            private=bool(attrs & KVM_MAP_GPA_RANGE_ENCRYPTED), t=t, line=n))
    if not events:
        raise InputError(path, last_line, "no kvm_vm_set_mem_attributes or kvm_hypercall (nr 0xc) event"
                         " in the recording: record with trace-cmd record -e kvm:kvm_vm_set_mem_attributes"
                         " -e kvm:kvm_hypercall")
    highest = max(events, key=lambda e: e["offset"] + e["size"])
    size = round_up(highest["offset"] + highest["size"])
    if size > MAX_U64:
        raise InputError(path, highest["line"], "the range ends at 2^64: no guest_memfd size can cover it")
    note = ("size inferred from the highest offset seen, rounded up to a page; gpa taken as the"
            " guest_memfd offset; the recording does not show the creation flags")
    return header, [create_gmem(size, events[0]["line"], note)] + events, finish_skipped(skipped)
