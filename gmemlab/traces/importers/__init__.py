"""Recording importers: real traces in, gmemlab-trace/1 out.

Two recorders are understood (docs/cli.md, ``gmemlab import``):

- ``qemu``: the output of QEMU's "log" trace backend (``qemu.convert``);
- ``ftrace``: the text of ``trace-cmd report``, of /sys/kernel/tracing/trace, or of
  ``perf script`` (``ftrace.convert``).

Each per-format ``convert(data, path, platform)`` returns ``(header, events, skipped)``:
the header of the converted trace, its events (Events, built by events.event() as
``format.loads`` gives them, each with the recording's line in ``"line"``), and how many
lines of each kind were skipped. ``run_import`` serializes that with ``format.dumps``.

What is common to both lives here: the header, the leading create_gmem, the unsigned
64-bit arithmetic checks, and the rule that a malformed line of a known event is an
InputError naming the file and the line, never a traceback.

>>> log = b"kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x4 gpa=0x0 size=0x200000 ua=0x7f0000000000 guest_memfd=20 guest_memfd_offset=0x0 ret=0\\n"
>>> text, skipped = run_import(log + b"kvm_convert_memory start 0x1000 size 0x1000 private_to_shared\\n", "boot.log", "qemu")
>>> print(text.splitlines()[2])
{"op": "set_attributes", "offset": 4096, "size": 4096, "attributes": "shared", "flags": []}
"""

from __future__ import annotations

import os
from typing import Any

from gmemlab.errors import InputError, UsageError
from gmemlab.model.events import Event, event
from gmemlab.traces.format import PLATFORMS

PAGE_SIZE = 4096  # x86 base page: KVM's gfn unit and QEMU's qemu_real_host_page_size()
MAX_U64 = (1 << 64) - 1
KINDS = ("ftrace", "qemu")

# Skip-count keys for lines that are not an event at all (kept apart from event names).
NOT_AN_EVENT = "(not a trace event)"


def check_platform(platform: str) -> str:
    """Refuse an unknown platform with the list of known ones."""
    if platform not in PLATFORMS:
        raise UsageError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    return platform


def make_header(path: str, platform: str, what: str) -> dict[str, Any]:
    """The header every converted recording gets (a recording never tells the series)."""
    return {
        "format": "gmemlab-trace/1",
        "platform": check_platform(platform),
        "series": "v8",
        "page_size": PAGE_SIZE,
        "source": "recorded",
        "description": f"imported from {os.path.basename(str(path))} ({what})",
    }


def round_up(n: int, unit: int = PAGE_SIZE) -> int:
    return -(-n // unit) * unit


def create_gmem(size: int, line: int, note: str, t: float | None = None) -> Event:
    """The leading create_gmem: a recording shows neither the size nor the flags.

    The flags stay empty rather than guessed (MMAP / INIT_SHARED are what the series
    adds, but nothing in a QEMU log or a kernel trace says which were passed); the note
    says how the size was inferred.
    """
    return event("create_gmem", size=size, note=note, line=line, **({} if t is None else {"t": t}))


def shown(text: str, limit: int = 100) -> str:
    """A line fragment quoted for an error message, cut to a readable length."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_range(path: str, line: int, what: str, start: int, size: int) -> None:
    """start + size must stay within the u64 space of the uAPI."""
    if start + size > MAX_U64 + 1:
        raise InputError(path, line, f"{what}: range {start:#x} + {size:#x} ends beyond 2^64")


def finish_skipped(counts: dict[str, int]) -> dict[str, int]:
    """Skip counts in a stable (sorted) order, so that output never depends on dict history."""
    return {k: counts[k] for k in sorted(counts)}


def run_import(data: Any, path: str, kind: str, platform: str = "snp") -> tuple[str, dict[str, int]]:
    """Convert a recording to gmemlab-trace/1 text; also return {skipped event: count}.

    data is the recording's bytes, its text, or a binary file open for reading, which is
    read a line at a time (gmemlab import passes the file: a large recording is never
    held in memory whole, only the events converted from it).

    kind is "qemu" or "ftrace". Raises InputError (file, line, problem) for unusable
    input and UsageError for an unknown kind or platform. The same bytes always give
    the same text.
    """
    # Imported here so that the submodules can import the helpers above from this
    # package without a cycle at import time.
    from gmemlab.traces.format import dumps
    from gmemlab.traces.importers import ftrace, qemu

    converters = {"ftrace": ftrace.convert, "qemu": qemu.convert}
    if kind not in converters:
        raise UsageError(f"unknown recording kind {kind!r}; known: {', '.join(KINDS)}")
    check_platform(platform)
    header, events, skipped = converters[kind](data, path, platform)
    return dumps(header, events), skipped
