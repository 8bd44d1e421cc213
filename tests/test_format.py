"""The strict reader: everything valid is read, everything else is refused with a line."""

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gmemlab.errors import InputError
from gmemlab.traces.format import dumps, iter_events, loads

GOOD = (
    '{"format": "gmemlab-trace/1", "platform": "snp", "series": "v7", "page_size": 4096}\n'
    '# a comment\n'
    '\n'
    '{"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"], "expect": {"ret": 0}}\n'
    '{"op": "host_write", "offset": 0, "value": "A", "process": "child", "t": 1.5}\n'
    '{"op": "set_attributes", "offset": 0, "size": 8192, "attributes": "private", "flags": [],'
    ' "expect": {"ret": "EAGAIN", "error_offset": 4096}}\n'
    '{"op": "populate", "offset": 0, "size": 4096, "src": "buffer", "value": 7, "expect": {"ret": 0, "done": 1}}\n'
    '{"op": "guest_read", "offset": 0, "private": true, "expect": {"ok": true, "value": null}}\n'
    '{"op": "finalize", "note": "LAUNCH_FINISH", "x-extra": 1}\n'
)


def test_reads_a_good_trace():
    header, events = loads(GOOD, "t.jsonl")
    assert header["series"] == "v7" and header["page_size"] == 4096
    assert [e["line"] for e in events] == [4, 5, 6, 7, 8, 9]
    assert events[1]["value"] == 65 and events[1]["process"] == "child"
    assert events[3]["src"] == "buffer" and events[3]["value"] == 7
    assert events[4]["expect"] == {"ok": True, "value": None}
    assert events[5]["extra"] == {"x-extra": 1}


def test_writer_round_trips_byte_for_byte():
    header, events = loads(GOOD, "t.jsonl")
    text = dumps(header, events)
    assert dumps(*loads(text, "u.jsonl")) == text


BAD = [
    ("", 1, "empty trace"),
    ('{"format": "gmemlab-trace/2", "platform": "snp"}', 1, "format"),
    ('{"format": "gmemlab-trace/1"}', 1, "platform"),
    ('{"format": "gmemlab-trace/1", "platform": "arm"}', 1, "unknown platform"),
    ('{"format": "gmemlab-trace/1", "platform": "snp", "series": "v6"}', 1, "unknown series"),
    ('{"format": "gmemlab-trace/1", "platform": "snp", "page_size": 1000}', 1, "page_size"),
    ('[1, 2]', 1, "header"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "poke"}', 2, "unknown op"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"offset": 0}', 2, "no \"op\""),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "host_read"}', 2, "needs \"offset\""),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "host_read", "offset": -1}', 2, "out of range"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "host_read", "offset": 1.5}', 2, "integer"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "host_read", "offset": true}', 2, "integer"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "host_write", "offset": 0, "value": 256}', 2, "0..255"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "host_write", "offset": 0, "value": "AB"}', 2, "one-character"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "set_attributes", "offset": 0, "size": 1, "attributes": "secret"}', 2, "attributes"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "create_gmem", "size": 1, "flags": ["HUGE"]}', 2, "unknown flag"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "create_gmem", "size": 1, "flags": ["MMAP", "MMAP"]}', 2, "duplicate flag"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "populate", "offset": 0, "size": 1, "src": "buffer"}', 2, "needs \"value\""),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "finalize", "expect": {"ret": "nope"}}', 2, "errno"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "finalize", "expect": {"ret": 0, "ret": 1}}', 2, "duplicate key"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "finalize", "t": NaN}', 2, "not JSON"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "finalize"', 2, "not JSON"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "guest_read", "offset": 0, "private": 1}', 2, "true or false"),
    ('{"format": "gmemlab-trace/1", "platform": "snp"}\n{"op": "finalize", "process": ""}', 2, "process"),
]


@pytest.mark.parametrize("text,line,words", BAD)
def test_refuses_with_file_and_line(text, line, words):
    with pytest.raises(InputError) as e:
        loads(text.encode(), "bad.jsonl")
    assert e.value.line == line
    assert str(e.value).startswith(f"bad.jsonl:{line}: ")
    assert words in str(e.value)


def test_refuses_binary_and_non_utf8():
    with pytest.raises(InputError, match=r"^b:2: binary"):
        loads(b'{"format": "gmemlab-trace/1", "platform": "snp"}\n\x00\x01', "b")
    with pytest.raises(InputError, match=r"^b:1: not UTF-8"):
        loads(b'\xff\xfe{', "b")


@st.composite
def mutated(draw):
    data = bytearray(GOOD.encode())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "swap"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 20))]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del data[i:]
        else:
            lines = bytes(data).split(b"\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_traces_are_read_or_refused_with_a_line(data):
    try:
        header, events = loads(data, "m.jsonl")
    except InputError as e:
        assert e.line >= 1 and str(e).startswith(f"m.jsonl:{e.line}: ")
        return
    # What is accepted is a valid trace: it writes and reads back the same.
    text = dumps(header, events)
    assert dumps(*loads(text, "w")) == text


def _cli(*args, input_file=None):
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], capture_output=True, text=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_cli_check_trace_on_mutations_never_tracebacks(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("m") / "m.jsonl"
    p.write_bytes(data)
    r = _cli("check-trace", str(p), "--json")
    assert "Traceback" not in r.stderr
    assert r.returncode in (0, 1, 2)
    if r.returncode == 2:
        assert r.stderr.startswith(f"{p}:") and r.stdout == ""
    else:
        out = json.loads(r.stdout)
        assert set(out) == {"conforms", "divergence", "violations", "events"}


def test_streaming_reader_yields_header_first():
    it = iter_events(GOOD, "t")
    assert next(it)["format"] == "gmemlab-trace/1"
    assert next(it)["op"] == "create_gmem"
