"""One model, one checker: every engine follows the model, and a change of a rule reaches
every engine.

The fast engine derives its answers from the model (step() per page value, the plans'
phases); the reference engine calls step() on every transition; one driver does the
bookkeeping for both. So their explorations must be the same, byte for byte, and a
rule changed in the model (through a designer's variant, or a patched model function)
must change both alike.
"""

from __future__ import annotations

import json

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.explore.manifest import key
from gmemlab.invariants import INVARIANT_NAMES
from gmemlab.model import step as M
from gmemlab.model import vocab
from gmemlab.model.proposals import PRIVATE_FIRST, Proposal
from gmemlab.model.state import Config
from gmemlab.model.vocab import KNOBS, PLATFORMS, PROPOSALS, SERIES

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ALL_KNOBS = {k: True for k in KNOBS}
KNOB_SETS = [{}] + [{k: True} for k in KNOBS] + [ALL_KNOBS]


def _json(cfg: Config, pages: int, engine: str) -> str:
    return json.dumps(explore(cfg, Bounds(pages=pages), engine=engine).to_json())


def _same(cfg: Config, pages: int) -> None:
    fast, ref = _json(cfg, pages, "fast"), _json(cfg, pages, "reference")
    assert fast == ref, (cfg, pages)


@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("series", SERIES)
def test_engines_agree_at_one_page_with_every_knob(proposal, platform, series):
    for knobs in KNOB_SETS:
        _same(Config(proposal=proposal, platform=platform, series=series, **knobs), 1)


@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("series", SERIES)
def test_engines_agree_at_two_pages(proposal, platform, series):
    _same(Config(proposal=proposal, platform=platform, series=series), 2)


@pytest.mark.parametrize("knobs", KNOB_SETS[1:], ids=lambda k: "+".join(k))
@pytest.mark.parametrize("proposal", PROPOSALS)
def test_engines_agree_at_two_pages_with_knobs(proposal, knobs):
    _same(Config(proposal=proposal, platform="snp", series="v8", **knobs), 2)


@pytest.mark.slow
@pytest.mark.parametrize("knobs", KNOB_SETS, ids=lambda k: "+".join(k) or "none")
def test_engines_agree_everywhere_at_two_pages(knobs):
    for proposal in PROPOSALS:
        for platform in PLATFORMS:
            for series in SERIES:
                _same(Config(proposal=proposal, platform=platform, series=series, **knobs), 2)


def test_the_cli_prints_the_same_json_for_both_engines(tmp_path):
    from gmemlab.cli import main
    outs = []
    for engine in ("reference", "fast"):
        out = tmp_path / f"{engine}.json"
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            main(["explore", "--proposal", "userspace-converts", "--platform", "tdx", "--pages", "2",
                  "--engine", engine, "--json"])
        out.write_text(buf.getvalue())
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and b'"states"' in outs[0]


# --- a change of a rule reaches every engine ------------------------------------------------

def _check_first(plan_fn):
    """set_attributes with the refcount check moved ahead of the unmap: the change a
    maintainer tries first (a failed conversion then leaves the host mappings alone)."""
    def patched(cfg, s, ev):
        plan = plan_fn(cfg, s, ev)
        if isinstance(plan, M.Result):
            return plan
        phases = list(plan.phases)
        unmap = next((i for i, p in enumerate(phases) if isinstance(p, M.Each) and p.update is M._unmap), None)
        busy = next((i for i, p in enumerate(phases) if isinstance(p, M.Stop) and p.check is M._busy), None)
        if unmap is not None and busy is not None:
            phases[unmap], phases[busy] = phases[busy], phases[unmap]
        return plan._replace(phases=tuple(phases))
    return patched


# The manifest entries the change touches: every proposal and platform at 1 and 2 pages
# (set_attributes is in every action set), series v8.
TOUCHED = [(p, pl, "v8", n) for p in PROPOSALS for pl in PLATFORMS for n in (1, 2)]


def _numbers(x) -> dict:
    return {"states": len(x.states), "transitions": x.transitions,
            "broken": [n for n in INVARIANT_NAMES if not x.holds(n)],
            "lengths": {n: len(x.counterexample(n)) for n in INVARIANT_NAMES if not x.holds(n)}}


def _explore_all(cfg_of, engine):
    return {t: _numbers(explore(cfg_of(*t[:3]), Bounds(pages=t[3]), engine=engine)) for t in TOUCHED}


def test_a_patched_model_function_reaches_every_engine(monkeypatch):
    manifest = json.loads((ROOT / "data/manifest/explore.json").read_text())
    before = _explore_all(lambda p, pl, s: Config(proposal=p, platform=pl, series=s), "fast")
    for t, got in before.items():
        want = manifest[key(*t, {})]
        assert (got["states"], got["transitions"], got["broken"]) == \
               (want["states"], want["transitions"], want["broken"]), t
    monkeypatch.setattr(M, "set_attributes_plan", _check_first(M.set_attributes_plan))
    cfg_of = lambda p, pl, s: Config(proposal=p, platform=pl, series=s)
    fast, ref = _explore_all(cfg_of, "fast"), _explore_all(cfg_of, "reference")
    assert fast == ref
    changed = [t for t in TOUCHED if fast[t] != before[t]]
    assert ("private-first", "snp", "v8", 2) in changed
    assert fast["private-first", "snp", "v8", 2]["states"] < before["private-first", "snp", "v8", 2]["states"]


def test_a_rule_replaced_in_ops_reaches_every_engine(monkeypatch):
    # A rule patched into step.OPS has no plan the fast engine knows: it must fall back to
    # calling it, and find what the reference engine finds.
    patched = _check_first(M.set_attributes_plan)

    def set_attributes(cfg, s, ev):
        plan = patched(cfg, s, ev)
        return plan if isinstance(plan, M.Result) else M.run_plan(cfg, s, plan)
    monkeypatch.setitem(M.OPS, "set_attributes", set_attributes)
    cfg = Config(proposal="private-first", platform="snp")
    fast = _numbers(explore(cfg, Bounds(pages=2), engine="fast"))
    ref = _numbers(explore(cfg, Bounds(pages=2), engine="reference"))
    assert fast == ref
    monkeypatch.undo()
    monkeypatch.setattr(M, "set_attributes_plan", patched)
    assert _numbers(explore(cfg, Bounds(pages=2), engine="fast")) == fast


def test_a_variant_reaches_every_engine():
    patched = _check_first(M.set_attributes_plan)

    def set_attributes(cfg, s, ev):
        plan = patched(cfg, s, ev)
        return plan if isinstance(plan, M.Result) else M.run_plan(cfg, s, plan)
    v = vocab.register(Proposal.derive(PRIVATE_FIRST, name="check-before-unmap",
                                       claim="the refcount check runs before the unmap",
                                       source="a test", ops={"set_attributes": set_attributes}))
    ebusy = vocab.register(Proposal.derive(
        vocab.proposal("populate-converts"), name="populate-converts-ebusy",
        claim="populate converts, refuses a pinned page with EBUSY", source="a test",
        populate_busy_errno="EBUSY"))
    try:
        for name, platform, pages in ((v.name, "snp", 2), (v.name, "tdx", 1), (ebusy.name, "snp", 2)):
            cfg = Config(proposal=name, platform=platform)
            fast, ref = _json(cfg, pages, "fast"), _json(cfg, pages, "reference")
            assert fast == ref
        base = explore(Config(proposal="populate-converts", platform="snp"), Bounds(pages=2))
        var = explore(Config(proposal=ebusy.name, platform="snp"), Bounds(pages=2))
        outs = {o.get("ret") for a, o in var.action_outcomes(ops=("populate",))}
        assert "EBUSY" not in {o.get("ret") for a, o in base.action_outcomes(ops=("populate",))}
        assert (len(var.states), var.transitions) == (len(base.states), base.transitions)
        assert "EIO" in outs   # SNP: a first page that fails is EIO whatever the cause
        tdx = explore(Config(proposal=ebusy.name, platform="tdx"), Bounds(pages=1))
        assert "EBUSY" in {o.get("ret") for a, o in tdx.action_outcomes(ops=("populate",))}
    finally:
        vocab.unregister(v.name)
        vocab.unregister(ebusy.name)


def test_plans_are_what_step_runs():
    # The fast engine composes a plan's phases; step() runs them with run_plan. On every
    # state of an exploration, the plan run by hand is step()'s answer.
    cfg = Config(proposal="userspace-converts", platform="snp", series="v5")
    x = explore(cfg, Bounds(pages=2))
    acts = [ev for ev in x.actions if ev["op"] in M.PLANS]
    for s in list(x.states)[::17]:
        for ev in acts:
            plan = M.plan_of(cfg, ev["op"])(cfg, s, ev)
            got = plan if isinstance(plan, M.Result) else M.run_plan(cfg, s, plan)
            assert got == M.step(cfg, s, ev)
