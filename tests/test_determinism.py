"""Determinism (issue 13): every command's output is the same bytes from run to run,
whatever the hash seed; the report's HTML has no random ids."""

import os
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = "data/traces/launch/snp_private_first.jsonl"

COMMANDS = {
    "check-trace": ["check-trace", TRACE, "--json"],
    "check-trace-text": ["check-trace", TRACE, "--proposal", "userspace-converts"],
    "explore": ["explore", "--pages", "1", "--proposal", "userspace-converts", "--json"],
    "compare": ["compare", "--pages", "1", "--json"],
    "compare-text": ["compare", "--pages", "1"],
    "emulate": ["emulate", "pinned-retry", "--pages", "4"],
    "import": ["import", "data/recordings/qemu-snp-boot-pid.log", "--from", "qemu"],
    "sweep": ["sweep", "--pages", "1", "--workers", "2", "--json"],
}


def _run(args, seed):
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], cwd=ROOT, capture_output=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_same_bytes_whatever_the_hash_seed(name):
    a, b = _run(COMMANDS[name], 1), _run(COMMANDS[name], 4242)
    assert a.returncode in (0, 1), a.stderr.decode()
    assert a.returncode == b.returncode
    assert a.stdout == b.stdout


def test_compare_json_has_no_timings_unless_asked():
    r = _run(["compare", "--pages", "1", "--json", "--timings"], 0)
    assert r.returncode == 0 and b'"seconds"' not in r.stdout
    assert b"private-first:" in r.stderr and r.stderr.rstrip().endswith(b" s")


def test_report_html_ids_are_stable():
    pytest.importorskip("nbconvert")
    nbformat = pytest.importorskip("nbformat")
    from gmemlab.report import clean, to_html

    def notebook():
        nb = nbformat.v4.new_notebook()
        mid, layout = uuid.uuid4().hex, uuid.uuid4().hex
        code = nbformat.v4.new_code_cell("w")
        code.outputs = [nbformat.v4.new_output("display_data", data={
            "text/plain": "HTML(value='hi')",
            "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0, "model_id": mid}})]
        nb.cells = [nbformat.v4.new_markdown_cell("# a notebook"), code]
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
            "version_major": 2, "version_minor": 0, "state": {
                layout: {"model_name": "LayoutModel", "model_module": "@jupyter-widgets/base",
                         "model_module_version": "2.0.0", "state": {}},
                mid: {"model_name": "HTMLModel", "model_module": "@jupyter-widgets/controls",
                      "model_module_version": "2.0.0", "state": {"value": "hi", "layout": "IPY_MODEL_" + layout}}}}}
        return nb, (mid, layout)
    (a, ids_a), (b, ids_b) = notebook(), notebook()
    clean(a)
    clean(b)
    ha, hb = to_html(a), to_html(b)
    assert ha == hb
    assert not any(i in ha for i in ids_a)
