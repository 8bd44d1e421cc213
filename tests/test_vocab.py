"""One model, one vocabulary: every consumer (Config, the command line, the widgets, the
sources a reply cites, the sweep, the public API) derives its names and limits from
gmemlab.model.vocab, and what users do with them works: every knob flag, every widget
control, --variants, the exit statuses. Fast: no Jupyter kernel (tests/test_notebooks.py
runs the notebooks)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import gmemlab
from gmemlab import cli
from gmemlab.errors import InputError, UsageError
from gmemlab.model import vocab
from gmemlab.model.proposals import POPULATE_CONVERTS, Proposal
from gmemlab.model.state import Config
from gmemlab.render import sources, views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANT = "populate-converts-ebusy"

VARIANTS_FILE = '''\
from gmemlab import Proposal
from gmemlab.model.proposals import POPULATE_CONVERTS

EBUSY = Proposal.derive(
    POPULATE_CONVERTS, name="populate-converts-ebusy",
    claim="populate converts, but refuses a pinned page with EBUSY instead of EAGAIN",
    source="a variant for the v8 review discussion (tests/test_vocab.py)",
    populate_busy_errno="EBUSY")
'''


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture
def variants_file(tmp_path):
    path = tmp_path / "my_variants.py"
    path.write_text(VARIANTS_FILE)
    return str(path)


@pytest.fixture
def variant():
    """The EBUSY variant registered in this process for one test, then forgotten."""
    p = vocab.register(Proposal.derive(POPULATE_CONVERTS, name=VARIANT, claim="EBUSY for a pinned page",
                                       source="tests/test_vocab.py", populate_busy_errno="EBUSY"))
    yield p
    vocab.unregister(VARIANT)
    views._compare.cache_clear()


def _subparser(name):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


def _options(name):
    return {s for a in _subparser(name)._actions for s in a.option_strings}


# --- the registry and Config -------------------------------------------------------------

def test_every_config_field_is_in_the_registry():
    """A knob added to Config and forgotten in vocab fails here (and so cannot be
    forgotten by the CLI, the widgets or the sources, which read vocab)."""
    fields = [f.name for f in dataclasses.fields(Config)]
    assert vocab.check_config_fields(fields) == []
    # and the other way: the registry names nothing Config does not have
    assert set(vocab.KNOBS) | set(vocab.CORE_FIELDS) == set(fields)
    assert all(f.type in (bool, "bool") for f in dataclasses.fields(Config) if f.name in vocab.KNOBS)


def test_check_config_fields_names_a_missing_field():
    assert vocab.check_config_fields(["proposal", "huge_folios", "brand_new_knob"]) == ["brand_new_knob"]


def test_config_knobs_and_rules_come_from_the_registry(variant):
    cfg = Config(proposal=VARIANT, huge_folios=True, allocation_failures=True)
    assert cfg.knobs == ["huge_folios", "allocation_failures"]  # the registry's order
    assert cfg.rules is variant
    with pytest.raises(UsageError, match="unknown proposal"):
        Config(proposal="nope")


# --- the command line ------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["explore", "compare", "sweep", "check-trace"])
def test_every_knob_is_a_flag_with_its_help_and_source(command):
    opts = _options(command)
    parser = _subparser(command)
    for k in vocab.KNOBS.values():
        assert k.flag in opts, (command, k.flag)
        action = next(a for a in parser._actions if k.flag in a.option_strings)
        assert action.dest == k.name
        assert k.help in action.help.replace("%%", "%")
        assert k.source in action.help.replace("%%", "%")
        if k.status:
            assert k.status in action.help


@pytest.mark.parametrize("name", list(vocab.KNOBS))
def test_each_knob_flag_turns_that_knob_on(name):
    k = vocab.KNOBS[name]
    for command in (["explore"], ["compare"], ["sweep"], ["check-trace", "t.jsonl"]):
        args = cli.build_parser().parse_args(command + [k.flag])
        assert cli._knobs(args) == {n: n == name for n in vocab.KNOBS}, command


def test_sweep_knob_flag_is_on_in_every_knob_set(monkeypatch):
    seen = {}

    def fake_sweep(points, **kw):
        seen["points"] = points
        from gmemlab.sweep import SweepResult
        return SweepResult(points, [])
    monkeypatch.setattr("gmemlab.sweep.sweep", fake_sweep)
    assert cli.main(["sweep", "--proposals", "private-first", "--pages", "1", "--knobs", "none,convert-after-populate",
                     "--huge-folios", "--json"]) == 0
    assert sorted(p.knobs for p in seen["points"]) == [("convert_after_populate", "huge_folios"), ("huge_folios",)]


def test_choices_and_limits_come_from_the_registry():
    for command in ("explore", "compare"):
        parser = _subparser(command)
        by_dest = {a.dest: a for a in parser._actions}
        assert tuple(by_dest["platform"].choices) == vocab.PLATFORMS
        assert tuple(by_dest["series"].choices) == vocab.SERIES
        assert tuple(by_dest["engine"].choices) == vocab.ENGINES
        assert f"1..{vocab.MAX_PAGES}" in by_dest["pages"].help
    explore = {a.dest: a for a in _subparser("explore")._actions}
    assert all(n in explore["proposal"].help for n in vocab.proposal_names())
    r = _cli("explore", "--pages", str(vocab.MAX_PAGES + 1))
    assert r.returncode == 2 and f"1..{vocab.MAX_PAGES}" in r.stderr
    from gmemlab.sweep import parse_pages
    assert parse_pages(str(vocab.MAX_PAGES)) == [vocab.MAX_PAGES]
    with pytest.raises(UsageError, match=f"1..{vocab.MAX_PAGES}"):
        parse_pages(str(vocab.MAX_PAGES + 1))


def test_every_command_has_a_description_defaults_and_examples():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description and p.description.strip(), name
        assert "examples:" in text and "  gmemlab " + name in text, name
        if any(a.default not in (None, False, [], "==SUPPRESS==") for a in p._actions if a.option_strings):
            assert "(default:" in text, name


def test_version():
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"gmemlab {gmemlab.__version__}"


def test_explore_exit_status():
    # 1: an invariant breaks (userspace-converts lets populate take a shared page)
    r = _cli("explore", "--proposal", "userspace-converts", "--pages", "1", "--json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["invariants"]["te_private_implies_kvm_private"]["holds"] is False
    # 0: every invariant holds
    r = _cli("explore", "--proposal", "private-first", "--pages", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert all(v["holds"] for v in json.loads(r.stdout)["invariants"].values())
    # 2: bad input
    assert _cli("explore", "--proposal", "nope").returncode == 2
    # compare reports broken invariants with exit 0
    assert _cli("compare", "--pages", "1", "--json").returncode == 0


def test_explore_json_names_the_knobs_that_are_on():
    r = _cli("explore", "--json", "--huge-folios", "--pages", "1")
    assert r.returncode in (0, 1), r.stderr
    out = json.loads(r.stdout)
    found = [d["knobs"] for d in (out, out.get("config", {})) if "knobs" in d]
    assert found and all(k == ["huge_folios"] for k in found), found


@pytest.mark.parametrize("engine", vocab.ENGINES)
def test_engine_option_reaches_the_explorer(engine):
    r = _cli("explore", "--engine", engine, "--proposal", "userspace-converts", "--pages", "1", "--json")
    assert r.returncode == 1, r.stderr
    assert _cli("compare", "--engine", engine, "--pages", "1").returncode == 0


# --- --variants ---------------------------------------------------------------------------------

def test_variants_are_loaded_before_the_proposal_is_checked(variants_file):
    # unknown without the file; known with it, wherever --variants stands
    r = _cli("explore", "--proposal", VARIANT, "--pages", "1")
    assert r.returncode == 2 and "unknown proposal" in r.stderr
    for args in (["--proposal", VARIANT, "--variants", variants_file],
                 ["--variants=" + variants_file, "--proposal", VARIANT]):
        r = _cli("explore", *args, "--pages", "1", "--json")
        assert r.returncode in (0, 1), r.stderr
        assert json.loads(r.stdout)["config"]["proposal"] == VARIANT
    r = _cli("explore", "--variants", variants_file, "--help")
    assert VARIANT in r.stdout   # the help lists it
    # compare: a column of its own, after the built-ins
    r = _cli("compare", "--variants", variants_file, "--platform", "tdx", "--pages", "1", "--json")
    assert r.returncode == 0, r.stderr
    table = json.loads(r.stdout)
    assert list(table["proposals"]) == list(vocab.PROPOSALS) + [VARIANT]
    assert "EBUSY" in table["proposals"][VARIANT]["error_channels"]["populate"]
    # sweep ("all" includes it) and emulate
    r = _cli("sweep", "--variants", variants_file, "--pages", "1", "--workers", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert VARIANT in [p["proposal"] for p in json.loads(r.stdout)["results"]]
    r = _cli("emulate", "tdx-launch", "--variants", variants_file, "--proposal", VARIANT, "--pages", "2")
    assert r.returncode == 0, r.stderr


def test_check_trace_takes_a_variant(variants_file, tmp_path):
    trace = tmp_path / "t.jsonl"
    assert _cli("emulate", "tdx-launch", "--pages", "2", "-o", str(trace)).returncode == 0
    r = _cli("check-trace", str(trace), "--variants", variants_file, "--proposal", VARIANT, "--json")
    assert r.returncode in (0, 1), r.stderr
    assert "conforms" in json.loads(r.stdout)


BROKEN = [
    ("from gmemlab import Proposal\n\nx = = 1\n", 3),                              # a syntax error
    (VARIANTS_FILE.replace('populate_busy_errno="EBUSY")', 'populate_busy_errnoo="EBUSY")'), 4),  # raises
    ("X = 1\n", 0),                                                                 # defines no proposal
]


@pytest.mark.parametrize("text,line", BROKEN)
def test_a_broken_variants_file_exits_2_naming_file_and_line(tmp_path, text, line):
    path = tmp_path / "broken.py"
    path.write_text(text)
    r = _cli("explore", "--variants", str(path))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith(f"{path}:{line}: ") and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("command", [["compare"], ["check-trace", "t.jsonl"], ["sweep"],
                                     ["emulate", "snp-launch"], ["report"]])
def test_every_command_that_takes_a_proposal_refuses_a_broken_variants_file(tmp_path, command):
    path = tmp_path / "broken.py"
    path.write_text(BROKEN[0][0])
    r = _cli(*command, "--variants", str(path))
    assert r.returncode == 2 and r.stderr.startswith(f"{path}:3: syntax error"), (r.returncode, r.stderr)


def test_a_missing_variants_file_exits_2():
    r = _cli("compare", "--variants", "no/such/variants.py")
    assert r.returncode == 2 and r.stderr.startswith("no/such/variants.py:0: no such variants file")


def test_sweep_workers_load_the_variants_file(variants_file):
    """A worker that did not inherit the registry (a spawned process, a Dask worker)
    loads the file the Point names."""
    code = ("from gmemlab.sweep import Point, run_point\n"
            f"r = run_point(Point({VARIANT!r}, 'tdx', 'v8', 1, (), ({variants_file!r},)))\n"
            "print(r['proposal'], r['states'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == VARIANT


def test_sweep_matrix_passes_variants_to_points(variant, variants_file):
    from gmemlab.sweep import matrix
    points = matrix(["private-first", VARIANT], ["snp"], ["v8"], [1], [()], variants=(variants_file,))
    assert {p.proposal: p.variants for p in points} == {"private-first": (), VARIANT: (variants_file,)}


# --- sources -------------------------------------------------------------------------------------

def test_sources_are_the_registry():
    assert set(sources.SERIES_SOURCES) == set(sources.SERIES_MEANING) == set(vocab.SERIES)
    assert dict(sources.PLATFORM_SOURCES) == dict(vocab.PLATFORM_SOURCES)
    assert set(sources.KNOB_SOURCES) == set(vocab.KNOBS)
    for k in vocab.KNOBS.values():   # every knob has a source: the KeyError of the issue
        assert k.source and k.source in sources.knob_source(k.name)
    cited = sources.config_sources("tdx", "v7", {k: True for k in vocab.KNOBS})
    assert [what for what, _ in cited][3:] == [f"knob {k}" for k in vocab.KNOBS]
    with pytest.raises(UsageError, match="unknown knob"):
        sources.config_sources("snp", "v8", {"nope": True})


# --- widgets -------------------------------------------------------------------------------------

@pytest.fixture
def panel():
    pytest.importorskip("ipywidgets")
    from gmemlab.render.widgets import compare_panel
    return compare_panel(platform="snp", series="v8", pages=1, engine="python")


def test_every_knob_is_a_widget_checkbox_named_like_its_flag(panel):
    assert list(panel.knobs) == list(vocab.KNOBS)
    for name, box in panel.knobs.items():
        k = vocab.KNOBS[name]
        assert box.description == k.label
        assert "--" + box.description.replace(" ", "-") == k.flag   # the same name as the CLI flag
        assert k.help in box.tooltip
    assert list(panel.focus.options) == list(vocab.proposal_names())
    assert list(panel.platform.options) == list(vocab.PLATFORMS)
    assert list(panel.series.options) == list(vocab.SERIES)
    assert panel.pages.max == vocab.WIDGET_MAX_PAGES


def _shows_a_result_or_an_error(p, what):
    status = p.status.value
    assert "exploring" not in status, (what, status)
    if "gml-error" in status:
        assert p.matrix.value == "" and p.error is not None, what
        return "error"
    assert 'class="gml-matrix"' in p.matrix.value, (what, status)
    assert f'data-focus="{p.focus.value}"' in p.matrix.value, what
    assert f'data-platform="{p.platform.value}"' in p.matrix.value, what
    assert f'data-pages="{p.pages.value}"' in p.matrix.value, what
    return "result"


def test_every_control_of_the_compare_panel(panel):
    """Each knob on and off, each dropdown value, pages 1..2: the panel always ends on a
    result or an error box, never on "exploring..."."""
    p = panel
    seen = []
    for name, box in p.knobs.items():
        box.value = True
        seen.append(_shows_a_result_or_an_error(p, f"{name} on"))
        assert p.data().get("knobs", {}).get(name) is True
        box.value = False
        seen.append(_shows_a_result_or_an_error(p, f"{name} off"))
    for box in p.knobs.values():   # every knob together
        box.value = True
    seen.append(_shows_a_result_or_an_error(p, "all knobs"))
    for box in p.knobs.values():
        box.value = False
    for control in (p.focus, p.against, p.platform, p.series):
        start = control.value
        for value in control.options:
            control.value = value
            seen.append(_shows_a_result_or_an_error(p, f"{control.description}={value}"))
        control.value = start
    for n in range(1, 3):
        p.pages.value = n
        seen.append(_shows_a_result_or_an_error(p, f"pages={n}"))
    assert set(seen) == {"result"}   # every control of the vocabulary works
    assert p.data()["matrix"] == views.matrix_data(views.comparison("snp", "v8", 2))


def test_an_error_is_shown_in_the_panel_not_swallowed(panel, monkeypatch):
    def broken(*a, **k):
        raise KeyError("huge_folios")
    monkeypatch.setattr(views, "comparison", broken)
    panel.knobs["huge_folios"].value = True
    assert "gml-error" in panel.status.value and "KeyError" in panel.status.value
    assert "huge_folios" in panel.status.value and "exploring" not in panel.status.value
    assert panel.data()["error"].startswith("KeyError")
    monkeypatch.undo()
    panel.knobs["huge_folios"].value = False   # recovers on the next change
    assert panel.status.value == "" and panel.error is None and "gml-matrix" in panel.matrix.value


def test_the_panel_offers_registered_variants(variant):
    pytest.importorskip("ipywidgets")
    from gmemlab.render.widgets import compare_panel
    p = compare_panel(platform="tdx", pages=1, focus=VARIANT, against="populate-converts", engine="python")
    assert VARIANT in p.focus.options and _shows_a_result_or_an_error(p, "variant") == "result"
    assert f'data-proposal="{VARIANT}"' in p.matrix.value


def test_knob_dict_checks_the_registry():
    assert views.knob_dict(["huge-folios", "allocation failures"]) == {"huge_folios": True,
                                                                     "allocation_failures": True}
    with pytest.raises(ValueError, match="known: " + ", ".join(vocab.KNOBS)):
        views.knob_dict({"huge_folio": True})


# --- the public API ------------------------------------------------------------------------------

def test_public_api():
    for name in gmemlab.__all__:
        assert getattr(gmemlab, name) is not None, name
    import importlib
    importlib.import_module("gmemlab.explore.compare")  # importing the subpackage keeps the function
    assert callable(gmemlab.explore)
    x = gmemlab.explore(proposal="userspace-converts", platform="snp", pages=1, huge_folios=True)
    assert x.config.knobs == ["huge_folios"] and not x.holds("te_private_implies_kvm_private")
    with pytest.raises(UsageError, match="unknown knob"):
        gmemlab.explore(pages=1, huge_folio=True)
    t = gmemlab.compare("snp", "v8", pages=1, proposals=["private-first"])
    assert [c.proposal for c in t.columns] == ["private-first"]


def test_public_api_variants(variants_file):
    try:
        loaded = gmemlab.load_variants(variants_file)
        assert [p.name for p in loaded] == [VARIANT] and VARIANT in vocab.proposal_names()
        t = gmemlab.compare("tdx", "v8", pages=1)
        assert [c.proposal for c in t.columns][-1] == VARIANT
    finally:
        vocab.unregister(VARIANT)
    with pytest.raises(InputError):
        gmemlab.load_variants(variants_file + ".missing")
