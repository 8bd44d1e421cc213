"""Every hand-written trace in data/traces replays with the verdict its manifest records,
under each proposal; and check-trace agrees from the command line."""

import json
import os
import subprocess
import sys

import pytest

from gmemlab.traces.format import load
from gmemlab.traces.replay import config_for, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "data", "traces")
MANIFEST = json.load(open(os.path.join(TRACES, "manifest.json")))
CASES = [(f, p, v) for f, verdicts in sorted(MANIFEST.items()) for p, v in sorted(verdicts.items())]


def verdict(report):
    if not report.conforms:
        return "diverges"
    return "violates" if report.violations else "conforms"


def test_manifest_covers_every_trace():
    found = sorted(os.path.relpath(os.path.join(d, f), TRACES)
                   for d, _, files in os.walk(TRACES) for f in files if f.endswith(".jsonl"))
    assert found == sorted(MANIFEST)
    assert len(found) >= 25


@pytest.mark.parametrize("name,proposal,expected", CASES, ids=[f"{f}:{p}" for f, p, _ in CASES])
def test_trace_verdict(name, proposal, expected):
    header, events = load(os.path.join(TRACES, name))
    report = replay(config_for(header, proposal), events)
    want = expected if isinstance(expected, str) else expected["verdict"]
    assert verdict(report) == want, report.to_json()
    if isinstance(expected, dict) and "invariants" in expected and want == "violates":
        assert sorted({v["invariant"] for v in report.violations}) == sorted(expected["invariants"])


def test_descriptions_name_their_source():
    for name in MANIFEST:
        header, _ = load(os.path.join(TRACES, name))
        assert header.get("description"), name
        if name.startswith("selftests/"):
            assert ".c" in header["description"], name


@pytest.mark.parametrize("name", ["launch/snp_private_first.jsonl", "launch/snp_userspace_converts.jsonl"])
def test_cli_agrees(name):
    path = os.path.join(TRACES, name)
    for proposal, v in sorted(MANIFEST[name].items()):
        r = subprocess.run([sys.executable, "-m", "gmemlab", "check-trace", path, "--proposal", proposal, "--json"],
                           capture_output=True, text=True, cwd=ROOT)
        out = json.loads(r.stdout)
        want = v if isinstance(v, str) else v["verdict"]
        assert r.returncode == (0 if want == "conforms" else 1)
        assert out["conforms"] == (want != "diverges")
        assert out["events"] > 0


def test_observed_enomem_replays_on_pages_and_runs():
    from gmemlab.traces.format import loads
    from gmemlab.traces.replay import replay_ranges
    text = "\n".join([
        '{"format": "gmemlab-trace/1", "platform": "tdx"}',
        '{"op": "create_gmem", "size": 16384, "flags": ["MMAP", "INIT_SHARED"]}',
        '{"op": "host_write", "offset": 0, "value": "A", "expect": {"ok": true}}',
        '{"op": "set_attributes", "offset": 4096, "size": 8192, "attributes": "private", "flags": [],'
        ' "expect": {"ret": "ENOMEM", "error_offset": 4096}}',
        '{"op": "host_read", "offset": 4096, "expect": {"ok": true, "value": 0}}',
        '{"op": "set_attributes", "offset": 0, "size": 16384, "attributes": "private", "flags": [],'
        ' "expect": {"ret": 0}}',
    ]) + "\n"
    header, events = loads(text, "enomem.jsonl")
    page = replay(config_for(header), events)
    runs = replay_ranges(config_for(header), events)
    assert page.to_json() == runs.to_json()
    assert page.ok and page.events == 5
    # Under populate-converts on TDX, populate passes the ENOMEM of its conversion on.
    text2 = "\n".join([
        '{"format": "gmemlab-trace/1", "platform": "tdx"}',
        '{"op": "create_gmem", "size": 8192, "flags": ["MMAP", "INIT_SHARED"]}',
        '{"op": "populate", "offset": 0, "size": 8192, "src": null, "expect": {"ret": "ENOMEM", "done": 0}}',
        '{"op": "populate", "offset": 0, "size": 8192, "src": null, "expect": {"ret": 0, "done": 2}}',
    ]) + "\n"
    header, events = loads(text2, "enomem2.jsonl")
    assert replay(config_for(header, "populate-converts"), events).ok
