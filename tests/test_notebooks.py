"""The workbook: every notebook is thin, paired with its text form and stripped of
outputs; each runs under papermill with its defaults and with a second set of
parameters, and what it produced (the JSON it writes to ``results_path``, its
outputs) is held to what gmemlab computes directly; `gmemlab report` writes the HTML
and the plain-text reply.

Needs the "lab" extra (papermill, nbformat, jupytext, ipykernel); without it the
tests skip, except under CI=true, where they must run.
"""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from gmemlab.errors import UsageError
from gmemlab.explore import Bounds
from gmemlab.explore.compare import compare
from gmemlab.model.vocab import PROPOSALS, SERIES
from gmemlab.render import views
from gmemlab.render.reply import reply_text
from gmemlab.traces.format import loads
from gmemlab.traces.replay import config_for, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NBDIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = ["01_state_space", "02_compare", "03_counterexamples", "04_conformance", "05_rfc_reply",
             "06_variants", "07_races"]

with open(os.path.join(ROOT, "data", "manifest", "explore.json")) as _f:
    EXPLORE = json.load(_f)
with open(os.path.join(ROOT, "data", "traces", "manifest.json")) as _f:
    TRACES = json.load(_f)


def _need(module):
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is missing: pip install gmemlab[lab]")


# The second parameter set of each notebook (the first is its defaults).
SECOND = {
    "01_state_space": {"proposal": "userspace-converts", "platform": "tdx", "series": "v7", "engine": "python"},
    "02_compare": {"platform": "sw_protected", "series": "v5", "pages": 2, "focus": "populate-converts",
                   "precompute": False, "engine": "python"},
    "03_counterexamples": {"platform": "snp", "series": "v7", "proposals": ["private-first", "userspace-converts"]},
    "04_conformance": {"traces": "../data/traces/launch", "proposal": "userspace-converts"},
    "05_rfc_reply": {"platform": "tdx", "series": "v7", "proposal": "private-first",
                     "invariant": "guest_never_sees_stale_data"},
    "06_variants": {"platform": "tdx", "series": "v7", "pages": 1, "knobs": ["allocation_failures"]},
    "07_races": {"proposals": ["userspace-converts"], "platforms": ["snp"], "threads": 2,
                 "knobs": ["check_before_unmap"]},
}
CASES = [(n, which) for n in NOTEBOOKS for which in ("defaults", "second")]


class Runs(dict):
    """Executed notebooks by case. A case whose run failed holds its error, raised by the
    test that reads it: one notebook that fails fails its own tests, not the module's."""

    @staticmethod
    def isolated(run):
        def one(case):
            try:
                return run(case)
            except Exception as e:  # noqa: BLE001 - kept for the case's own tests
                return case[:2], e
        return one

    def __getitem__(self, key):
        got = super().__getitem__(key)
        if isinstance(got, Exception):
            raise got
        return got


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every notebook x parameter set, executed two at a time (one kernel each)."""
    _need("papermill")
    nbformat = _need("nbformat")
    from gmemlab.report import execute
    tmp = tmp_path_factory.mktemp("notebooks")

    def run(case):
        name, which = case
        results = str(tmp / f"{name}-{which}.json")
        params = dict(SECOND[name]) if which == "second" else {}
        params["results_path"] = results
        out = str(tmp / f"{name}-{which}.ipynb")
        execute(name, params, out, NBDIR)
        with open(results) as f:
            data = json.load(f)
        return case, (data, nbformat.read(out, as_version=4))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return Runs(pool.map(Runs.isolated(run), CASES))


def outputs_html(nb) -> str:
    """Every text/html and text/plain output of an executed notebook, concatenated."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            out.append(data.get("text/html", "") + data.get("text/plain", "") + o.get("text", ""))
    return "\n".join(out)


def _params(name, which):
    import papermill
    defaults = {k: eval(v["default"]) for k, v in papermill.inspect_notebook(os.path.join(NBDIR, name + ".ipynb")).items()}
    return {**defaults, **(SECOND[name] if which == "second" else {})}


# --- the notebooks as files ------------------------------------------------------------------

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_thin_paired_and_stripped(name):
    nbformat = _need("nbformat")
    jupytext = _need("jupytext")
    nb = nbformat.read(os.path.join(NBDIR, name + ".ipynb"), as_version=4)
    text = jupytext.read(os.path.join(NBDIR, name + ".py"))
    # paired: the same cells, in the same order, with the same tags
    assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells] == \
           [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in text.cells]
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    # stripped
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, name
    # Overview, one parameters cell, Summary
    assert nb.cells[0].cell_type == "markdown" and "## Overview" in nb.cells[0].source
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is nb.cells[1]
    assert any(c.cell_type == "markdown" and c.source.startswith("## Summary") for c in nb.cells)
    # thin: imports from gmemlab only, no function of more than a few lines
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for line in code.splitlines():
        if re.match(r"\s*(import|from)\s", line):
            assert re.match(r"\s*(from gmemlab[.\w]* import|import gmemlab)", line), line
    assert "def " not in code and "class " not in code
    assert "results_path" in tagged[0].source


def test_every_notebook_in_the_tree_is_stripped():
    """No notebooks/*.ipynb is committed with outputs, execution counts or papermill's
    injected cell (`make strip`; the pre-commit hook of `gmemlab.githooks` refuses them)."""
    from gmemlab.githooks import unstripped
    found = sorted(f for f in os.listdir(NBDIR) if f.endswith(".ipynb"))
    assert set(NOTEBOOKS) <= {f[:-len(".ipynb")] for f in found}  # 06_variants included
    assert unstripped([os.path.join(NBDIR, f) for f in found]) == []


# --- what each notebook produced ---------------------------------------------------------------

@pytest.mark.parametrize("name,which", CASES, ids=[f"{n}-{w}" for n, w in CASES])
def test_notebook_results(runs, name, which):
    data, nb = runs[(name, which)]
    p = _params(name, which)
    shown = outputs_html(nb)
    assert "Traceback" not in shown
    CHECKS[name](data, p, shown)


def check_state_space(data, p, shown):
    key = f"{p['proposal']}/{p['platform']}/{p['series']}/{p['pages']}p"
    assert data["states"] == EXPLORE[key]["states"]
    assert data["transitions"] == EXPLORE[key]["transitions"]
    assert data["broken"] == EXPLORE[key]["broken"]
    assert all(n > 1 for n in data["quotients"].values())
    assert shown.count('class="gml-graph"') == 4  # the whole graph and three quotients
    if p["engine"] == "python":
        assert 'data-engine="dot"' not in shown


def check_compare(data, p, shown):
    table = compare(p["platform"], p["series"], Bounds(pages=p["pages"]))
    assert data["matrix"] == views.matrix_data(table)
    assert data["panel"]["focus"] == p["focus"] and data["panel"]["matrix"] == data["matrix"]
    for c in table.columns:
        assert data["matrix"]["states"][c.proposal] == f"{len(c.exploration.states):,}"
    assert ("gml-toggle" in shown) == p["precompute"]
    if p["precompute"]:  # every series x proposal, for the exported page
        assert shown.count('class="gml-pane ') == len(SERIES) * len(PROPOSALS)


def check_counterexamples(data, p, shown):
    names = list(views.PROPOSALS) if p["proposals"] == "all" else p["proposals"]
    assert sorted(data) == sorted(names)
    for proposal in names:
        key = f"{proposal}/{p['platform']}/{p['series']}/{p['pages']}p"
        assert sorted(data[proposal]) == sorted(EXPLORE[key]["broken"])
        for inv, cx in data[proposal].items():
            assert cx["steps"] == len(cx["events"]) and cx["events"][0]["op"] == "create_gmem"
            if inv != "no_stuck_state":
                assert cx["broken_at"], inv
            header, events = loads(cx["trace"])
            rep = replay(config_for(header, proposal), events)
            assert rep.conforms
            if inv != "no_stuck_state":
                assert inv in {v["invariant"] for v in rep.violations}
    assert shown.count('class="gml-lanes"') >= sum(len(v) for v in data.values())


def check_conformance(data, p, shown):
    folder = os.path.normpath(os.path.join(NBDIR, p["traces"]))
    expected = {os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "data", "traces"))
                for d, _, fs in os.walk(folder) for f in fs if f.endswith(".jsonl")}
    assert set(data["verdicts"]) == expected  # every trace in the folder
    for name, verdict in data["verdicts"].items():
        want = TRACES[name][p["proposal"]]
        assert verdict == (want if isinstance(want, str) else want["verdict"]), name
        assert data["expected"][name] == verdict
    assert shown.count('class="gml-divergence"') == sum(v == "diverges" for v in data["verdicts"].values())
    assert "gml-coverage" in shown
    # The kernel as the oracle: the corpus of tests/test_kvm.py, or a plain "did not run".
    k = data["kernel"]
    assert 'class="gml-kernel"' in shown
    if not k["ran"]:
        assert "the kernel oracle did not run" in shown and not os.environ.get("GMEMLAB_REQUIRE_KVM")
        return
    corpus = {os.path.relpath(os.path.join(d, f), ROOT) for t in p["kernel_traces"]
              for d, _, fs in os.walk(os.path.normpath(os.path.join(NBDIR, t))) for f in fs if f.endswith(".jsonl")}
    assert set(k["traces"]) | set(k["not_run"]) == corpus and len(k["traces"]) >= 7
    assert k["agree"] and not any(t["disagreements"] for t in k["traces"].values())
    assert k["kernel"] == os.uname().release and shown.count('class="gml-kernel-trace"') == len(k["traces"])


def check_reply(data, p, shown):
    table = compare(p["platform"], p["series"], Bounds(pages=p["pages"]))
    assert data["text"] == reply_text(table, p["proposal"] or None, p["invariant"] or None)
    assert data["ascii"] and data["width"] <= 72
    if p["proposal"]:
        assert (data["proposal"], data["invariant"]) == (p["proposal"], p["invariant"])
    assert "gml-reply" in shown
    # what each reference VMM recovers from: the data and the section shown
    for c in table.columns:
        r = c.recovery
        assert data["recovery"][c.proposal]["holds"] == r.holds
        assert data["recovery"][c.proposal]["gives_up_on"] == r.gives_up_on
        assert f'class="gml-vmm" data-proposal="{c.proposal}" data-holds="{str(r.holds).lower()}"' in shown


def check_variants(data, p, shown):
    """06 defines populate-converts-ebusy in a cell and compares it with the built-ins."""
    from gmemlab.model import vocab
    from gmemlab.model.proposals import POPULATE_CONVERTS, Proposal
    name = "populate-converts-ebusy"
    assert data["variant"] == name and data["base"] == "populate-converts"
    assert data["differences"] == {"populate_busy_errno": ["EAGAIN", "EBUSY"]}
    assert sorted(data["proposals"]) == sorted(list(vocab.PROPOSALS) + [name])  # saved with sorted keys
    vocab.register(Proposal.derive(POPULATE_CONVERTS, name=name, claim=data["claim"], source=data["source"],
                                   populate_busy_errno="EBUSY"))
    try:
        table = compare(p["platform"], p["series"], Bounds(pages=p["pages"]), knobs=views.knob_dict(p["knobs"]),
                        proposals=vocab.proposal_names())
    finally:
        vocab.unregister(name)
    for c in table.columns:
        row = data["proposals"][c.proposal]
        assert row["states"] == len(c.exploration.states) and row["transitions"] == c.exploration.transitions
        assert row["error_channels"] == c.errors
    if p["platform"] == "tdx":  # KVM_TDX_INIT_MEM_REGION hands the errno to userspace
        assert data["against_base"]["error_channels"]["populate"][1][0] == "EBUSY"
    assert f'data-proposal="{name}"' in shown and 'class="gml-variant"' in shown


def check_races(data, p, shown):
    """07 explores each proposal atomically, interleaved, and with each race knob on:
    its matrix is what explore finds, and each race it reports is drawn as lanes."""
    from gmemlab.explore import explore
    from gmemlab.invariants import ALWAYS
    from gmemlab.model.state import Config
    assert (data["pages"], data["threads"], data["knobs"]) == (p["race_pages"], p["threads"], p["knobs"])
    assert sorted(data["runs"]) == sorted(p["platforms"])
    races = 0
    for plat in p["platforms"]:
        assert sorted(data["runs"][plat]) == sorted(p["proposals"])
        for prop in p["proposals"]:
            runs = data["runs"][plat][prop]
            assert sorted(runs) == sorted(["atomic", "none"] + p["knobs"])
            for setting, got in runs.items():
                if (plat, prop) == (p["platforms"][0], p["proposals"][0]):  # the first, explored again
                    on = {setting: True} if setting in p["knobs"] else {}
                    x = explore(Config(proposal=prop, platform=plat, series=p["series"], **on),
                                Bounds(pages=p["race_pages"], interleave=0 if setting == "atomic" else p["threads"]))
                    assert got["states"] == len(x.states) and got["transitions"] == x.transitions
                    want = {q.name: len(cx) for q in ALWAYS if (cx := x.counterexample(q.name)) is not None}
                    assert {k: v["steps"] for k, v in got["broken"].items()} == want
                for inv, v in got["broken"].items():
                    atomic = inv in runs["atomic"]["broken"]
                    assert (v["kind"] == "atomic") == atomic
                    races += not atomic
                    if setting != "none" and not atomic:
                        assert v["kind"] == ("race" if inv in runs["none"]["broken"] else "knob")
    assert shown.count('class="gml-race"') == races
    assert shown.count('class="gml-thread-lanes"') == races
    assert 'class="gml-races"' in shown


CHECKS = {"01_state_space": check_state_space, "02_compare": check_compare,
          "03_counterexamples": check_counterexamples, "04_conformance": check_conformance,
          "05_rfc_reply": check_reply, "06_variants": check_variants, "07_races": check_races}


# --- every knob, platform, series and proposal, and a variant -------------------------------
# The vocabulary of gmemlab.model.vocab, value by value, through the two notebooks a reader
# tunes (02 and 05): each knob alone and all together (the issue: either of huge_folios or
# allocation_failures crashed both), every platform, series and proposal, and a variant
# loaded from a file. pages=1 keeps each run to a few seconds.

from gmemlab.model import vocab as _vocab  # noqa: E402

VARIANT = "populate-converts-ebusy"
VARIANTS_FILE = (
    "from gmemlab import Proposal\n"
    "from gmemlab.model.proposals import POPULATE_CONVERTS\n"
    "EBUSY = Proposal.derive(POPULATE_CONVERTS, name='populate-converts-ebusy',\n"
    "                        claim='populate converts, but refuses a pinned page with EBUSY',\n"
    "                        source='tests/test_notebooks.py', populate_busy_errno='EBUSY')\n")


def _vocab_cases():
    knob_sets = [[k] for k in _vocab.KNOBS] + [list(_vocab.KNOBS)]
    cases = []
    for nb in ("02_compare", "05_rfc_reply"):
        for ks in knob_sets:
            cases.append((nb, "knobs=" + "+".join(ks), {"knobs": ks}))
        for platform in _vocab.PLATFORMS:
            cases.append((nb, f"platform={platform}", {"platform": platform}))
        for series in _vocab.SERIES:
            cases.append((nb, f"series={series}", {"series": series}))
        key = "focus" if nb == "02_compare" else "proposal"
        for name in _vocab.PROPOSALS:
            cases.append((nb, f"{key}={name}", {key: name}))
        cases.append((nb, "variant", {"variants": ["VARIANTS_FILE"], key: VARIANT}))
    for nb, _, params in cases:
        params["pages"] = 1
        if nb == "02_compare" and "knobs" not in params:
            params["precompute"] = False   # the knob runs keep it: it renders every series too
    return cases


VOCAB_CASES = _vocab_cases()


@pytest.fixture(scope="module")
def vocab_runs(tmp_path_factory):
    _need("papermill")
    nbformat = _need("nbformat")
    from gmemlab.report import execute
    tmp = tmp_path_factory.mktemp("vocab")
    variants = tmp / "my_variants.py"
    variants.write_text(VARIANTS_FILE)

    def run(case):
        nb, label, params = case
        params = {k: ([str(variants)] if v == ["VARIANTS_FILE"] else v) for k, v in params.items()}
        slug = re.sub(r"[^\w.-]", "_", f"{nb}-{label}")
        params["results_path"] = str(tmp / f"{slug}.json")
        out = str(tmp / f"{slug}.ipynb")
        execute(nb, params, out, NBDIR)
        with open(params["results_path"]) as f:
            return (nb, label), (params, json.load(f), nbformat.read(out, as_version=4))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return Runs(pool.map(Runs.isolated(run), VOCAB_CASES))


@pytest.fixture
def registered_variant():
    from gmemlab.model.proposals import POPULATE_CONVERTS, Proposal
    _vocab.register(Proposal.derive(POPULATE_CONVERTS, name=VARIANT, claim="populate converts, but refuses "
                                    "a pinned page with EBUSY", source="tests/test_notebooks.py",
                                    populate_busy_errno="EBUSY"))
    yield
    _vocab.unregister(VARIANT)
    views._compare.cache_clear()


@pytest.mark.parametrize("nb,label", [(nb, label) for nb, label, _ in VOCAB_CASES],
                         ids=[f"{nb}-{label}" for nb, label, _ in VOCAB_CASES])
def test_every_value_of_the_vocabulary_runs(vocab_runs, request, nb, label):
    params, data, executed = vocab_runs[(nb, label)]
    if params.get("variants"):
        request.getfixturevalue("registered_variant")
    p = {**_params(nb, "defaults"), **params}
    shown = outputs_html(executed)
    assert "Traceback" not in shown and "gml-error" not in shown
    table = views.comparison(p["platform"], p["series"], p["pages"], p["knobs"])
    if nb == "02_compare":
        assert "error" not in data["panel"], data["panel"]
        assert data["matrix"] == views.matrix_data(table) == data["panel"]["matrix"]
        assert data["panel"]["knobs"] == views.knob_dict(p["knobs"])
        assert data["panel"]["focus"] == p["focus"]
        assert ("gml-toggle" in shown) == p["precompute"]
    else:
        assert data["text"] == reply_text(table, p["proposal"] or None, p["invariant"] or None)
        assert data["ascii"] and data["width"] <= 72
        for k in p["knobs"]:   # every knob on is cited, and in the command that reproduces it
            assert _vocab.KNOBS[k].flag in data["text"] or data["proposal"] is None
            assert f"knob {k}" in data["text"]
    if params.get("variants"):   # loaded from the file: a column of its own, cited
        assert VARIANT in (data["matrix"]["states"] if nb == "02_compare" else data["text"])
        assert VARIANT in shown


# --- gmemlab report ---------------------------------------------------------------------------

def test_report_writes_html_and_the_reply(tmp_path):
    _need("papermill")
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "gmemlab", "report", "--out", str(out), "--platform", "snp",
                        "--pages", "1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(out))
    assert files == sorted([n + ".html" for n in NOTEBOOKS] + ["reply.txt", "reply.html", "index.html"])
    assert not [f for f in files if f.startswith(".tmp")]
    reply = (out / "reply.txt").read_text()
    assert reply == reply_text(compare("snp", "v8", Bounds(pages=1)))
    page = (out / "02_compare.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" not in page  # the live panel needs a kernel
    assert "<script src" not in page and "cdnjs" not in page          # nothing from the network
    assert page.count('class="gml-pane ') == len(SERIES) * len(PROPOSALS)   # the kernel-free toggle
    assert "gmemlab-report-" not in page                        # no temporary paths


@pytest.mark.parametrize("deaths,ran", [(0, 1), (1, 2), (2, 3), (3, 3)])
def test_a_kernel_that_dies_at_start_starts_again(monkeypatch, deaths, ran):
    """A kernel that dies before its first reply (a port taken by the other notebook's
    kernel) starts again, at most KERNEL_STARTS times; a failing cell never does."""
    import gmemlab.report as report
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        died = len(calls) <= deaths
        return subprocess.CompletedProcess(cmd, 1 if died else 0, "",
                                           f"RuntimeError: {report.KERNEL_DIED}" if died else "")
    monkeypatch.setattr(report, "declared_parameters", lambda path: set())
    monkeypatch.setattr(report.subprocess, "run", fake_run)
    if deaths >= report.KERNEL_STARTS:
        with pytest.raises(UsageError, match=r"notebook 01_state_space failed \(its kernel died at start 3 times\)"):
            report.execute("01_state_space", {}, "out.ipynb", NBDIR)
    else:
        report.execute("01_state_space", {}, "out.ipynb", NBDIR)
    assert len(calls) == ran

    calls.clear()
    monkeypatch.setattr(report.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(
        cmd, 1, "", "PapermillExecutionError: ZeroDivisionError"))
    with pytest.raises(UsageError, match="ZeroDivisionError") as e:
        report.execute("01_state_space", {}, "out.ipynb", NBDIR)
    assert len(calls) == 1 and "died" not in str(e.value)


def test_report_refuses_bad_options(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gmemlab", "report", "--out", str(tmp_path), "--pages", "9"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "--pages must be 1..3" in r.stderr


def test_the_report_s_platform_and_series_reach_every_notebook():
    """Among the parameters each notebook declares (no notebook runs), the report's
    platform reaches it (07_races: as its one platform), and its series."""
    from gmemlab.report import NOTEBOOKS, PER_TRACE, declared_parameters, notebook_params
    for name in NOTEBOOKS:
        if name in PER_TRACE:   # each trace names its own platform
            continue
        known = declared_parameters(os.path.join(NBDIR, name + ".ipynb"))
        given = {k: v for k, v in notebook_params(name, "tdx", "v7", 1, [], "r.json").items() if k in known}
        assert given.get("platform") == "tdx" or given.get("platforms") == ["tdx"], (name, given)
        assert given.get("series") == "v7", (name, given)


def test_strip_restores_the_committed_notebook(runs, tmp_path):
    """`make strip` on an executed notebook gives back the committed, output-free file."""
    import shutil
    import nbformat
    from gmemlab.report import strip_notebooks
    shutil.copytree(NBDIR, tmp_path / "nb")
    _, executed = runs[("02_compare", "defaults")]
    nbformat.write(executed, str(tmp_path / "nb" / "02_compare.ipynb"))
    assert strip_notebooks(str(tmp_path / "nb")) == [str(tmp_path / "nb" / "02_compare.ipynb")]
    with open(tmp_path / "nb" / "02_compare.ipynb") as a, open(os.path.join(NBDIR, "02_compare.ipynb")) as b:
        assert a.read() == b.read()
