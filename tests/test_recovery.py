"""vmm_recovers (the reference VMM over the product with the model) and error
information (what each failing call tells its caller)."""

import dataclasses
import json

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.explore import recovery as R
from gmemlab.explore.compare import compare
from gmemlab.model import vmm as V
from gmemlab.model.state import Config
from gmemlab.model.step import cause, step
from gmemlab.render.reply import conclusion
from gmemlab.render.text import compare_text, matrix_rows
from gmemlab.traces.walk import walk

PROPOSALS = ("private-first", "populate-converts", "userspace-converts")


@pytest.mark.parametrize("pages", [1, 2])
@pytest.mark.parametrize("platform", ["snp", "tdx", "sw_protected"])
@pytest.mark.parametrize("knobs", [{}, {"allocation_failures": True}])
def test_verdicts(platform, pages, knobs):
    got = {p: R.vmm_recovers(Config(proposal=p, platform=platform, **knobs), Bounds(pages=pages))
           for p in PROPOSALS}
    # SNP turns every error of kvm_gmem_populate on the first page into EIO: the VMM
    # cannot tell a busy page (retry) from a bad request (stop). TDX returns the errno.
    broken = {"populate-converts"} if platform == "snp" else set()
    assert {p for p, r in got.items() if not r.holds} == broken
    for p in broken:
        assert got[p].gives_up_on == "populate EIO"


@pytest.mark.parametrize("pages", [1, 2, 3])
def test_counterexample_is_what_the_vmm_would_do_and_replays(pages):
    cfg = Config(proposal="populate-converts", platform="snp")
    r = R.vmm_recovers(cfg, Bounds(pages=pages))
    assert not r.holds and r.steps
    # the model agrees with every outcome on the way
    assert not any(st.diverged for st in walk(cfg, [ev for _, ev in r.steps]))
    # the VMM's calls are exactly its policy's, given what it saw
    v, p = V.Vmm(), V.policy_for(cfg)
    for who, ev in r.steps:
        if who != R.VMM:
            continue
        want = V.next_call(p, cfg, pages, ord("A"), v)
        assert {k: ev[k] for k in want if k != "expect"} == dict(want)
        v = V.observe(p, cfg, pages, v, ev, ev["expect"])
    assert v.gave_up == "populate EIO"
    # shortest: nothing shorter than create, the image, a reference and the populate
    assert len(r.steps) == 1 + pages + 1 + 1


def test_a_policy_change_reaches_the_verdict(monkeypatch):
    """The verdict follows the policy's data: a VMM that also retries EIO recovers under
    populate-converts on snp at 2 pages (EIO only ever stands for a transient cause in
    its own run); one that does not retry EAGAIN gives up under private-first."""
    cfg_pc = Config(proposal="populate-converts", platform="snp")
    cfg_pf = Config(proposal="private-first", platform="snp")
    pol = dict(V.POLICIES)
    pol["populate-converts"] = dataclasses.replace(pol["populate-converts"],
                                                   retry=frozenset(V.RECOVERY) | {"EIO"})
    pol["private-first"] = dataclasses.replace(pol["private-first"], retry=frozenset({"ENOMEM", "EINTR"}))
    monkeypatch.setattr(V, "POLICIES", pol)
    assert R.vmm_recovers(cfg_pc, Bounds(pages=2)).holds
    r = R.vmm_recovers(cfg_pf, Bounds(pages=2))
    assert not r.holds and r.gives_up_on == "set_attributes EAGAIN"
    assert [who for who, _ in r.steps].count(R.OTHER) == 1


def test_error_information_shows_the_pairs():
    def info(p, platform, **k):
        return R.error_information(explore(Config(proposal=p, platform=platform, **k), Bounds(pages=2)))
    snp_pc = info("populate-converts", "snp")
    # EIO: a busy page (retry), a page not shared (stop), or the firmware refusing a
    # LAUNCH_UPDATE after LAUNCH_FINISH (stop): snp_launch_update says EIO for each
    assert R.guessing(snp_pc) == ["populate 0+done (partial): EAGAIN or EINVAL",
                                  "populate EIO: EAGAIN or EINVAL or EIO"]
    assert R.guessing(info("populate-converts", "snp", allocation_failures=True))[-1] == \
        "populate EIO: EAGAIN or EINVAL or EIO or ENOMEM"
    tdx_pc = info("populate-converts", "tdx")
    assert R.guessing(tdx_pc) == []
    assert any(r["outcome"] == "EAGAIN+done" for r in tdx_pc["populate"])   # TDX: the errno, and how far
    for p in ("private-first", "userspace-converts"):
        assert R.guessing(info(p, "snp")) == []
    # set_attributes always says where: EAGAIN with error_offset
    assert [r["outcome"] for r in snp_pc["set_attributes"]] == ["EAGAIN@offset"]


def test_cause_is_the_errno_except_inside_populate():
    cfg = Config(proposal="populate-converts", platform="snp")
    x = explore(cfg, Bounds(pages=1))
    differ = set()
    for s in x.states:
        for ev in x.actions:
            out = step(cfg, s, ev).outcome
            c = cause(cfg, s, ev)
            failed = out.get("ret", 0) != 0 or "signal" in out or "exception" in out
            if ev["op"] != "populate":
                assert c == (out.get("ret") or out.get("signal") or out.get("exception") if failed else None)
            elif c != out.get("ret"):
                differ.add((out.get("ret"), c))
    assert ("EIO", "EAGAIN") in differ


def test_the_matrix_and_the_reply_show_it():
    t = compare("snp", "v8", Bounds(pages=2))
    rows = dict(matrix_rows(t))
    assert rows["vmm_recovers"] == ["holds", "BROKEN 5", "holds"]
    assert rows[" ".join(["failures", "it", "cannot", "attribute"])] == ["none", "2", "none"]
    text = compare_text(t)
    assert "gives up on populate EIO" in text and all(len(line) <= 72 for line in text.splitlines())
    words = " ".join(conclusion(t).split())
    assert "not under populate-converts" in words and "stands for EAGAIN or EINVAL" in words
    j = t.columns[1].to_json()
    assert j["vmm_recovers"]["counterexample"][3]["actor"] == "other"
    json.dumps(j["vmm_recovers"])   # serializable
    tdx = " ".join(conclusion(compare("tdx", "v8", Bounds(pages=2))).split())
    assert "Every proposal's reference VMM" in tdx


def test_a_variant_changes_the_recovery_row():
    """A designer's variant of populate-converts that gives the platform ioctl an errno
    per page (as TDX does) on snp: its VMM recovers, and the row says so."""
    from gmemlab.model import platforms
    from gmemlab.model.proposals import POPULATE_CONVERTS, Proposal
    from gmemlab.model.vocab import register, unregister
    v = Proposal.derive(POPULATE_CONVERTS, name="populate-converts-errno", claim="c", source="s")
    register(v)
    try:
        t = compare("snp", "v8", Bounds(pages=1), proposals=("populate-converts", "populate-converts-errno"))
        assert dict(matrix_rows(t))["vmm_recovers"][0].startswith("BROKEN")
        # the same rules: the same verdict (a variant is judged by its base's VMM)
        assert dict(matrix_rows(t))["vmm_recovers"][1].startswith("BROKEN")
    finally:
        unregister(v.name)
    assert platforms.PLATFORMS["snp"].populate_ret("EAGAIN", 0) == "EIO"
