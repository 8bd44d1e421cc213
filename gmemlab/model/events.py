"""The Event: one call, access or guest event, as every part of gmemlab passes it.

An Event is an immutable, hashable mapping (``ev["op"]``, ``ev.get("size")``), so it
can key a memo and sit in a set. ``event()`` is the one way to build one: the reader,
the emulator, the explorer, the importers and the tests all call it, and
gmemlab.traces.format.event_json is the one way to write one out.

>>> e = event("set_attributes", offset=0, size=4096, attributes="private")
>>> e["flags"], e["process"], e == event("set_attributes", offset=0, size=4096, attributes="private")
((), 'vmm', True)
>>> e.replace(size=8192)["size"]
8192
>>> len({e, e.replace(process="vmm")})
1
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


class Event(dict):
    """An immutable mapping of an event's fields (see the module docstring).

    A dict underneath, so that reading a field (``ev["op"]``, ``ev.get``, ``dict(ev)``,
    json.dumps) goes at the speed of a dict: the model's step function reads events in
    the innermost loop of every replay and exploration. Everything that would change it
    in place raises TypeError; ``replace`` and ``without`` make changed copies. Equal
    to any dict of the same fields; hashed on its fields (nested ones included), once.
    """

    __slots__ = ("_h",)  # the hash, once asked (dict's own __init__ builds an Event)

    def _immutable(self, *args, **kwargs):
        raise TypeError("an Event is immutable: make a changed copy with .replace() or .without()")

    __setitem__ = __delitem__ = __ior__ = _immutable
    update = pop = popitem = clear = setdefault = _immutable

    def __hash__(self) -> int:
        try:
            return self._h
        except AttributeError:
            h = self._h = hash(_freeze(self))
            return h

    def __repr__(self) -> str:
        return f"Event({dict.__repr__(self)})"

    def __reduce__(self):
        return (Event, (dict(self),))

    def replace(self, **changes) -> "Event":
        """A copy with some fields changed; a field set to None is removed."""
        d = dict(self)
        for k, v in changes.items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
        return Event(d)

    def without(self, *keys: str) -> "Event":
        return Event({k: v for k, v in self.items() if k not in keys})


# op -> (required fields, optional fields); every event may also carry the common ones
# (docs/trace-format.md, "Events").
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "create_gmem": (("size",), ("flags",)),
    "set_attributes": (("offset", "size", "attributes"), ("flags",)),
    "host_write": (("offset", "value"), ()),
    "host_read": (("offset",), ()),
    "pin": (("offset", "size"), ()),
    "unpin": (("offset", "size"), ()),
    "punch_hole": (("offset", "size"), ()),
    "populate": (("offset", "size"), ("src", "value")),
    "finalize": ((), ()),
    "guest_read": (("offset", "private"), ()),
    "guest_write": (("offset", "private", "value"), ()),
    "guest_accept": (("offset", "size"), ()),
    "map_gpa_range": (("offset", "size", "private"), ()),
    # Added with the memslot edges (docs/trace-format.md, "Memslots"): offset and size of
    # the guest_memfd memslot as it is re-added; "new_gmem" the flags of a new
    # guest_memfd it is bound to instead of the old one.
    "replace_memslot": (("offset", "size"), ("new_gmem",)),
    # Added with interleavings (docs/trace-format.md, "Threads"): pin_user_pages_fast on
    # the range (GUP-fast: no lock, the reference taken, then the PTE checked again); and
    # one more step of the call the event's "thread" has in flight.
    "gup_fast": (("offset", "size"), ()),
    "run": ((), ()),
    # Added with the memory-failure actor: a memory error in the folio at offset.
    "memory_failure": (("offset",), ()),
    # Added with the transient_refs knob: the per-CPU LRU batches drain, and the
    # references they held on new folios go.
    "lru_drain": ((), ()),
}


def event(op: str, **fields) -> Event:
    """The one constructor: an Event with the defaults every consumer relies on
    ("process" = "vmm", "flags" = () for create_gmem and set_attributes, "src" = None
    for populate) and list-valued flags as tuples."""
    if op not in FIELDS:
        raise ValueError(f"unknown op {op!r}; known: {', '.join(FIELDS)}")
    required, _ = FIELDS[op]
    missing = [f for f in required if f not in fields]
    if missing:
        raise ValueError(f"{op} needs {', '.join(missing)}")
    d: dict[str, Any] = {"op": op}
    if op in ("create_gmem", "set_attributes"):
        d["flags"] = ()
    if op == "populate":
        d["src"] = None
    d.update(fields)
    for name in ("flags", "new_gmem"):
        if d.get(name) is not None:
            d[name] = tuple(d[name])
    d.setdefault("process", "vmm")
    return Event(d)


# --- reading one event of a trace -------------------------------------------------------
# The rules of gmemlab-trace/1 for one event object (docs/trace-format.md). The reader
# (gmemlab.traces.format) calls from_json per line and turns an InvalidEvent into an
# InputError naming the file and the line.

COMMON = ("process", "thread", "expect", "t", "note")
GMEM_FLAGS = ("MMAP", "INIT_SHARED", "NO_DIRECT_MAP")
ATTRIBUTE_FLAGS = ("ZERO", "PRESERVE")  # v5 content modes (RFC v4/v5 only)
MAX_U64 = (1 << 64) - 1
_ERRNO = re.compile(r"^E[A-Z0-9]{1,15}$")


class InvalidEvent(ValueError):
    """What is wrong with one line of a trace (the reader adds the file and the line)."""


def check_int(name: str, v: Any, *, lo: int = 0, hi: int = MAX_U64) -> int:
    if type(v) is not int:
        raise InvalidEvent(f"{name} must be an integer, got {json.dumps(v)}")
    if not lo <= v <= hi:
        raise InvalidEvent(f"{name} {v} out of range {lo}..{hi}")
    return v


def parse_value(v: Any, name: str = "value") -> int:
    """A byte value: an integer 0..255 or a one-character string.

    >>> parse_value("A"), parse_value(7)
    (65, 7)
    """
    if type(v) is int:
        return check_int(name, v, hi=255)
    if isinstance(v, str) and len(v) == 1 and ord(v) <= 255:
        return ord(v)
    raise InvalidEvent(f"{name} must be an integer 0..255 or a one-character string, got {json.dumps(v)}")


def check_flags(v: Any, allowed: tuple[str, ...], name: str = "flags") -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(f, str) for f in v):
        raise InvalidEvent(f"{name} must be a list of strings, got {json.dumps(v)}")
    for f in v:
        if f not in allowed:
            raise InvalidEvent(f"unknown flag {f!r} in {name}; known: {', '.join(allowed)}")
    if len(set(v)) != len(v):
        raise InvalidEvent(f"duplicate flag in {name}: {json.dumps(v)}")
    return tuple(v)


def check_expect(op: str, v: Any) -> dict:
    """An "expect" object, checked field by field (values as the model gives them)."""
    if not isinstance(v, dict):
        raise InvalidEvent(f"expect must be an object, got {json.dumps(v)}")
    out: dict[str, Any] = {}
    for key, val in v.items():
        if key == "ret":
            if val == 0 and type(val) is int:
                out[key] = 0
            elif isinstance(val, str) and _ERRNO.match(val):
                out[key] = val
            else:
                raise InvalidEvent(f"expect.ret must be 0 or an errno name like \"EINVAL\", got {json.dumps(val)}")
        elif key in ("error_offset", "done"):
            out[key] = check_int(f"expect.{key}", val)
        elif key == "ok":
            if val is not True:
                raise InvalidEvent(f"expect.ok must be true, got {json.dumps(val)}")
            out[key] = True
        elif key in ("signal", "exit", "exception"):
            if not isinstance(val, str) or not val or not val.replace("#", "").replace("_", "").isalnum():
                raise InvalidEvent(f"expect.{key} must be a name like \"SIGBUS\", got {json.dumps(val)}")
            out[key] = val
        elif key == "value":
            out[key] = None if val is None else parse_value(val, "expect.value")
        else:
            # Optional fields are allowed by the contract; keep them, check nothing.
            out[key] = val
    return out


def from_json(obj: Any, line: int | None = None) -> Event:
    """The Event of one parsed JSON line of a trace, checked and normalized as event()
    builds them ("value" an int 0..255, "flags" a tuple, "process" present); fields the
    format does not know go, unchecked, into "extra"; ``line`` rides along in "line".
    Raises InvalidEvent with the problem.

    >>> from_json({"op": "host_write", "offset": 0, "value": "A"}, 2) == event("host_write", offset=0, value=65, line=2)
    True
    """
    if not isinstance(obj, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {type(obj).__name__}")
    op = obj.get("op")
    if op is None:
        raise InvalidEvent("event has no \"op\"")
    if not isinstance(op, str) or op not in FIELDS:
        raise InvalidEvent(f"unknown op {json.dumps(op)}; known: {', '.join(FIELDS)}")
    required, optional = FIELDS[op]
    for name in required:
        if name not in obj:
            raise InvalidEvent(f"{op} needs \"{name}\"")
    ev: dict[str, Any] = {"op": op}
    for name in required + optional:
        if name not in obj:
            continue
        v = obj[name]
        if name in ("offset", "size"):
            ev[name] = check_int(name, v)
        elif name == "attributes":
            if v not in ("private", "shared"):
                raise InvalidEvent(f"attributes must be \"private\" or \"shared\", got {json.dumps(v)}")
            ev[name] = v
        elif name == "flags":
            ev[name] = check_flags(v, GMEM_FLAGS if op == "create_gmem" else ATTRIBUTE_FLAGS)
        elif name == "new_gmem":
            ev[name] = check_flags(v, GMEM_FLAGS, "new_gmem")
        elif name == "private":
            if type(v) is not bool:
                raise InvalidEvent(f"private must be true or false, got {json.dumps(v)}")
            ev[name] = v
        elif name == "src":
            # "unknown" (added for recordings, docs/trace-format.md): the recording does
            # not show whether the kernel populated in place or copied from a source.
            if v is not None and v not in ("buffer", "unknown"):
                raise InvalidEvent(f"src must be null, \"buffer\" or \"unknown\", got {json.dumps(v)}")
            ev[name] = v
        elif name == "value":
            ev[name] = parse_value(v)
    if op in ("create_gmem", "set_attributes"):
        ev.setdefault("flags", ())
    if op == "populate":
        ev.setdefault("src", None)
        if ev["src"] == "buffer" and "value" not in ev:
            raise InvalidEvent("populate with src \"buffer\" needs \"value\" (the source's contents)")
        if ev["src"] is None and "value" in ev:
            raise InvalidEvent("populate with src null takes no \"value\" (the destination is its own source)")
        if ev["src"] == "unknown" and "value" in ev:
            raise InvalidEvent("populate with src \"unknown\" takes no \"value\" (nobody knows the source)")
    proc = obj.get("process", "vmm")
    if not isinstance(proc, str) or not proc:
        raise InvalidEvent(f"process must be a non-empty string, got {json.dumps(proc)}")
    ev["process"] = proc
    if "thread" in obj:
        # The thread of the process making the call (interleavings: a call with a thread
        # runs as steps, each "run" of the thread one more; docs/trace-format.md, "Threads").
        th = obj["thread"]
        if not isinstance(th, str) or not th or len(th) > 32 or not th.replace("_", "").replace("-", "").isalnum():
            raise InvalidEvent(f"thread must be a short name (letters, digits, - and _), got {json.dumps(th)[:40]}")
        ev["thread"] = th
    elif op == "run":
        raise InvalidEvent("run needs \"thread\" (whose call runs one more step)")
    if "t" in obj:
        t = obj["t"]
        # An int too large for a float (400 digits) is not a time either: isfinite would
        # raise on it, so its size is checked first.
        if type(t) not in (int, float) or (type(t) is int and abs(t) > 2 ** 53) or not math.isfinite(t):
            shown = json.dumps(t)
            raise InvalidEvent(f"t must be a number of seconds, got {shown if len(shown) <= 40 else shown[:37] + '...'}")
        ev["t"] = t
    if "note" in obj:
        if not isinstance(obj["note"], str):
            raise InvalidEvent("note must be a string")
        ev["note"] = obj["note"]
    if "expect" in obj:
        ev["expect"] = check_expect(op, obj["expect"])
    extra = {k: obj[k] for k in obj if k not in ev and k not in COMMON and k not in required + optional}
    if extra:
        ev["extra"] = extra
    if line is not None:
        ev["line"] = line
    return Event(ev)
