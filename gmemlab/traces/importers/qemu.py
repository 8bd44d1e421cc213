"""Import a QEMU trace log (the "log" trace backend) into gmemlab-trace/1.

Line shapes (checked against qemu.git):

- scripts/tracetool/backend/log.py: every enabled event is one qemu_log() line,
  ``<event name> <the event's format string>``; an event with an empty format string
  leaves ``<event name> `` alone on its line.
- With ``-msg timestamp=on``, QEMU before the commit "log: make '-msg timestamp=on' apply
  to all qemu_log usage" (Daniel P. Berrangé, Message-Id
  <20250721185452.3016488-1-berrange@redhat.com>) had the log backend prefix
  ``<thread id>@<seconds>.<microseconds>:`` with no space before the name, e.g.
  ``2986097@1753122905.917621:kvm_convert_memory start 0x...``. Since that commit
  qemu_log() itself prefixes g_date_time_format_iso8601() of the UTC time and a space:
  ``2025-07-21T18:43:28.089815Z kvm_convert_memory start 0x...``.
- Later message-context patches on qemu-devel (util/message.c, qmessage_context_print)
  may add ``[workload] ``, ``<program>: `` and ``(<tid>:<thread name>): `` after the
  timestamp; they are accepted and ignored.

Events converted (format strings from accel/kvm/trace-events,
target/i386/kvm/trace-events, system/trace-events):

- ``kvm_set_user_memory`` "AddrSpace#%d Slot#%d flags=0x%x gpa=0x%PRIx64 size=0x%PRIx64
  ua=0x%PRIx64 guest_memfd=%d guest_memfd_offset=0x%PRIx64 ret=%d": the memslots. QEMU
  traces every KVM_SET_USER_MEMORY_REGION(2) after it returns (kvm_set_user_memory_region);
  size 0 deletes the slot, ret != 0 changed nothing. Older QEMU printed no
  ``AddrSpace#`` (before "trace: Split address space and slot id in
  trace_kvm_set_user_memory()") and no guest_memfd fields (before KVM_SET_USER_MEMORY_REGION2);
  both shapes are read. A slot is backed by a guest_memfd when its flags carry
  KVM_MEM_GUEST_MEMFD (0x4) and guest_memfd is not -1.
- ``kvm_convert_memory`` "start 0x%PRIx64 size 0x%PRIx64 %s" (shared_to_private or
  private_to_shared) -> set_attributes "private" / "shared". The gpa range becomes a
  guest_memfd range through the slot holding it: offset = guest_memfd_offset + (gpa -
  slot gpa). QEMU traces the call before checking it (kvm_convert_memory), so two kinds
  of line are skipped rather than converted, exactly as QEMU itself drops them: a range
  that is empty or not page aligned (QEMU returns -EINVAL before any ioctl), and a
  private_to_shared range that touches no memslot at all (QEMU returns 0: "Ignore
  converting non-assigned region to shared", TDX guests doing so for vMMIO). Any other
  range outside the guest_memfd memslots is an InputError: the recording contradicts
  itself or misses its kvm_set_user_memory lines.
- ``kvm_hc_map_gpa_range`` "gpa 0x%PRIx64 size 0x%PRIx64 attributes 0x%PRIx64 flags
  0x%PRIx64" -> map_gpa_range (size is already in bytes: QEMU multiplies the hypercall's
  page count by TARGET_PAGE_SIZE; attributes bit 0x10 = KVM_MAP_GPA_RANGE_ENCRYPTED ->
  private). QEMU answers it with kvm_convert_memory, which is traced (and converted) too.
- ``kvm_memory_fault`` "start 0x%PRIx64 size 0x%PRIx64 flags 0x%PRIx64": a
  KVM_EXIT_MEMORY_FAULT, the implicit conversion request. Not an op of its own: QEMU
  answers it with kvm_convert_memory of the same range, so it is skip-counted and the
  set_attributes that answers it carries a note naming the fault's line and whether the
  guest's access was private (flags bit 0x8, KVM_MEMORY_EXIT_FLAG_PRIVATE).
- ``ram_block_attributes_state_change`` "offset 0x%PRIx64 size 0x%PRIx64 from '%s' to
  '%s'": QEMU's RAMBlock-side echo of the same conversion (RAMBlock offsets, not gpas);
  read and skip-counted.
- ``kvm_sev_snp_launch_update`` "src 0x%PRIx64 gpa 0x%PRIx64 len 0x%PRIx64 (%s page)"
  (target/i386/trace-events; the type string from snp_page_type_to_str, target/i386/sev.c:
  Normal, Zero, Unmeasured, Secrets, Cpuid; some versions also Vmsa, and "unknown")
  -> populate. QEMU's sev_snp_launch_update traces each KVM_SEV_SNP_LAUNCH_UPDATE before
  the ioctl, in a loop that re-issues it with the kernel's advanced gfn_start/len/uaddr
  while len is left (or on EAGAIN), and breaks on any other error. So:
  * the range is the gpa range translated through the memslots, as for
    kvm_convert_memory; a range running into the next memslot is cut at the first
    one's end (kvm_gmem_populate clamps npages to the slot holding gfn_start) and a
    note says so;
  * the source: a Zero page has none (snp_launch_update passes NULL for
    KVM_SEV_SNP_PAGE_TYPE_ZERO): src null. Otherwise the log shows an address but not
    whether it maps the guest_memfd itself (in place, the in-place conversion series)
    or separate memory the kernel copies from: src "unknown" (docs/trace-format.md),
    never guessed; a source address of 0 is a NULL source: src null;
  * the result is not traced. Where the next launch-update line continues the same
    range (gpa and src advanced, len reduced, by the same whole number of pages k), the
    call returned 0 having done k pages: expect {"ret": 0, "done": k}. Otherwise
    nothing is expected (a field absent from "expect" is not checked);
  * the page type is kept in the note; types the kernel refuses before any page (Vmsa,
    unknown) are skip-counted.
- ``kvm_sev_snp_launch_finish`` "id_block %s id_auth %s host_data %s" -> finalize,
  traced before KVM_SEV_SNP_LAUNCH_FINISH: no "expect".
- TDX: QEMU's KVM_TDX_INIT_MEM_REGION (tdx_finalize_vm, target/i386/kvm/tdx.c) has no
  trace event in the trees read, so a TDX recording carries no populate to convert.

Every other event is skipped and counted by name; a line that is no trace event at all
(QEMU's own error messages share the log) is counted under "(not a trace event)".

Modelling choices, marked as such:

- gmemlab models one guest_memfd. QEMU creates one per guest_memfd-backed RAMBlock (SNP
  and TDX also have one for the firmware, pc.bios). The guest_memfds are laid end to
  end, page aligned, in the order the recording first names them; with one guest_memfd
  the offsets are exactly its offsets. The create_gmem note gives the layout.
- QEMU without in-place conversion sets every new guest_memfd memslot private as soon as
  it exists (kvm_set_phys_mem, "kvm/memory: Make memory type private by default if it
  has guest memfd backend"), with no trace event; nothing is emitted for it.

>>> log = b'''kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x80000000 ua=0x7f0000000000 guest_memfd=20 guest_memfd_offset=0x0 ret=0
... kvm_set_user_memory AddrSpace#0 Slot#1 flags=0x4 gpa=0x100000000 size=0x80000000 ua=0x7f0080000000 guest_memfd=20 guest_memfd_offset=0x80000000 ret=0
... kvm_convert_memory start 0x100002000 size 0x1000 private_to_shared
... '''
>>> header, events, skipped = convert(log, "boot.log")
>>> [(e["op"], hex(e.get("offset", 0)), hex(e["size"])) for e in events]
[('create_gmem', '0x0', '0x100000000'), ('set_attributes', '0x80002000', '0x1000')]
"""

from __future__ import annotations

import bisect
import calendar
import datetime
import re
from dataclasses import dataclass
from typing import Any, Optional

from gmemlab.errors import InputError
from gmemlab.model.events import Event, event
from gmemlab.traces.format import iter_lines
from gmemlab.traces.importers import (
    MAX_U64, NOT_AN_EVENT, PAGE_SIZE, check_range, create_gmem, finish_skipped, make_header,
    round_up, shown,
)

KVM_MEM_GUEST_MEMFD = 0x4            # include/uapi/linux/kvm.h
KVM_MEMORY_EXIT_FLAG_PRIVATE = 0x8   # include/uapi/linux/kvm.h, (1ULL << 3)
KVM_MAP_GPA_RANGE_ENCRYPTED = 0x10   # Documentation/virt/kvm/x86/hypercalls.rst, bit 4

_H = r"0x([0-9a-fA-F]{1,16})"  # a PRIx64 field; longer is not a u64

# Optional prefixes, in the order QEMU prints them (see the module docstring).
_PREFIX = re.compile(
    r"(?:(?P<Y>\d{4})-(?P<Mo>\d{2})-(?P<D>\d{2})T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)? +)?"
    r"(?:\[[^\]]*\] +)?"
    r"(?:[A-Za-z0-9_.+-]+: +)?"
    r"(?:\(\d{1,10}:[^)]*\): +)?"
    r"(?:(?P<tid>\d{1,10})@(?P<sec>\d{1,12})\.(?P<usec>\d{1,9}): *)?"
)
# An event name: tracetool names are C identifiers; requiring an underscore keeps
# ordinary words of free-text messages from being counted as events.
_EVENT = re.compile(r"(?P<name>[a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?: +(?P<args>.*))?\Z")

_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "kvm_set_user_memory": (re.compile(
        r"(?:AddrSpace#(?P<as_id>\d{1,10}) +)?Slot#(?P<slot>\d{1,10}) flags=0x(?P<flags>[0-9a-fA-F]{1,8})"
        r" gpa=" + _H.replace("(", "(?P<gpa>", 1) + r" size=" + _H.replace("(", "(?P<size>", 1)
        + r" ua=0x[0-9a-fA-F]{1,16}"
        r"(?: guest_memfd=(?P<fd>-?\d{1,10}) guest_memfd_offset=" + _H.replace("(", "(?P<off>", 1) + r")?"
        r" ret=(?P<ret>-?\d{1,10})\Z"),
        "AddrSpace#A Slot#N flags=0xF gpa=0x.. size=0x.. ua=0x.. guest_memfd=FD guest_memfd_offset=0x.. ret=R"),
    "kvm_convert_memory": (re.compile(
        r"start " + _H + r" size " + _H + r" (shared_to_private|private_to_shared)\Z"),
        "start 0x.. size 0x.. shared_to_private|private_to_shared"),
    "kvm_hc_map_gpa_range": (re.compile(
        r"gpa " + _H + r" size " + _H + r" attributes " + _H + r" flags " + _H + r"\Z"),
        "gpa 0x.. size 0x.. attributes 0x.. flags 0x.."),
    "kvm_memory_fault": (re.compile(
        r"start " + _H + r" size " + _H + r" flags " + _H + r"\Z"),
        "start 0x.. size 0x.. flags 0x.."),
    "ram_block_attributes_state_change": (re.compile(
        r"offset " + _H + r" size " + _H + r" from '(\w+)' to '(\w+)'\Z"),
        "offset 0x.. size 0x.. from 'STATE' to 'STATE'"),
    "kvm_sev_snp_launch_update": (re.compile(
        r"src " + _H + r" gpa " + _H + r" len " + _H + r" \(([A-Za-z]{1,16}) page\)\Z"),
        "src 0x.. gpa 0x.. len 0x.. (TYPE page)"),
    # Three %s fields (hex strings of QEMU's own, or "(null)"): read as free text.
    "kvm_sev_snp_launch_finish": (re.compile(r"id_block \S{1,4096} id_auth \S{1,4096} host_data \S{1,4096}\Z"),
                                  "id_block S id_auth S host_data S"),
}

# snp_page_type_to_str (target/i386/sev.c) names the kernel accepts for LAUNCH_UPDATE
# (snp_launch_update's type check, arch/x86/kvm/svm/sev.c).
SNP_PAGE_TYPES = ("Normal", "Zero", "Unmeasured", "Secrets", "Cpuid")


@dataclass(frozen=True)
class Slot:
    """One memslot as kvm_set_user_memory left it."""
    line: int
    number: int
    gpa: int
    size: int
    fd: Optional[int]    # the guest_memfd, None when the slot has none
    offset: int          # guest_memfd_offset


@dataclass
class _Record:
    line: int
    t: Optional[float]
    name: str
    groups: tuple


def _timestamp(m: re.Match[str], path: str, line: int) -> Optional[float]:
    """Seconds as a float, from either prefix; exact to the digits printed."""
    if m.group("sec") is not None:
        return float(f"{m.group('sec')}.{m.group('usec')}")
    if m.group("Y") is None:
        return None
    try:
        tz = m.group("tz") or "Z"
        offset = 0
        if tz != "Z":
            digits = tz[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours > 23 or minutes > 59:
                raise ValueError("utc offset out of range")
            offset = (hours * 60 + minutes) * 60 * (1 if tz[0] == "+" else -1)
        when = datetime.datetime(int(m.group("Y")), int(m.group("Mo")), int(m.group("D")),
                                 int(m.group("h")), int(m.group("mi")), int(m.group("s")))
    except ValueError as e:
        raise InputError(path, line, f"bad ISO 8601 timestamp at the start of the line ({e})") from None
    seconds = calendar.timegm(when.timetuple()) - offset
    frac = m.group("frac")
    return float(f"{seconds}.{frac}") if frac else float(seconds)


def _parse(data: bytes | str, path: str) -> tuple[list[_Record], dict[str, int], int]:
    """Pass 1: every line read and every known event checked; nothing interpreted yet."""
    records: list[_Record] = []
    skipped: dict[str, int] = {}
    last = 0
    for n, raw in iter_lines(data, path):
        line = raw.strip()
        if not line:
            continue
        last = n
        m = _PREFIX.match(line)
        assert m is not None  # every part is optional
        t = _timestamp(m, path, n)
        ev = _EVENT.match(line, m.end())
        if ev is None:
            skipped[NOT_AN_EVENT] = skipped.get(NOT_AN_EVENT, 0) + 1
            continue
        name, args = ev.group("name"), (ev.group("args") or "").strip()
        if name not in _FORMATS:
            skipped[name] = skipped.get(name, 0) + 1
            continue
        pattern, expected = _FORMATS[name]
        fm = pattern.match(args)
        if fm is None:
            raise InputError(path, n, f"{name}: expected {expected!r}, got {shown(args)}")
        records.append(_Record(n, t, name, fm.groups()))
    return records, skipped, max(last, 1)


def _slot_from(rec: _Record, path: str) -> tuple[int, Slot, int]:
    """(address space, slot, ret) from a kvm_set_user_memory record."""
    as_id, number, flags, gpa, size, fd, off, ret = rec.groups
    gpa, size = int(gpa, 16), int(size, 16)
    check_range(path, rec.line, "kvm_set_user_memory", gpa, size)
    gmem = fd is not None and int(fd) != -1 and int(flags, 16) & KVM_MEM_GUEST_MEMFD
    if gmem and int(fd) < 0:
        raise InputError(path, rec.line, f"kvm_set_user_memory: guest_memfd={fd} is not a file descriptor")
    offset = int(off, 16) if gmem else 0
    if gmem:
        check_range(path, rec.line, "kvm_set_user_memory guest_memfd_offset", offset, size)
    slot = Slot(rec.line, int(number), gpa, size, int(fd) if gmem else None, offset)
    return int(as_id or 0), slot, int(ret)


def _layout(records: list[_Record], path: str) -> tuple[dict[int, int], int, int]:
    """Where each guest_memfd starts in gmemlab's single guest_memfd, and the total size.

    Returns (base by fd, total size, line naming the first guest_memfd slot). Extents
    cover every successful slot of the recording, also those deleted later.
    """
    extent: dict[int, int] = {}
    first_line = 0
    for rec in records:
        if rec.name != "kvm_set_user_memory":
            continue
        _, slot, ret = _slot_from(rec, path)
        if ret != 0 or slot.size == 0 or slot.fd is None:
            continue
        if not extent:
            first_line = rec.line
        extent[slot.fd] = max(extent.get(slot.fd, 0), slot.offset + slot.size)
    base: dict[int, int] = {}
    total = 0
    for fd in extent:  # insertion order: first named first
        base[fd] = total
        total += round_up(extent[fd])
        if total > MAX_U64:
            raise InputError(path, first_line, "the guest_memfd memslots add up to more than 2^64 bytes")
    return base, total, first_line


class _Translator:
    """gpa -> guest_memfd ranges through the memslots current at a given line.

    The slots of each address space are kept sorted by gpa (they never overlap), so a
    lookup is a bisection: a recording with many memslots and many conversions costs
    O(log slots) per conversion, not O(slots).
    """

    def __init__(self, path: str, base: dict[int, int]):
        self.path = path
        self.base = base
        self.slots: dict[tuple[int, int], Slot] = {}
        # as_id -> (gpas, slots sorted by gpa, whether one has a guest_memfd)
        self._sorted: dict[int, tuple[list[int], list[Slot], bool]] = {}

    def _space(self, as_id: int) -> tuple[list[int], list[Slot], bool]:
        got = self._sorted.get(as_id)
        if got is None:
            slots = sorted((s for (a, _), s in self.slots.items() if a == as_id), key=lambda s: s.gpa)
            got = self._sorted[as_id] = ([s.gpa for s in slots], slots, any(s.fd is not None for s in slots))
        return got

    def _at(self, as_id: int, gpa: int) -> Slot | None:
        gpas, slots, _ = self._space(as_id)
        i = bisect.bisect_right(gpas, gpa) - 1
        return slots[i] if i >= 0 and gpa < slots[i].gpa + slots[i].size else None

    def apply(self, as_id: int, slot: Slot) -> None:
        old = self.slots.pop((as_id, slot.number), None)
        if old is not None or slot.size:
            self._sorted.pop(as_id, None)
        if slot.size == 0:
            return  # size 0 deletes the slot
        # KVM refuses a memslot overlapping another of its address space (EEXIST,
        # kvm_set_memory_region): a recording that shows one succeed contradicts itself.
        gpas, slots, _ = self._space(as_id)
        i = bisect.bisect_left(gpas, slot.gpa + slot.size)
        other = slots[i - 1] if i > 0 else None
        if other is not None and slot.gpa < other.gpa + other.size:
            raise InputError(self.path, slot.line,
                             f"kvm_set_user_memory: memslot #{slot.number} (gpa {slot.gpa:#x}"
                             f"+{slot.size:#x}) overlaps memslot #{other.number} of line {other.line}"
                             f" (gpa {other.gpa:#x}+{other.size:#x}) in address space {as_id}:"
                             " KVM refuses overlapping memslots")
        self.slots[(as_id, slot.number)] = slot
        self._sorted.pop(as_id, None)

    # Memory attributes are per VM and QEMU converts in the system address space
    # (address space 0); SMM's address space 1 aliases the same RAM.

    def touches_no_slot(self, start: int, size: int) -> bool:
        gpas, slots, _ = self._space(0)
        i = bisect.bisect_left(gpas, start + size)
        return i == 0 or slots[i - 1].gpa + slots[i - 1].size <= start

    def ranges(self, start: int, size: int, line: int, what: str) -> list[tuple[int, int]]:
        """The guest_memfd (offset, size) pieces of gpa range [start, start+size)."""
        if not self._space(0)[2]:
            raise InputError(self.path, line, f"{what} at gpa {start:#x}, but no guest_memfd memslot is known"
                             " at this line: record QEMU's kvm_set_user_memory events from VM start"
                             " (-trace kvm_set_user_memory)")
        pieces: list[tuple[int, int]] = []
        cur, end = start, start + size
        while cur < end:
            slot = self._at(0, cur)
            if slot is None:
                raise InputError(self.path, line, f"{what}: gpa {cur:#x} is in no memslot")
            if slot.fd is None:
                raise InputError(self.path, line, f"{what}: gpa {cur:#x} is in memslot #{slot.number}"
                                 f" (line {slot.line}), which has no guest_memfd")
            n = min(end, slot.gpa + slot.size) - cur
            offset = self.base[slot.fd] + slot.offset + (cur - slot.gpa)
            if pieces and sum(pieces[-1]) == offset:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + n)
            else:
                pieces.append((offset, n))
            cur += n
        return pieces


def _event(op: str, rec: _Record, **fields: Any) -> Event:
    if rec.t is not None:
        fields["t"] = rec.t
    return event(op, **fields, line=rec.line)


def _launch_update(rec: _Record, nxt: _Record | None, translator: _Translator, path: str) -> Event | None:
    """One kvm_sev_snp_launch_update line -> populate (see the module docstring)."""
    src, gpa, length, kind = int(rec.groups[0], 16), int(rec.groups[1], 16), int(rec.groups[2], 16), rec.groups[3]
    check_range(path, rec.line, rec.name, gpa, length)
    check_range(path, rec.line, rec.name + " src", src, length)
    if kind not in SNP_PAGE_TYPES:
        return None
    if length == 0 or gpa % PAGE_SIZE or length % PAGE_SIZE:
        raise InputError(path, rec.line, f"{rec.name}: gpa {gpa:#x} len {length:#x} is empty or not page"
                         " aligned, which QEMU never passes (sev_snp_launch_update)")
    # kvm_gmem_populate works in the memslot holding gfn_start and clamps npages to it.
    slot = translator._at(0, gpa)
    inside = length if slot is None else min(length, slot.gpa + slot.size - gpa)
    (offset, size), = translator.ranges(gpa, inside, rec.line, rec.name)  # one slot: one piece
    notes = [f"SNP page type {kind}"]
    if size < length:
        notes.append(f"gpa {gpa:#x}+{length:#x} runs past its memslot: the kernel clamps the call to the"
                     f" first {size // PAGE_SIZE} pages (kvm_gmem_populate)")
    fields: dict[str, Any] = {"offset": offset, "size": size}
    if kind == "Zero" or src == 0:
        fields["src"] = None
    else:
        fields["src"] = "unknown"
        notes.append("source address traced; whether it maps the guest_memfd (in place) or separate"
                     " memory (a copy) is not in the log")
    done = _continued(rec, nxt)
    if done is not None and done <= size // PAGE_SIZE:
        fields["expect"] = {"ret": 0, "done": done}
    else:
        notes.append("result not in the log")
    return _event("populate", rec, note="; ".join(notes), **fields)


def _continued(rec: _Record, nxt: _Record | None) -> int | None:
    """k when the next launch-update record (``nxt``: the next launch update or finish of
    the recording; other events may sit in between) resumes this call k pages further on
    -- QEMU's loop re-issues the ioctl with the kernel's advanced gfn_start/len/uaddr
    only after it returned 0 -- else None."""
    if nxt is None or nxt.name != "kvm_sev_snp_launch_update":
        return None
    src, gpa, length = (int(x, 16) for x in rec.groups[:3])
    nsrc, ngpa, nlength = (int(x, 16) for x in nxt.groups[:3])
    step = ngpa - gpa
    if nxt.groups[3] != rec.groups[3] or step <= 0 or step % PAGE_SIZE or length - nlength != step:
        return None
    if rec.groups[3] != "Zero" and src and nsrc - src != step:
        return None
    return step // PAGE_SIZE


_LAUNCH = ("kvm_sev_snp_launch_update", "kvm_sev_snp_launch_finish")


def convert(data: bytes | str, path: str = "<qemu log>", platform: str = "snp"
            ) -> tuple[dict[str, Any], list[Event], dict[str, int]]:
    """A QEMU trace log -> (header, events, {skipped event: count})."""
    header = make_header(path, platform, "qemu log")
    records, skipped, last_line = _parse(data, path)
    base, total, first_line = _layout(records, path)
    if not base:
        raise InputError(path, last_line, "no guest_memfd memslot in the recording: it needs QEMU's"
                         " kvm_set_user_memory lines with guest_memfd=FD (run QEMU with"
                         " -trace kvm_set_user_memory from the start)")

    def skip(key: str) -> None:
        skipped[key] = skipped.get(key, 0) + 1

    translator = _Translator(path, base)
    launch = [r for r in records if r.name in _LAUNCH]
    next_launch = {id(a): b for a, b in zip(launch, launch[1:])}  # one pass, not a scan per line
    faults: dict[tuple[int, int], tuple[int, int]] = {}  # (start, size) -> (line, flags)
    events: list[Event] = []
    first_t = None
    for rec in records:
        g = rec.groups
        if rec.name == "kvm_set_user_memory":
            as_id, slot, ret = _slot_from(rec, path)
            if ret != 0:
                skip("kvm_set_user_memory (failed, ret != 0)")
                continue
            if rec.line == first_line:
                first_t = rec.t
            translator.apply(as_id, slot)
        elif rec.name == "kvm_memory_fault":
            faults[(int(g[0], 16), int(g[1], 16))] = (rec.line, int(g[2], 16))
            skip(rec.name)
        elif rec.name == "ram_block_attributes_state_change":
            skip(rec.name)
        elif rec.name == "kvm_sev_snp_launch_finish":
            events.append(_event("finalize", rec, note="traced before KVM_SEV_SNP_LAUNCH_FINISH: its result is not in the log"))
        elif rec.name == "kvm_sev_snp_launch_update":
            ev = _launch_update(rec, next_launch.get(id(rec)), translator, path)
            if ev is None:
                skip(f"{rec.name} (page type {g[3]}: refused by the kernel before any page)")
            else:
                events.append(ev)
        elif rec.name in ("kvm_convert_memory", "kvm_hc_map_gpa_range"):
            start, size = int(g[0], 16), int(g[1], 16)
            check_range(path, rec.line, rec.name, start, size)
            if rec.name == "kvm_convert_memory":
                private = g[2] == "shared_to_private"
            else:
                private = bool(int(g[2], 16) & KVM_MAP_GPA_RANGE_ENCRYPTED)
            if size == 0 or start % PAGE_SIZE or size % PAGE_SIZE:
                skip(f"{rec.name} (empty or not page aligned: QEMU refuses it)")
                continue
            if not private and translator.touches_no_slot(start, size):
                skip(f"{rec.name} (to shared outside guest RAM: QEMU ignores it)")
                continue
            pieces = translator.ranges(start, size, rec.line, rec.name)
            notes = []
            if rec.name == "kvm_convert_memory":
                fault = faults.pop((start, size), None)
                if fault is not None:
                    view = "private" if fault[1] & KVM_MEMORY_EXIT_FLAG_PRIVATE else "shared"
                    notes.append(f"answers kvm_memory_fault at line {fault[0]} (a {view} access)")
            for i, (offset, n) in enumerate(pieces, 1):
                if rec.name == "kvm_hc_map_gpa_range":
                    ev = _event("map_gpa_range", rec, offset=offset, size=n, private=private)
                else:
                    ev = _event("set_attributes", rec, offset=offset, size=n,
                                attributes="private" if private else "shared", flags=())
                split = [f"gpa {start:#x}+{size:#x} spans memslots: piece {i} of {len(pieces)}"]
                note = "; ".join(notes + (split if len(pieces) > 1 else []))
                events.append(ev.replace(note=note) if note else ev)
    layout = ""
    if len(base) > 1:
        layout = "; guest_memfds laid end to end: " + ", ".join(
            f"fd {fd} at offset {b:#x}" for fd, b in base.items())
    note = ("size inferred from the guest_memfd memslots (kvm_set_user_memory); the recording"
            " does not show the creation flags" + layout)
    return header, [create_gmem(total, first_line, note, first_t)] + events, finish_skipped(skipped)
