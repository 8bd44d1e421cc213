"""gmemlab-trace/1: the strict reader and the deterministic writer.

The format is a contract with tools outside gmemlab (docs/trace-format.md): UTF-8
JSON Lines, line 1 the header, every further non-blank line one event, lines starting
with ``#`` comments. This module accepts exactly that, plus optional fields it does not
know (the contract allows them), and refuses everything else with an InputError that
names the file, the line and the problem.

Events come out as gmemlab.model.events.Event (built by events.from_json, which holds
the per-event rules), normalized for the model: "value" is an int 0..255, "flags" a
tuple of strings, "process" always present. The line number rides along in "line".
event_json is the one way to write an event out.

>>> text = '{"format": "gmemlab-trace/1", "platform": "snp"}\\n{"op": "host_write", "offset": 0, "value": "A"}\\n'
>>> header, events = loads(text, "t.jsonl")
>>> header["series"], events[0]["value"], events[0]["line"]
('v8', 65, 2)
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from gmemlab.errors import InputError
from gmemlab.traces import typed as _typed
from gmemlab.model.vocab import PLATFORMS, SERIES  # the one registry
from gmemlab.model.events import (ATTRIBUTE_FLAGS, COMMON, FIELDS, GMEM_FLAGS, MAX_U64,  # noqa: F401
                                  InvalidEvent, check_int, from_json, parse_value)

FORMAT = "gmemlab-trace/1"
# The longest line read (bytes, without its newline): longer is "FILE:LINE: line longer
# than MAX_LINE bytes", so that /dev/zero or a file with no newline cannot exhaust memory.
MAX_LINE = 1 << 20
_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 18  # bytes read at a time by _read_lines
BOM_PROBLEM = "starts with a UTF-8 byte order mark; save without BOM"
# "default": KVM's default VM type with guest_memfd, what gmemlab kvm-run records on.
SOURCES = ("emulated", "recorded", "scenario")
# op -> (required fields, optional fields): the schema of gmemlab.model.events.
OPS = FIELDS
CALLS = frozenset({"create_gmem", "set_attributes", "punch_hole", "populate",
                   "finalize", "pin", "unpin", "map_gpa_range", "replace_memslot", "gup_fast", "run"})
ACCESSES = frozenset({"host_read", "host_write", "guest_read", "guest_write", "guest_accept"})

_HEADER_ORDER = ("format", "platform", "series", "in_place", "page_size", "source", "description")
_EVENT_ORDER = ("op", "offset", "size", "attributes", "flags", "private", "src", "value", "new_gmem",
                "process", "thread", "expect", "t", "note")
_EXPECT_ORDER = ("ret", "error_offset", "done", "ok", "signal", "exit", "exception", "value")


# A problem found inside one line; the reader adds file and line.
_Bad = InvalidEvent
_check_int = check_int


def check_header(obj: Any) -> dict:
    """Validate and complete a header object (defaults filled in)."""
    if not isinstance(obj, dict):
        raise _Bad("line 1 must be the header object {\"format\": \"gmemlab-trace/1\", ...}")
    if obj.get("format") != FORMAT:
        raise _Bad(f"header format must be {json.dumps(FORMAT)}, got {json.dumps(obj.get('format'))}")
    if "platform" not in obj:
        raise _Bad(f"header needs \"platform\" ({', '.join(PLATFORMS)})")
    if obj["platform"] not in PLATFORMS:
        raise _Bad(f"unknown platform {json.dumps(obj['platform'])}; known: {', '.join(PLATFORMS)}")
    h = dict(obj)
    h.setdefault("series", "v8")
    if h["series"] not in SERIES:
        raise _Bad(f"unknown series {json.dumps(h['series'])}; known: {', '.join(SERIES)}")
    # kvm.gmem_in_place_conversion (default true); false replays with the knob in_place_off.
    if "in_place" in h and type(h["in_place"]) is not bool:
        raise _Bad(f"in_place must be true or false, got {json.dumps(h['in_place'])}")
    h.setdefault("page_size", 4096)
    ps = h["page_size"]
    if type(ps) is not int or ps < 4096 or ps & (ps - 1):
        raise _Bad(f"page_size must be a power of two >= 4096, got {json.dumps(ps)}")
    if "source" in h and h["source"] not in SOURCES:
        raise _Bad(f"unknown source {json.dumps(h['source'])}; known: {', '.join(SOURCES)}")
    if "description" in h and not isinstance(h["description"], str):
        raise _Bad("description must be a string")
    # Optional fields of a recording (gmemlab kvm-run): the kernel release and the
    # capabilities found. Any other field is kept unchecked, as the contract allows.
    if "kernel" in h and not isinstance(h["kernel"], str):
        raise _Bad(f"kernel must be a string (the release, as uname -r), got {json.dumps(h['kernel'])}")
    if "capabilities" in h and not isinstance(h["capabilities"], dict):
        raise _Bad(f"capabilities must be an object, got {json.dumps(h['capabilities'])}")
    return h


def _no_constants(name: str) -> Any:
    raise _Bad(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise _Bad(f"duplicate key {json.dumps(k)}")
        d[k] = v
    return d


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_KEY = re.compile(r'"[^"\\]*"\s*:')


def _keys(obj: Any) -> int:
    """How many keys the objects in a parsed JSON value have, all levels."""
    n = 0
    if type(obj) is dict:
        n = len(obj)
        obj = obj.values()
    elif type(obj) is not list:
        return 0        # a scalar: no keys (the reader then says it is no header or event)
    for v in obj:
        if type(v) is dict or type(v) is list:
            n += _keys(v)
    return n


def _json(text: str) -> Any:
    try:
        if "\\" not in text:
            # Fast path: a plain parse, then duplicate keys are ruled out by counting the
            # key tokens of the line (the decoder keeps only the last of duplicates).
            obj = _DECODER.decode(text)
            if _keys(obj) == len(_KEY.findall(text)):
                return obj
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise _Bad(f"not JSON: {e.msg} at column {e.colno}") from None
    except _Bad:
        raise
    except ValueError as e:  # an integer of more digits than int() converts (sys.int_info)
        raise _Bad(f"number too long: {e}".split(";")[0]) from None
    except RecursionError:
        raise _Bad("not JSON: nested too deeply") from None


def iter_lines(data: Any, path: str) -> Iterator[tuple[int, str]]:
    """Numbered text lines of a file's bytes (or a binary file, read a line at a time);
    refuses what is not UTF-8 text."""
    if not isinstance(data, (bytes, str)):
        raws: Iterable[bytes] = _read_lines(data, path)
    elif isinstance(data, bytes):
        raws = data.split(b"\n")
    if isinstance(data, str):
        lines: Iterable[Any] = data.split("\n")
        for n, line in enumerate(lines, 1):
            if n == 1 and line.startswith("\ufeff"):
                raise InputError(path, 1, BOM_PROBLEM)
            if len(line) > MAX_LINE:
                raise InputError(path, n, f"line longer than {MAX_LINE} bytes")
            if "\x00" in line:
                raise InputError(path, n, "binary data (NUL byte): not a text file")
            yield n, line.rstrip("\r")
        return
    for n, raw in enumerate(raws, 1):
        yield n, _text_line(raw, n, path)


def _text_line(raw: bytes, n: int, path: str) -> str:
    """Line n of a file, its bytes checked to be UTF-8 text (iter_lines)."""
    if n == 1 and raw.startswith(_BOM):
        raise InputError(path, 1, BOM_PROBLEM)
    if len(raw) > MAX_LINE:
        raise InputError(path, n, f"line longer than {MAX_LINE} bytes")
    if b"\x00" in raw:
        raise InputError(path, n, "binary data (NUL byte): not a text file")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, n, f"not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
    return line.rstrip("\r")


def _read_lines(f: Any, path: str) -> Iterator[bytes]:
    """The lines of a binary file, without their newline, none longer than MAX_LINE
    (a longer one is an InputError before it is held in memory)."""
    # Read in blocks and split (a readline() per line costs more than parsing it); a
    # line that has not ended within MAX_LINE bytes is refused before more is read.
    n = 0
    rest = b""
    while True:
        block = f.read(_BLOCK)
        if not block:
            if rest:
                yield rest
            return
        lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
        rest = lines.pop()
        for raw in lines:
            n += 1
            if len(raw) > MAX_LINE:
                raise InputError(path, n, f"line longer than {MAX_LINE} bytes")
            yield raw
        if len(rest) > MAX_LINE:
            raise InputError(path, n + 1, f"line longer than {MAX_LINE} bytes")


def iter_events(data: Any, path: str = "<trace>", *, typed: bool | None = None) -> Iterator[Any]:
    """Yield the header first, then each event, streaming (for guest-scale traces).

    ``data`` is the file's bytes, its text, or a binary file object. An event line goes
    through the typed decoder (gmemlab.traces.typed: msgspec, validating in C) where it
    can vouch for it, else through the strict path below, which alone words errors:
    both give the same events and the same messages. ``typed=False`` forces the strict
    path on every line (the tests compare the two); None uses the typed one if msgspec
    is installed.
    """
    fast = _typed.decode_event if typed is not False else None
    if typed and fast is None:
        raise RuntimeError("the typed decoder needs msgspec")
    numbered: Iterable[tuple[int, Any]]
    if fast is not None and not isinstance(data, str):
        # Bytes straight to the typed decoder: it takes only ASCII lines (so UTF-8 text,
        # and no byte order mark: that is line 1, the header) and msgspec refuses a NUL;
        # a line it does not take is checked as iter_lines checks it, then goes strict.
        numbered = enumerate(data.split(b"\n") if isinstance(data, bytes) else _read_lines(data, path), 1)
        brace = b"{"
    else:
        numbered = iter_lines(data, path)
        brace = "{"
    longest = min(MAX_LINE, _typed.LONGEST)
    header = None
    for n, line in numbered:
        if fast is not None and header is not None and line[:1] == brace and len(line) <= longest:
            try:
                yield fast(line, n)
                continue
            except Exception:
                pass  # the strict path decides, and words the error
        if type(line) is bytes:
            line = _text_line(line, n, path)
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = _json(s)
            if header is None:
                header = check_header(obj)
                header["line"] = n
                yield header
                continue
            ev = from_json(obj, n)
        except _Bad as e:
            raise InputError(path, n, str(e)) from None
        yield ev
    if header is None:
        raise InputError(path, 1, "empty trace: no header line")


def loads(data: bytes | str, path: str = "<trace>") -> tuple[dict, list[dict]]:
    """Parse a whole trace: (header, events)."""
    it = iter_events(data, path)
    header = next(it)
    return header, list(it)


def iter_file(src: Any, path: str | None = None) -> Iterator[Any]:
    """iter_events over the file at src (a path, or an open binary file whose name is
    path), read a line at a time: a guest-scale trace is never held in memory."""
    if not isinstance(src, (str, bytes, os.PathLike)):
        yield from iter_events(src, str(path if path is not None else getattr(src, "name", "<trace>")))
        return
    with open_input(src) as f:
        yield from iter_events(f, str(src) if path is None else path)


def _cannot_read(path: Any, e: OSError) -> InputError:
    return InputError(path, 0, f"cannot read: {e.strerror or e}")


@contextmanager
def open_input(path: Any) -> Iterator[Any]:
    """The file at path opened for binary reading; "-" is standard input. An OSError
    is an InputError naming the file (line 0)."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")
    except OSError as e:
        raise _cannot_read(path, e) from None
    with f:
        try:
            yield f
        except OSError as e:
            if e.filename not in (None, path):
                raise
            raise _cannot_read(path, e) from None


@contextmanager
def open_trace(path: Any) -> Iterator[Any]:
    """The file at path as a seekable binary file, read from the source once: a regular
    file is opened; a pipe, a FIFO, a character device, /dev/stdin or "-" (standard
    input) is first copied to a temporary file, a line at a time, each line at most
    MAX_LINE bytes (a longer one is an InputError, so /dev/zero ends at once)."""
    with open_input(path) as src:
        try:
            regular = stat.S_ISREG(os.fstat(src.fileno()).st_mode) and src.seekable()
        except (OSError, ValueError, AttributeError):
            regular = False
        if regular:
            yield src
            return
        with tempfile.TemporaryFile(prefix="gmemlab-spool-") as spool:
            try:
                for raw in _read_lines(src, str(path)):
                    spool.write(raw)
                    spool.write(b"\n")
            except OSError as e:
                raise _cannot_read(path, e) from None
            spool.seek(0)
            yield spool


def load(path: str) -> tuple[dict, list[dict]]:
    """Read and parse the trace file at path."""
    with open_input(path) as f:
        return loads(f, path)


# --- writing ----------------------------------------------------------------------

def _ordered(d: dict, order: tuple[str, ...]) -> dict:
    out = {k: d[k] for k in order if k in d}
    for k in sorted(d):
        if k not in out:
            out[k] = d[k]
    return out


def value_json(v: int | None) -> Any:
    """The readable form of a byte value: printable ASCII as a letter, else the int."""
    if v is None:
        return None
    return chr(v) if 0x21 <= v <= 0x7E and v != 0x22 and v != 0x5C else v


def event_json(ev: Mapping) -> dict:
    """The on-disk form of a normalized event (an Event, or a dict of the same fields):
    drops line, restores defaults' absence."""
    d = {k: v for k, v in ev.items() if k not in ("line", "extra")}
    d.update(ev.get("extra", {}))
    if d.get("process") == "vmm":
        del d["process"]
    if "flags" in d:
        d["flags"] = list(d["flags"])
    if d.get("new_gmem") is not None:
        d["new_gmem"] = list(d["new_gmem"])
    if "value" in d:
        d["value"] = value_json(d["value"])
    if "expect" in d:
        e = dict(d["expect"])
        if "value" in e:
            e["value"] = value_json(e["value"])
        d["expect"] = _ordered(e, _EXPECT_ORDER)
    return _ordered(d, _EVENT_ORDER)


def header_json(header: dict) -> dict:
    h = {k: v for k, v in header.items() if k != "line"}
    h["format"] = FORMAT
    return _ordered(h, _HEADER_ORDER)


def dumps_line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def dumps(header: dict, events: Iterable[dict]) -> str:
    """Serialize a trace: the same input gives the same bytes."""
    out = [dumps_line(header_json(header))]
    out.extend(dumps_line(event_json(ev)) for ev in events)
    return "\n".join(out) + "\n"
