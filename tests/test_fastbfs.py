"""The batched explorer: its per-page memo of step() against step() itself on random
states, and whole explorations against the reference loop (they must be identical)."""

import math
import random
from collections import Counter

import numpy as np
import pytest

from gmemlab.errors import UsageError
from gmemlab.explore.bfs import Bounds, actions, explore
from gmemlab.explore.compare import calls_to_launch, error_channels
from gmemlab.explore.pagetable import PageTable, supported
from gmemlab.invariants import ALWAYS, SOMETIMES, Transition, launched_and_running
from gmemlab.model.state import Config
from gmemlab.model.step import step


def _table(cfg, bounds):
    trans = [(p, True) for p in ALWAYS if p.on_transition] + [(p, False) for p in SOMETIMES if p.on_transition]
    state_fns = [p.on_state for p in ALWAYS + SOMETIMES if p.on_state] + [launched_and_running]
    return PageTable(cfg, bounds.pages, bounds.max_pins, actions(cfg, bounds), trans, state_fns)


def _random_rows(rng, table, universe, ctxs, count):
    rows = [[table.intern_page(rng.choice(universe)) for _ in range(table.n)] for _ in range(count)]
    cids = [table.intern_ctx(rng.choice(ctxs)) for _ in range(count)]
    return np.array(rows, np.int32), np.array(cids, np.int32)


MEMO_CASES = [
    ("private-first", "snp", "v8", 2, {}),
    ("populate-converts", "tdx", "v7", 3, {}),
    ("userspace-converts", "snp", "v5", 2, {"processes": ("vmm", "child")}),
    ("userspace-converts", "sw_protected", "v5", 3, {}),
    ("populate-converts", "snp", "v8", 2, {"no_direct_map": True}),
    ("userspace-converts", "tdx", "v8", 2, {"max_pins": 2}),
]


@pytest.mark.parametrize("proposal,platform,series,pages,extra", MEMO_CASES)
def test_memoized_step_matches_step_on_random_states(proposal, platform, series, pages, extra):
    """Every action through the table (single page, whole file, VM-wide) gives what
    step() gives on arbitrary states -- reachable or not -- whose pages the table has
    already met in other states: post state, outcome, effects, pin bound and the
    transition properties."""
    cfg = Config(proposal=proposal, platform=platform, series=series,
                 no_direct_map_series=extra.get("no_direct_map", False))
    bounds = Bounds(pages=pages, **extra)
    sample = explore(cfg, Bounds(pages=1, **{k: v for k, v in extra.items()}), engine="reference")
    universe = sorted({p for s in sample.states for p in s.pages})
    ctxs = sorted({s._replace(pages=()) for s in sample.states}, key=repr)
    ctxs += [c._replace(finalized=not c.finalized) for c in ctxs]
    rng = random.Random(f"{proposal}/{platform}/{series}/{pages}")
    table = _table(cfg, bounds)
    trans = table.trans_props
    for batch in range(2):   # the first batch fills the memo, the second mostly looks up
        rows, cids = _random_rows(rng, table, universe, ctxs, 150)
        for a, ev in enumerate(table.events[:table.nactions]):
            succ = table.successors(a, rows, cids)
            post_rows, post_cids = succ.rows(np.ones(len(rows), bool))
            oids, effs = succ.outcomes()
            for f in range(len(rows)):
                pre = table.state(int(cids[f]), rows[f].tolist())
                post, out, eff = step(cfg, pre, ev)
                assert table.state(int(post_cids[f]), post_rows[f].tolist()) == post, (ev, pre)
                assert table.outcomes[oids[f]] == out, (ev, pre)
                assert table.effects_of(int(effs[f])) == eff, (ev, pre)
                assert bool(succ.same[f]) == (post == pre)
                in_bound = all(p.pins <= bounds.max_pins for p in post.pages)
                assert (True if succ.valid is None else bool(succ.valid[f])) == in_bound
                t = Transition(pre, ev, out, post, eff)
                bits = sum(1 << k for k, (p, always) in enumerate(trans) if p.on_transition(cfg, t) != always)
                assert (0 if succ.tbits is None else int(succ.tbits[f])) == bits, (ev, pre)


@pytest.mark.parametrize("proposal,platform,series,pages,extra", MEMO_CASES[:3])
def test_state_properties_per_page(proposal, platform, series, pages, extra):
    """A state property holds exactly when it holds on the VM-wide fields alone and on
    each page alone (always-properties and the goal); a sometimes-property that holds
    holds on some page alone: what the batched engine's pre-filter relies on."""
    cfg = Config(proposal=proposal, platform=platform, series=series)
    x = explore(cfg, Bounds(pages=pages, **extra))
    table = x.pagetable
    rows, cids = x.states._rows, x.states._cids
    sv, sp = table.page_bits(rows, cids)
    every = sv & np.bitwise_and.reduce(sp, axis=1)
    some = np.bitwise_or.reduce(sp, axis=1)
    step_ = max(1, len(rows) // 400)
    for i in range(0, len(rows), step_):
        s = x.states[i]
        for k, fn in enumerate(table.state_props):
            holds = bool(fn(cfg, s))
            if k < len([p for p in ALWAYS if p.on_state]) or k == len(table.state_props) - 1:
                assert holds == bool(every[i] >> k & 1), (k, s)
            elif holds:
                assert some[i] >> k & 1, (k, s)


def _same(a, b):
    assert len(a.states) == len(b.states)
    assert list(a.states) == list(b.states)
    assert list(a.parent) == list(b.parent)
    assert a.depth == b.depth and a.src == b.src and a.dst == b.dst and a.act == b.act
    assert {k: (d.state, d.action) for k, d in a.violations.items()} == \
           {k: (d.state, d.action) for k, d in b.violations.items()}
    assert {k: (d.state, d.action) for k, d in a.witnesses.items()} == \
           {k: (d.state, d.action) for k, d in b.witnesses.items()}
    assert a.stuck == b.stuck


PROPOSALS = ("private-first", "populate-converts", "userspace-converts")
ENGINE_CASES = [(p, pl, s, 1, True, {}, {}) for p in PROPOSALS
                for pl, s in (("snp", "v8"), ("tdx", "v5"), ("sw_protected", "v5"))]
ENGINE_CASES += [(p, "sw_protected", "v5", 2, False, {}, {}) for p in PROPOSALS]
ENGINE_CASES += [
    ("userspace-converts", "snp", "v8", 2, True, {}, {}),
    ("private-first", "tdx", "v7", 2, False, {}, {}),
    ("populate-converts", "snp", "v8", 2, True, {"convert_after_populate": True}, {}),
    ("private-first", "snp", "v7", 1, True, {"refuse_unprepared_populate": True}, {}),
    ("userspace-converts", "sw_protected", "v5", 2, True, {}, {"processes": ("vmm", "child"), "max_pins": 2}),
    ("userspace-converts", "snp", "v8", 1, True, {}, {"no_direct_map": True}),
]


@pytest.mark.parametrize("proposal,platform,series,pages,symmetry,knobs,extra", ENGINE_CASES)
def test_batched_engine_equals_reference(proposal, platform, series, pages, symmetry, knobs, extra):
    cfg = Config(proposal=proposal, platform=platform, series=series, **knobs)
    b = Bounds(pages=pages, **extra)
    fast = explore(cfg, b, symmetry=symmetry, engine="batched")
    ref = explore(cfg, b, symmetry=symmetry, engine="reference")
    assert fast.engine == "batched" and ref.engine == "reference"
    _same(fast, ref)
    assert fast.action_outcomes() == ref.action_outcomes()
    assert error_channels(fast) == error_channels(ref)
    assert calls_to_launch(fast) == calls_to_launch(ref)
    assert fast.to_json() == ref.to_json()


def test_engine_choice():
    assert explore(Config(), Bounds(pages=2)).engine == "batched"
    assert explore(Config(), Bounds(pages=1)).engine == "reference"      # too small to pay off
    assert explore(Config(), Bounds(pages=2, ranges="all")).engine == "reference"
    huge = Config(huge_folios=True)
    assert not supported(huge)
    assert explore(huge, Bounds(pages=2)).engine == "reference"
    with pytest.raises(UsageError, match="does not apply"):
        explore(huge, Bounds(pages=1), engine="batched")
    with pytest.raises(UsageError, match="unknown engine"):
        explore(Config(), Bounds(pages=1), engine="fast")


@pytest.mark.parametrize("proposal", ["private-first", "userspace-converts"])
def test_orbits_count_the_states_without_symmetry(proposal):
    """Without symmetry the explorer finds exactly the permutations of the states it
    finds with it (n! / product of the multiplicities' factorials per state): how the
    benchmark counts 4 pages without symmetry."""
    cfg = Config(proposal=proposal, platform="snp")
    on = explore(cfg, Bounds(pages=2))
    off = explore(cfg, Bounds(pages=2), symmetry=False)
    total = 0
    for s in on.states:
        orbit = math.factorial(len(s.pages))
        for m in Counter(s.pages).values():
            orbit //= math.factorial(m)
        total += orbit
    assert total == len(off.states)
