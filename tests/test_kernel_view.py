"""Notebook 04's "The kernel as the oracle" (gmemlab.render.kernel): the corpus that
tests/test_kvm.py runs on the kernel, event by event beside the model of platform
"default"; a disagreement shown as one; without /dev/kvm, a plain "did not run".

Like tests/test_kvm.py, the tests that need /dev/kvm skip without it with the reason
"no /dev/kvm: the kernel oracle did not run" (tests/conftest.py counts them in red), and
GMEMLAB_REQUIRE_KVM=1 makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
from glob import glob

import pytest

from gmemlab.kvm.differential import judge
from gmemlab.render import kernel as K
from gmemlab.traces.format import dumps, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The corpus of tests/test_kvm.py (test_corpus_on_the_kernel_agrees_with_the_model).
CORPUS = sorted(glob(os.path.join(ROOT, "data", "traces", "*", "*.jsonl"))
                + glob(os.path.join(ROOT, "data", "emulated", "*.jsonl")))
NAMES = {os.path.relpath(p, ROOT) for p in CORPUS}


@pytest.fixture(scope="module")
def view(kvm):
    """The default view (the corpus on /dev/kvm), computed once."""
    kc = K.kernel_conformance()
    return kc, K.kernel_conformance_html(kc)


def _rows(html: str, cls: str) -> list[dict]:
    """The data-* attributes of every <tr>/<li>/<details> of that class."""
    out = []
    for m in re.finditer(r'<(?:tr|li|details) class="%s"([^>]*)>' % re.escape(cls), html):
        out.append(dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1))))
    return out


def test_the_view_runs_the_corpus_of_the_kvm_tests():
    """The module's default and the notebook's default kernel_traces are that corpus."""
    from gmemlab.render.views import trace_files
    assert {K.trace_name(p) for p in trace_files(list(K.CORPUS))} == NAMES
    nb = os.path.join(ROOT, "notebooks")
    with open(os.path.join(nb, "04_conformance.py")) as f:
        default = eval(re.search(r"^kernel_traces = (.*?)  #", f.read(), re.M).group(1))
    assert {K.trace_name(p) for p in trace_files([os.path.join(nb, t) for t in default])} == NAMES


def test_every_supported_corpus_trace_is_listed_and_agrees(kvm, view):
    kc, html = view
    assert kc.ran and kc.kernel == os.uname().release
    assert {r.name for r in kc.runs} == NAMES
    listed = {r["trace"]: r for r in _rows(html, "gml-kernel-trace")}
    folded = {r["trace"] for r in _rows(html, "gml-kernel-events")}
    for r in kc.runs:
        # what the view ran is what the conformance test judges (the same judge())
        header, events = load(r.path)
        v = judge(kvm, list(events), header)
        assert (len(r.rows), r.stopped) == (v.events_run, v.stopped), r.name
        assert v.divergence is None and r.agree, (r.name, r.disagreements)
        if v.events_run:
            row = listed[r.name]
            assert row["run"] == str(v.events_run) and row["events"] == str(len(events))
            assert row["agree"] == "true"
            assert row["stopped"] == (str(v.stopped["line"]) if v.stopped else "")
            assert r.name in folded
            assert [x["line"] for x in r.rows] == [ev["line"] for ev in events[:v.events_run]]
        else:
            assert r.name not in listed
    assert set(listed) == {r.name for r in kc.supported} and len(listed) >= 7
    assert sum(r.whole for r in kc.supported) >= 7
    # every event is shown (runs of alike events are one row that counts them)
    events = _rows(html, "gml-kernel-event")
    assert sum(int(e["events"]) for e in events) == sum(len(r.rows) for r in kc.supported)
    assert all(e["agree"] == "true" for e in events)
    assert 'data-agree="false"' not in html and "DISAGREE" not in html
    # the kernel, its capabilities, how the vCPU reaches memory, where each run stopped
    assert f'data-kernel="{kc.kernel}"' in html and "GUEST_MEMFD_FLAGS" in html
    assert kc.vcpu_memory_path == kvm.vcpu_memory_path and kc.vcpu_memory_path in html
    stops = {s["line"] for s in _rows(html, "gml-kernel-stop")}
    assert {str(r.stopped["line"]) for r in kc.supported if r.stopped} <= stops
    assert "the run stopped here: " in html
    # nothing to fetch: no script, no stylesheet, no external address
    assert "<script" not in html and "<link" not in html and "http" not in html
    data = K.kernel_conformance_data(kc)
    assert json.loads(json.dumps(data)) == data
    assert data["ran"] and data["agree"] and set(data["traces"]) | set(data["not_run"]) == NAMES
    assert "agree on every event" in K.kernel_conformance_summary(kc)


def test_a_disagreement_is_shown_as_one(kvm):
    """The kernel's recording walked through the model of another platform: snp's
    selftest expectations are not a default VM's, so the view must say so per event."""
    path = os.path.join(ROOT, "data", "traces", "selftests", "init_shared.jsonl")
    kc = K.kernel_conformance(path, platform="snp")
    (run,) = kc.runs
    assert not run.agree and not kc.agree
    bad = [r["line"] for r in run.disagreements]
    html = K.kernel_conformance_html(kc)
    (row,) = _rows(html, "gml-kernel-trace")
    assert row["agree"] == "false" and f"DISAGREE ({len(bad)}; first line {bad[0]})" in html
    shown_bad = [int(e["line"]) for e in _rows(html, "gml-kernel-event") if e["agree"] == "false"]
    assert shown_bad == bad
    assert '<details class="gml-kernel-events" data-trace="data/traces/selftests/init_shared.jsonl" open>' in html
    assert K.kernel_conformance_data(kc)["traces"][run.name]["disagreements"] == bad
    assert "disagree on data/traces/selftests/init_shared.jsonl" in K.kernel_conformance_summary(kc)


def test_a_disagreement_is_shown_as_one_without_kvm():
    """The rendering alone, on made-up data (runs without /dev/kvm)."""
    rows = [{"line": n, "op": "host_write", "call": f"host_write({n:#x}, 1)", "kernel": {"ok": True},
             "model": {"ok": True}, "agree": True} for n in range(2, 8)]
    rows.append({"line": 8, "op": "host_read", "call": "host_read(0x0)", "kernel": {"ok": True, "value": 1},
                 "model": {"signal": "SIGBUS"}, "agree": False})
    run = K.KernelRun("/t/x.jsonl", "x.jsonl", 9, rows, {"line": 9, "op": "populate", "why": "no launch"})
    kc = K.KernelConformance("/dev/kvm", True, kernel="6.18.0", capabilities={"GUEST_MEMFD": 1},
                             vcpu_memory_path="guest_memfd", runs=[run])
    html = K.kernel_conformance_html(kc)
    events = _rows(html, "gml-kernel-event")
    assert [(e["line"], e["events"], e["agree"]) for e in events] == [("2-7", "6", "true"), ("8", "1", "false")]
    assert "<b>NO</b>" in html and "SIGBUS" in html and "DISAGREE (1; first line 8)" in html
    assert "kernel and model disagree on 1 trace(s)" in html
    assert _rows(html, "gml-kernel-stop") == [{"line": "9"}]


def test_a_trace_the_kernel_cannot_start_is_not_listed_as_run(kvm, tmp_path):
    conv = tmp_path / "conversion.jsonl"
    conv.write_text(dumps({"format": "gmemlab-trace/1", "platform": "snp"},
                          [{"op": "set_attributes", "offset": 0, "size": 4096, "attributes": "private",
                            "flags": []}]))
    big = tmp_path / "big.jsonl"
    big.write_text('{"format": "gmemlab-trace/1", "platform": "default", "page_size": 8192}\n'
                   '{"op": "create_gmem", "size": 8192}\n')
    ok = os.path.join(ROOT, "data", "traces", "selftests", "flags.jsonl")
    kc = K.kernel_conformance([str(conv), str(big), ok])
    assert [r.name for r in kc.supported] == ["data/traces/selftests/flags.jsonl"]
    html = K.kernel_conformance_html(kc)
    assert [r["trace"] for r in _rows(html, "gml-kernel-trace")] == ["data/traces/selftests/flags.jsonl"]
    not_run = {r["trace"] for r in _rows(html, "gml-kernel-unsupported")}
    assert not_run == {str(conv), str(big)}
    assert "KVM_SET_MEMORY_ATTRIBUTES2" in html and "page_size 8192" in html


def test_without_kvm_the_view_says_the_oracle_did_not_run(tmp_path):
    missing = str(tmp_path / "no-kvm")
    kc = K.kernel_conformance(device=missing)
    assert not kc.ran and missing in kc.why and {r.name for r in kc.runs} == NAMES
    html = K.kernel_conformance_html(kc)
    assert 'data-ran="false"' in html and "the kernel oracle did not run" in html and missing in html
    assert "gml-kernel-trace" not in html and "gml-kernel-event" not in html
    assert K.kernel_conformance_data(kc) == {"ran": False, "why": kc.why, "device": missing}
    assert K.kernel_conformance_summary(kc).startswith("the kernel oracle did not run")


def test_the_notebook_without_kvm_says_so(tmp_path):
    """Notebook 04 under papermill with kvm_device at a missing path: no error, a plain note."""
    try:
        import nbformat
        import papermill  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("papermill is missing: pip install gmemlab[lab]")
    from gmemlab.report import execute
    results = tmp_path / "r.json"
    out = tmp_path / "04.ipynb"
    execute("04_conformance", {"traces": "../data/traces/selftests/flags.jsonl", "kvm_device": str(tmp_path / "no-kvm"),
                               "results_path": str(results)}, str(out))
    data = json.loads(results.read_text())
    assert data["kernel"]["ran"] is False and "no-kvm" in data["kernel"]["why"]
    nb = nbformat.read(str(out), as_version=4)
    shown = "".join(o.get("data", {}).get("text/html", "") + o.get("data", {}).get("text/plain", "")
                    + o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "Traceback" not in shown and 'data-ran="false"' in shown
    assert "the kernel oracle did not run" in shown
