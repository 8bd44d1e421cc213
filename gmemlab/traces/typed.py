"""The typed decoder: one event line of gmemlab-trace/1 decoded and validated in C.

The strict reader (gmemlab.traces.format) parses a line with the json module and then
checks it field by field in Python (gmemlab.model.events.from_json); at guest scale
that costs more than the replay it feeds. Here each op is a msgspec Struct (a tagged
union on "op") that declares exactly the fields, types and ranges from_json accepts,
so msgspec validates most of a line while it parses it; the few rules a type cannot
say (a flag named twice, populate's src/value pairing, "expect") are checked after.

This path is an accelerator, never a second definition of the format. It accepts a
line only when it can tell that the strict reader accepts it and makes the same Event
of it; everything else (a line msgspec refuses, a field it does not declare, a line
with an escape, non-ASCII text, a possible duplicate key, ...) it hands back, and the
reader then runs the strict path on that line, which alone words the error. So the
events and the FILE:LINE messages are the strict reader's, byte for byte
(tests/test_typed.py checks both paths against each other on hostile lines).

Duplicate keys: msgspec keeps the last of two equal keys, where the strict reader
refuses the line. Every key of a JSON object is followed by a colon, so a line with no
more colons than the distinct keys decoded has no key twice (a colon inside a string
only adds to the count, and then the line just takes the strict path).

Without msgspec (it is a core dependency, but the reader must not depend on a C
extension to be right) ``decode_event`` is None and the reader is the strict path.
"""

from __future__ import annotations

import re
from math import isfinite as _isfinite
from typing import Any, Callable, Literal, Optional, Union

from gmemlab.model.events import (ATTRIBUTE_FLAGS, FIELDS, GMEM_FLAGS, MAX_U64, Event,
                                  check_expect)

try:
    import msgspec
except ImportError:  # pragma: no cover - the pure-Python reader stays complete
    msgspec = None


class Unusable(Exception):
    """The typed path cannot vouch for this line: the strict path decides."""


decode_event: Optional[Callable[[str | bytes, int], Event]] = None
# Longer lines take the strict path: no integer in a shorter one reaches the digits
# int() refuses to convert (sys.int_info.default_max_str_digits, 4300), which the
# strict reader reports as "number too long".
LONGEST = 4000

if msgspec is not None:
    from typing import Annotated

    _UNSET = msgspec.UNSET
    _Unset = msgspec.UnsetType
    # A bound past int64 is not a msgspec constraint: "offset" and "size" are held to
    # MAX_U64 after decoding.
    _U64 = Annotated[int, msgspec.Meta(ge=0)]
    # parse_value: an integer 0..255 or a one-character string (lines here are ASCII,
    # so the character is <= 255).
    _Value = Union[Annotated[int, msgspec.Meta(ge=0, le=255)], Annotated[str, msgspec.Meta(min_length=1, max_length=1)]]
    # The typed form of each field of events.from_json (its checks, one by one).
    _TYPES: dict[str, Any] = {
        "offset": _U64,
        "size": _U64,
        "attributes": Literal["private", "shared"],
        "private": bool,
        "src": Optional[Literal["buffer", "unknown"]],
        "value": _Value,
        "new_gmem": list[Literal[GMEM_FLAGS]],  # type: ignore[valid-type]
    }
    _FLAGS = {"create_gmem": list[Literal[GMEM_FLAGS]],  # type: ignore[valid-type]
              "set_attributes": list[Literal[ATTRIBUTE_FLAGS]]}  # type: ignore[valid-type]
    # The common fields (events.COMMON): process a non-empty string, t a number (msgspec
    # has no NaN or infinity to give), note a string, expect an object checked after.
    _COMMON_TYPES = {
        "process": Annotated[str, msgspec.Meta(min_length=1)],
        "t": Union[int, float],
        "note": str,
        "expect": msgspec.Raw,  # its text, as _expect reads it
    }

    def _struct(op: str) -> type:
        """The Struct of one op: its fields in from_json's order (required ones without a
        default), then the common ones."""
        required, optional = FIELDS[op]
        fields = []
        for name in required + optional + tuple(_COMMON_TYPES):
            t = _FLAGS[op] if name == "flags" else _TYPES.get(name) or _COMMON_TYPES[name]
            fields.append((name, t) if name in required else (name, Union[t, _Unset], _UNSET))
        return msgspec.defstruct(f"Typed_{op}", fields, tag_field="op", tag=op, kw_only=True,
                                 forbid_unknown_fields=True)

    # "run" needs its "thread", and a line with a "thread" (an unknown field here) goes the
    # strict way too: interleaved traces are small, their checks live in from_json only.
    _STRUCTS = {op: _struct(op) for op in FIELDS if op != "run"}
    # struct type -> (op, its own fields in from_json's order, whether it has optional ones)
    _PLAN = {cls: (op, FIELDS[op][0] + FIELDS[op][1], bool(FIELDS[op][1])) for op, cls in _STRUCTS.items()}
    _decode = msgspec.json.Decoder(Union[tuple(_STRUCTS.values())]).decode  # type: ignore[arg-type]
    _astuple = msgspec.structs.astuple
    # "expect" objects repeat endlessly in a trace, byte for byte: their checked form,
    # and how many keys they hold (all levels), by their text.
    _EXPECTS: dict[tuple, tuple[dict, int]] = {}
    _EXPECTS_MAX = 4096
    _decode_any = msgspec.json.decode

    def _count_keys(v: Any) -> int:
        if type(v) is dict:
            return len(v) + sum(_count_keys(x) for x in v.values())
        if type(v) is list:
            return sum(_count_keys(x) for x in v)
        return 0

    def _expect(op: str, raw: Any) -> tuple[dict, int]:
        key = (op, bytes(raw))
        hit = _EXPECTS.get(key)
        if hit is None:
            v = _decode_any(key[1])
            if type(v) is not dict:
                raise Unusable
            hit = (check_expect(op, v), _count_keys(v))  # an InvalidEvent: the strict path words it
            if any(type(x) is dict or type(x) is list for x in v.values()):
                return hit  # lists or objects inside: each event gets its own, as json.loads makes them
            if len(_EXPECTS) >= _EXPECTS_MAX:
                _EXPECTS.clear()
            _EXPECTS[key] = hit
        return hit

    def _decode_event(text: str | bytes, line: int) -> Event:
        """The Event of one event line, as events.from_json(json.loads(text), line) makes
        it; raises (anything) where the typed path cannot vouch for the line."""
        colon, backslash = (b":", b"\\") if type(text) is bytes else (":", "\\")
        if len(text) > LONGEST or not text.isascii() or backslash in text:
            raise Unusable
        s = _decode(text)
        op, own, optional = _PLAN[type(s)]
        vals = _astuple(s)
        proc, t, note, exp = vals[-4:]
        ev: dict[str, Any] = {"op": op}
        if optional:
            ev.update([kv for kv in zip(own, vals) if kv[1] is not _UNSET])
            keys = len(ev)
            if op == "create_gmem" or op == "set_attributes":
                flags = ev.get("flags")
                if flags is None:
                    ev["flags"] = ()
                elif len(set(flags)) != len(flags):
                    raise Unusable
                else:
                    ev["flags"] = tuple(flags)
            elif op == "populate":
                if "src" not in ev:
                    ev["src"] = None
                if (ev["src"] == "buffer") != ("value" in ev):
                    raise Unusable
            elif "new_gmem" in ev:
                g = ev["new_gmem"]
                if len(set(g)) != len(g):
                    raise Unusable
                ev["new_gmem"] = tuple(g)
        else:
            ev.update(zip(own, vals))
            keys = len(ev)
        if ev.get("offset", 0) > MAX_U64 or ev.get("size", 0) > MAX_U64:
            raise Unusable
        v = ev.get("value")
        if type(v) is str:
            ev["value"] = ord(v)
        if proc is _UNSET:
            ev["process"] = "vmm"
        else:
            ev["process"] = proc
            keys += 1
        if t is not _UNSET:
            _isfinite(t)  # as from_json does: an int past float range raises there too
            ev["t"] = t
            keys += 1
        if note is not _UNSET:
            ev["note"] = note
            keys += 1
        if exp is not _UNSET:
            checked, n = _expect(op, exp)
            ev["expect"] = checked.copy()
            keys += 1 + n
        if text.count(colon) != keys:
            raise Unusable  # perhaps a key given twice (see the module docstring)
        ev["line"] = line
        return Event(ev)

    # Event lines repeat byte for byte but for their offset (a guest's accesses differ in
    # where they land, not in what they do). A line the writer's way, "op" then "offset"
    # first (so that number is the top-level offset), is looked up by its bytes with the
    # offset's digits taken out: a line that decoded here before with only other digits
    # there decodes to the same Event but for "offset" and "line". The digits are a JSON
    # integer that ends there (not 012, 1.5 or 1e3), so every check above gives the same
    # answer for both lines except the offset's bound and the line's length, checked
    # again; a line of another shape, or a first of its kind, takes _decode_event.
    _OFFSET_RE = rb'\{"op": "[a-z_]+", "offset": (0|[1-9][0-9]*)(?![0-9.eE])'
    _OFFSET_AT = {bytes: re.compile(_OFFSET_RE).match, str: re.compile(_OFFSET_RE.decode()).match}
    # (line without the offset's digits) -> (op, the fields after "offset" but "expect"
    # and "line", the checked "expect" or None)
    _SHAPES: dict[Any, tuple[str, dict, Optional[dict]]] = {}
    _SHAPES_MAX = 4096

    def _decode_event_by_shape(text: str | bytes, line: int) -> Event:
        """_decode_event, the Event of a line of a shape seen before made from that shape."""
        m = _OFFSET_AT[type(text)](text)
        if m is None:
            return _decode_event(text, line)
        a, b = m.span(1)
        shape = text[:a] + text[b:]
        hit = _SHAPES.get(shape)
        if hit is None:
            ev = _decode_event(text, line)
            exp = ev.get("expect")
            # Kept only where an Event made from the shape is this one: "offset" its second
            # field, and an "expect" (the last but "line") of no lists or objects, which each
            # event gets its own copy of.
            if list(ev)[1] == "offset" and (exp is None or not any(type(x) is dict or type(x) is list
                                                                   for x in exp.values())):
                if len(_SHAPES) >= _SHAPES_MAX:
                    _SHAPES.clear()
                rest = {k: v for k, v in ev.items() if k not in ("op", "offset", "expect", "line")}
                _SHAPES[shape] = (ev["op"], rest, None if exp is None else dict(exp))
            return ev
        offset = int(text[a:b])
        if offset > MAX_U64 or len(text) > LONGEST:
            raise Unusable
        op, rest, exp = hit
        ev = {"op": op, "offset": offset, **rest}
        if exp is not None:
            ev["expect"] = exp.copy()
        ev["line"] = line
        return Event(ev)

    decode_event = _decode_event_by_shape
