"""The explorer: manifest of expected results, symmetry soundness, replayable
counterexamples, witnesses, graph views and the explore/compare commands."""

import functools
import json
import os
import subprocess
import sys

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.explore.compare import compare
from gmemlab.explore.graph import difference, full_graph, quotient
from gmemlab.explore.manifest import PATH, grid, key
from gmemlab.invariants import ALWAYS, INVARIANT_NAMES
from gmemlab.model.state import Config
from gmemlab.traces.format import dumps, loads
from gmemlab.traces.replay import config_for, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = json.load(open(os.path.join(ROOT, PATH)))
GRID = list(grid())


@functools.lru_cache(maxsize=None)
def explored(proposal, platform, series, pages, knobs=(), symmetry=True, ranges="page+file"):
    return explore(Config(proposal=proposal, platform=platform, series=series, **dict(knobs)),
                   Bounds(pages=pages, ranges=ranges), symmetry=symmetry)


def _explored(g):
    proposal, platform, series, pages, knobs = g
    return explored(proposal, platform, series, pages, tuple(sorted(knobs.items())))


def test_manifest_lists_the_whole_grid():
    assert sorted(MANIFEST) == sorted(key(*g) for g in GRID)


@pytest.mark.parametrize("g", GRID, ids=[key(*g) for g in GRID])
def test_manifest_entry(g):
    x = _explored(g)
    got = {"states": len(x.states), "transitions": x.transitions,
           "broken": [n for n in INVARIANT_NAMES if not x.holds(n)]}
    assert got == MANIFEST[key(*g)]


@pytest.mark.parametrize("g", [g for g in GRID if g[3] == 2], ids=[key(*g) for g in GRID if g[3] == 2])
def test_counterexamples_replay_to_the_same_violation(g):
    x = _explored(g)
    header = {"format": "gmemlab-trace/1", "platform": x.config.platform, "series": x.config.series}
    for name in INVARIANT_NAMES:
        cx = x.counterexample(name)
        if cx is None or name == "no_stuck_state":
            continue
        assert cx[0]["op"] == "create_gmem"
        h, events = loads(dumps(header, cx), "cx.jsonl")
        knobs = {k: getattr(x.config, k) for k in ("refuse_unprepared_populate", "convert_after_populate")}
        report = replay(config_for(h, x.config.proposal, **knobs), events)
        assert report.conforms, (name, report.divergence)
        assert {"invariant": name, "line": len(events) + 1} in report.violations, (name, report.violations)


@pytest.mark.parametrize("proposal", ["private-first", "populate-converts", "userspace-converts"])
@pytest.mark.parametrize("platform,series", [("snp", "v7"), ("snp", "v8"), ("tdx", "v8"), ("sw_protected", "v5")])
def test_symmetry_gives_the_same_verdicts(proposal, platform, series):
    on = explored(proposal, platform, series, 2)
    off = explored(proposal, platform, series, 2, symmetry=False)
    if platform in ("snp", "tdx"):
        # The whole-range populate is order-dependent: Spec keeps symmetry off
        # (gmemlab.spec, "Symmetry"; tests/test_spec_symmetry.py).
        assert not on.symmetry and len(on.states) == len(off.states)
    else:
        assert on.symmetry and len(on.states) < len(off.states)
    for name in INVARIANT_NAMES:
        assert on.holds(name) == off.holds(name), name
        a, b = on.counterexample(name), off.counterexample(name)
        assert (a is None) == (b is None) and (a is None or len(a) == len(b)), name
    assert set(on.witnesses) == set(off.witnesses)


def test_every_sometimes_pair_is_reachable_on_te_platforms():
    for proposal in ("private-first", "userspace-converts"):
        x = explored(proposal, "tdx", "v8", 2)
        for p in ALWAYS:
            if p.name != "direct_map_absent_for_private":
                assert p.pair in x.witnesses, (proposal, p.pair)


def test_no_direct_map_pair_and_violation():
    x = explore(Config(proposal="userspace-converts", platform="snp"), Bounds(pages=1, no_direct_map=True))
    assert "no_direct_map_private_page" in x.witnesses
    assert not x.holds("direct_map_absent_for_private")
    y = explore(Config(proposal="private-first", platform="snp"), Bounds(pages=1, no_direct_map=True))
    assert y.holds("direct_map_absent_for_private") and "no_direct_map_private_page" in y.witnesses


def test_all_ranges_explores_partial_populate():
    x = explored("private-first", "snp", "v8", 2, ranges="all")
    assert not x.symmetry
    t = compare("snp", "v8", Bounds(pages=2, ranges="all"), proposals=("private-first",), symmetry=False)
    assert "0+done (partial)" in t.columns[0].errors["populate"]
    assert x.holds("failed_call_changes_nothing")


def test_compare_matrix_and_launch_paths():
    t = compare("snp", "v8", Bounds(pages=2))
    j = t.to_json()["proposals"]
    assert j["userspace-converts"]["invariants"]["te_private_implies_kvm_private"]["holds"] is False
    assert j["private-first"]["invariants"]["te_private_implies_kvm_private"]["holds"] is True
    assert j["populate-converts"]["calls_to_launch"] < j["private-first"]["calls_to_launch"]
    for c in t.columns:
        ops = [e["op"] for e in c.launch_path]
        # One populate over the whole image, as VMMs call it (the default action set).
        assert ops[0] == "create_gmem" and ops[-1] == "finalize" and ops.count("populate") == 1
        assert [e["size"] for e in c.launch_path if e["op"] == "populate"] == [2 * 4096]
        assert all("src" not in e or e["src"] is None for e in c.launch_path)


def test_graph_views():
    x = explored("userspace-converts", "snp", "v8", 1)
    g = full_graph(x)
    assert g.number_of_nodes() == len(x.states)
    assert any(d["invariants"] for _, d in g.nodes(data=True))
    q = quotient(x)
    assert sum(d["count"] for _, d in q.nodes(data=True)) == len(x.states)
    assert q.number_of_nodes() < len(x.states)
    d = difference(explored("private-first", "snp", "v8", 1), x)
    sides = {data["side"] for _, data in d.nodes(data=True)}
    assert "b" in sides and "both" in sides  # TE-private while shared exists only under userspace-converts


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], capture_output=True, text=True, cwd=ROOT)


def test_explore_cli_json_counterexample_replays_through_check_trace(tmp_path):
    r = _cli("explore", "--proposal", "userspace-converts", "--platform", "tdx", "--pages", "1", "--json")
    assert r.returncode == 1, r.stderr  # an invariant breaks: exit 1, the counterexample on stdout
    out = json.loads(r.stdout)
    assert set(out) >= {"states", "transitions", "invariants"}
    cx = out["invariants"]["host_never_touches_te_private"]["counterexample"]
    assert out["invariants"]["private_not_pinned"] == {"holds": True, "counterexample": None}
    path = tmp_path / "cx.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [{"format": "gmemlab-trace/1", "platform": "tdx"}] + cx) + "\n")
    r = _cli("check-trace", str(path), "--proposal", "userspace-converts", "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and rep["conforms"] is True
    assert {"invariant": "host_never_touches_te_private", "line": len(cx) + 1} in rep["violations"]


def test_compare_cli_text_fits_an_email():
    r = _cli("compare", "--platform", "snp", "--pages", "1")
    assert r.returncode == 0
    assert all(len(line) <= 72 for line in r.stdout.splitlines())
    assert "te_private_implies_kvm_private" in r.stdout and "BROKEN" in r.stdout


@pytest.mark.parametrize("args", [["explore", "--pages", "0"], ["explore", "--proposal", "nope"],
                                  ["compare", "--series", "v9"]])
def test_explore_misuse_is_exit_2(args):
    r = _cli(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr


@pytest.mark.slow
def test_three_pages_snp():
    for proposal in ("private-first", "userspace-converts"):
        x = explored(proposal, "snp", "v8", 3)
        assert x.holds("private_not_pinned")


def test_huge_folio_metric_follows_the_seed():
    # Michael Roth, "Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for
    # KVM_SET_MEMORY_ATTRIBUTES2" (2026-04-07): prep'ing while shared splits the huge
    # page; private-first can keep it.
    # With the whole-range populate, populate-converts (convert first) converts and
    # populates the whole folio in one call and keeps it; taking each page while still
    # shared (convert_after_populate, the order read literally from the seed) splits it.
    t = compare("snp", "v8", Bounds(pages=2), knobs={"huge_folios": True})
    kept = {c.proposal: c.to_json()["huge_folio_kept"] for c in t.columns}
    assert kept == {"private-first": True, "populate-converts": True, "userspace-converts": False}
    t = compare("snp", "v8", Bounds(pages=2), proposals=("populate-converts",),
                knobs={"huge_folios": True, "convert_after_populate": True})
    assert t.columns[0].to_json()["huge_folio_kept"] is False
    assert compare("snp", "v8", Bounds(pages=1), proposals=("private-first",)).columns[0].to_json()["huge_folio_kept"] is None


def test_compare_is_the_same_on_both_engines():
    # numpy is a core dependency (the fast engine is the product); the reference engine
    # answers the same through step() alone.
    ref = compare("snp", "v8", Bounds(pages=2), engine="reference")
    fast = compare("snp", "v8", Bounds(pages=2), engine="fast")
    assert {c.exploration.engine for c in ref.columns} == {"reference"}
    strip = lambda t: [{k: v for k, v in c.to_json().items() if k != "seconds"} for c in t.columns]
    assert strip(ref) == strip(fast)


def test_allocation_failures_knob_shows_enomem_channels():
    t = compare("tdx", "v8", Bounds(pages=1), knobs={"allocation_failures": True})
    errors = {c.proposal: c.errors for c in t.columns}
    assert "ENOMEM@offset" in errors["private-first"]["set_attributes"]
    assert "ENOMEM" in errors["populate-converts"]["populate"]  # no offset: the ioctl has no field
    assert "ENOMEM" not in errors["private-first"]["populate"]
    for c in t.columns:
        x = c.exploration
        assert x.holds("failed_call_changes_nothing")
