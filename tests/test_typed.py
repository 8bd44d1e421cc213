"""The typed decoder (gmemlab.traces.typed, msgspec) against the strict reader.

The typed path may only ever be a faster way to the same result: for any line, the
reader with it (typed=True) and without it (typed=False) yield the same events, field
order and types included (compared by repr), or fail with the same FILE:LINE message.
"""

from __future__ import annotations

import glob
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gmemlab.errors import InputError
from gmemlab.model.events import FIELDS
from gmemlab.traces import format as fmt
from gmemlab.traces import typed

pytestmark = pytest.mark.skipif(typed.decode_event is None, reason="msgspec is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = '{"format": "gmemlab-trace/1", "platform": "snp"}\n'


def outcome(data, typed_path: bool) -> str:
    """What the reader makes of data: the repr of every item, or the error message (or
    the exception, where the strict path has no message of its own)."""
    try:
        return repr(list(fmt.iter_events(data, "t.jsonl", typed=typed_path)))
    except InputError as e:
        return f"error: {e}"
    except Exception as e:
        return f"exception: {type(e).__name__}: {e}"


def same(text: str) -> str:
    a, b = outcome(text, True), outcome(text, False)
    assert a == b, text
    c, d = outcome(text.encode(), True), outcome(text.encode(), False)
    assert c == d == a, text
    return a


GOOD_LINES = [
    '{"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}}',
    '{"op": "host_write", "offset": 0, "value": "A", "process": "child", "t": 1.5}',
    '{"op": "host_write", "offset": 0, "value": 7, "t": 2}',
    '{"op": "set_attributes", "offset": 0, "size": 8192, "attributes": "private", "flags": [],'
    ' "expect": {"ret": "EAGAIN", "error_offset": 4096}}',
    '{"expect": {"done": 1, "ret": 0}, "op": "populate", "offset": 0, "size": 4096, "src": "buffer", "value": 7}',
    '{"op": "populate", "offset": 0, "size": 4096, "src": null}',
    '{"op": "guest_read", "offset": 0, "private": true, "expect": {"ok": true, "value": null}}',
    '{"op": "guest_write", "offset": 18446744073709551615, "private": false, "value": "m"}',
    '{"op": "map_gpa_range", "offset": 0, "size": 4096, "private": true, "expect": {"exit": "MEMORY_FAULT"}}',
    '{"op": "replace_memslot", "offset": 0, "size": 4096, "new_gmem": ["MMAP"]}',
    '{"op": "finalize"}',
]


@pytest.mark.parametrize("line", GOOD_LINES)
def test_good_lines_take_the_typed_path_and_agree(line):
    # The typed path really decodes these (else the comparisons below prove nothing).
    ev = typed.decode_event(line, 2)
    assert repr(ev) == repr(fmt.from_json(json.loads(line), 2))
    same(HEADER + line + "\n")


HOSTILE_LINES = [
    '{"op": "host_read", "offset": 0, "offset": 1}',               # duplicate key
    '{"op": "host_read", "offset" : 0, "offset": 1}',              # ... one spaced
    '{"op": "host_read", "op": "host_read", "offset": 0}',
    '{"op": "host_read", "offset": 0, "expect": {"ok": true, "ok": true}}',
    '{"op": "host_read", "offset": 0, "t": NaN}',
    '{"op": "host_read", "offset": 0, "t": Infinity}',
    '{"op": "host_read", "offset": 0, "t": 1e999}',
    '{"op": "host_read", "offset": 0, "t": true}',
    '{"op": "host_read", "offset": 0, "t": 1' + '0' * 400 + '}',    # no float holds it
    '{"op": "host_read", "offset": 0, "t": 1' + "0" * 400 + '}',   # an int past float range
    '{"op": "host_read", "offset": 18446744073709551616}',
    '{"op": "host_read", "offset": -1}',
    '{"op": "host_read", "offset": 1.0}',
    '{"op": "host_read", "offset": 1e2}',
    '{"op": "host_read", "offset": ' + "9" * 5000 + '}',
    '{"op": "host_read", "offset": 0, "t": ' + "9" * 5000 + '}',
    '{"op": "host_write", "offset": 0, "value": 256}',
    '{"op": "host_write", "offset": 0, "value": true}',
    '{"op": "host_write", "offset": 0, "value": "AB"}',
    '{"op": "host_write", "offset": 0, "value": ""}',
    '{"op": "host_write", "offset": 0, "value": "\\u00ff"}',
    '{"op": "host_write", "offset": 0, "value": "\\u0100"}',
    '{"op": "host_write", "offset": 0, "value": "é"}',
    '{"op": "poke", "offset": 0}',
    '{"op": 1, "offset": 0}',
    '{"offset": 0}',
    '{"op": "host_read"}',
    '{"op": "host_read", "offset": 0, "size": 4096}',                # a field of another op
    '{"op": "host_read", "offset": 0, "x-extra": {"a": 1, "a": 2}}',
    '{"op": "create_gmem", "size": 4096, "flags": ["MMAP", "MMAP"]}',
    '{"op": "create_gmem", "size": 4096, "flags": ["HUGE"]}',
    '{"op": "create_gmem", "size": 4096, "flags": "MMAP"}',
    '{"op": "set_attributes", "offset": 0, "size": 4096, "attributes": "secret"}',
    '{"op": "set_attributes", "offset": 0, "size": 4096, "attributes": "private", "flags": ["MMAP"]}',
    '{"op": "populate", "offset": 0, "size": 4096, "src": "buffer"}',
    '{"op": "populate", "offset": 0, "size": 4096, "value": 1}',
    '{"op": "populate", "offset": 0, "size": 4096, "src": "unknown", "value": 1}',
    '{"op": "populate", "offset": 0, "size": 4096, "src": "disk"}',
    '{"op": "guest_read", "offset": 0, "private": 1}',
    '{"op": "host_read", "offset": 0, "process": ""}',
    '{"op": "host_read", "offset": 0, "process": 3}',
    '{"op": "host_read", "offset": 0, "note": 3}',
    '{"op": "host_read", "offset": 0, "note": "a: b"}',
    '{"op": "host_read", "offset": 0, "expect": {"ret": false}}',
    '{"op": "host_read", "offset": 0, "expect": {"ret": 0.0}}',
    '{"op": "host_read", "offset": 0, "expect": {"ret": "einval"}}',
    '{"op": "host_read", "offset": 0, "expect": {"ok": 1}}',
    '{"op": "host_read", "offset": 0, "expect": {"signal": "#_"}}',
    '{"op": "host_read", "offset": 0, "expect": {"value": "AB"}}',
    '{"op": "host_read", "offset": 0, "expect": {"later": [1, {"b": 1}]}}',
    '{"op": "host_read", "offset": 0, "expect": []}',
    '{"op": "host_read", "offset": 0} x',
    '{"op": "host_read", "offset": 0}\x0c',
    '{"op": "host_read", "offset": 0, "note": "tab\there"}',
    '{"op": "host_read", "offset": 0, "note": "\\ud800"}',
    '{"op": "h\\u006fst_read", "offset": 0}',
    '{"op": "host_read", "offset": 0}\r',
    '  {"op": "host_read", "offset": 0}  ',
    '[1, 2]',
    '"text"',
    '{"op": "host_read", "offset": 0',
]


@pytest.mark.parametrize("line", HOSTILE_LINES)
def test_hostile_lines_give_the_strict_readers_answer(line):
    same(HEADER + line + "\n")


# A line of a shape the typed decoder has seen (gmemlab.traces.typed: the same bytes but
# for the offset's digits) is made from that shape: other digits there must still give
# the strict reader's event or error.
SHAPE = '{"op": "guest_write", "offset": OFF, "private": true, "value": "w", "expect": {"ok": true}}'
OTHER_OFFSETS = ["0", "4096", "18446744073709551615", "18446744073709551616", "012", "00", "1.0", "1e3",
                 "1E3", "-1", "4096.5", "9" * 5000, "1 ", " 1"]


@pytest.mark.parametrize("offset", OTHER_OFFSETS)
def test_a_known_shape_with_other_digits_gives_the_strict_readers_answer(offset):
    first = SHAPE.replace("OFF", "8192")
    assert typed.decode_event(first.encode(), 2)["offset"] == 8192  # the shape is known now
    same(HEADER + first + "\n" + SHAPE.replace("OFF", offset) + "\n")


def test_events_of_one_shape_are_their_own():
    lines = [SHAPE.replace("OFF", str(k * 4096)) for k in range(3)]
    events = list(fmt.iter_events((HEADER + "\n".join(lines) + "\n").encode(), "t.jsonl"))[1:]
    assert [ev["offset"] for ev in events] == [0, 4096, 8192]
    assert [ev["line"] for ev in events] == [2, 3, 4]
    assert repr(events[2]) == repr(fmt.from_json(json.loads(lines[2]), 4))
    assert events[1]["expect"] is not events[2]["expect"]


# Lines built from the vocabulary: valid ones, and ones wrong in every way a field can be.
_NAMES = sorted({n for req, opt in FIELDS.values() for n in req + opt}
                | {"process", "expect", "t", "note", "x-extra"})
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 300),
                     st.sampled_from([4096, 8192, 2 ** 64 - 1, 2 ** 64, 2 ** 63, 10 ** 400]),
                     st.floats(allow_nan=False, allow_infinity=False, width=32),
                     st.sampled_from(["A", "", "AB", "private", "shared", "buffer", "unknown", "vmm",
                                      "EINVAL", "SIGBUS", "MMAP", "ZERO", "é", "a:b", "\\"]))
_VALUES = st.one_of(_SCALARS, st.lists(st.sampled_from(["MMAP", "INIT_SHARED", "ZERO", "PRESERVE", "HUGE"]),
                                       max_size=3),
                    st.dictionaries(st.sampled_from(["ret", "ok", "value", "done", "error_offset", "signal",
                                                     "exit", "later"]), _SCALARS, max_size=3))


@st.composite
def event_lines(draw) -> str:
    op = draw(st.sampled_from(sorted(FIELDS) + ["poke"]))
    required, optional = FIELDS.get(op, ((), ()))
    names = [n for n in required if draw(st.integers(0, 9))] + draw(st.lists(st.sampled_from(_NAMES), max_size=4))
    parts = [f'"op": {json.dumps(op)}']
    for name in names:
        parts.append(f"{json.dumps(name)}: {json.dumps(draw(_VALUES), ensure_ascii=draw(st.booleans()))}")
    order = draw(st.permutations(parts))
    return "{" + draw(st.sampled_from([", ", ",", " ,  "])).join(order) + "}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_lines(), min_size=1, max_size=4))
def test_typed_and_strict_agree_on_generated_lines(lines):
    same(HEADER + "\n".join(lines) + "\n")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "data", "**", "*.jsonl"), recursive=True)))
def test_typed_and_strict_agree_on_the_corpus(path):
    with open(path, "rb") as f:
        data = f.read()
    assert outcome(data, True) == outcome(data, False)


def test_reader_without_msgspec_is_the_strict_path(monkeypatch):
    text = HEADER + "\n".join(GOOD_LINES + ['{"op": "host_read", "offset": 0, "offset": 1}']) + "\n"
    expected = outcome(text, False)
    monkeypatch.setattr(typed, "decode_event", None)
    assert outcome(text, None) == expected
    with pytest.raises(RuntimeError):
        list(fmt.iter_events(text, "t.jsonl", typed=True))


@pytest.mark.parametrize("block", [1, 5, 64, 1 << 18])
def test_block_reads_number_lines_as_readline_does(monkeypatch, block):
    monkeypatch.setattr(fmt, "_BLOCK", block)
    monkeypatch.setattr(fmt, "MAX_LINE", 80)
    text = HEADER + "\n\n# c\n" + "\n".join(GOOD_LINES[:1] + GOOD_LINES[-1:]) + "\n\n"
    assert outcome(io.BytesIO(text.encode()), True) == outcome(text.encode(), False)
    for tail in ("", "\n", "\nmore"):
        long = HEADER + GOOD_LINES[-1] + "\n" + "x" * 81 + tail
        assert outcome(io.BytesIO(long.encode()), True) == "error: t.jsonl:3: line longer than 80 bytes"
    assert outcome(io.BytesIO((HEADER + "x" * 80).encode()), True).startswith("error: t.jsonl:2: not JSON")
