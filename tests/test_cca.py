"""Platform cca (Arm CCA Realms, Steven Price's KVM CCA series v15 on the in-place
conversion series v8): KVM_ARM_RMI_POPULATE requires a source, reports partial progress
by advancing its argument, and a CCA VMM launches by the copy-aside flow. Every rule
checked here lives once, in gmemlab/model/platforms.py (Cca) and step.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.explore.recovery import vmm_recovers
from gmemlab.invariants import launch_complete
from gmemlab.model.platforms import PLATFORMS
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import step
from gmemlab.model.vocab import PROPOSALS
from gmemlab.spec import Bounds as SpecBounds

from helpers import run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PS = 4096
A = ord("A")


def _run(cfg, events, s=None):
    return run(cfg, *events, state=s or VmState())


def _loaded(cfg, pages=2, shared=True):
    flags = ("MMAP", "INIT_SHARED") if shared else ("MMAP",)
    evs = [{"op": "create_gmem", "size": pages * PS, "flags": flags}]
    if shared:
        evs += [{"op": "host_write", "offset": i * PS, "value": A} for i in range(pages)]
    return _run(cfg, evs)[0]


def test_cca_is_registered_everywhere():
    from gmemlab.model import vocab
    assert "cca" in vocab.PLATFORMS
    assert "KVM_ARM_RMI_POPULATE" in vocab.PLATFORM_SOURCES["cca"]
    assert PLATFORMS["cca"].populate_requires_source
    assert not any(PLATFORMS[p].populate_requires_source for p in PLATFORMS if p != "cca")


def test_populate_without_source_is_refused_before_anything():
    """kvm_arm_rmi_populate: source_uaddr == 0 is EINVAL with the argument checks, so
    nothing is delegated, converted or measured (and no in-place populate exists)."""
    cfg = Config(proposal="private-first", platform="cca")
    s = _loaded(cfg)
    s, _ = _run(cfg, [{"op": "set_attributes", "offset": 0, "size": 2 * PS, "attributes": "private", "flags": ()}], s)
    r = step(cfg, s, {"op": "populate", "offset": 0, "size": 2 * PS, "src": None})
    assert r.outcome == {"ret": "EINVAL", "done": 0}
    assert r.state == s
    # on snp and tdx the same call is populate in place and succeeds
    for other in ("snp", "tdx"):
        c = Config(proposal="private-first", platform=other)
        t = _run(c, [{"op": "set_attributes", "offset": 0, "size": 2 * PS, "attributes": "private", "flags": ()}],
                 _loaded(c))[0]
        assert step(c, t, {"op": "populate", "offset": 0, "size": 2 * PS, "src": None}).outcome["ret"] == 0


def test_populate_with_source_and_partial_progress():
    """Second page already delegated (populated): kvm_gmem_populate stops there; the
    first page done means kvm_arm_rmi_populate returns 0 with the range advanced (done
    1), and a call that fails on its first page returns that page's errno (ENXIO from
    rmi_delegate_page), not SNP's EIO."""
    cfg = Config(proposal="private-first", platform="cca")
    s = _loaded(cfg, shared=False)
    pop = lambda off, n: {"op": "populate", "offset": off * PS, "size": n * PS, "src": "buffer", "value": A}
    s, outs = _run(cfg, [pop(1, 1), pop(0, 2), pop(1, 1)], s)
    assert outs == [{"ret": 0, "done": 1}, {"ret": 0, "done": 1}, {"ret": "ENXIO", "done": 0}]
    assert all(p.measured and p.content == A == p.loaded for p in s.pages)
    # on a shared destination kvm_gmem_populate is EINVAL (private-first), passed through
    t = _loaded(cfg)
    assert step(cfg, t, pop(0, 2)).outcome == {"ret": "EINVAL", "done": 0}


def test_activation_answers():
    """A Realm already activated: populate is EBUSY (realm_ensure_created), another
    activation is 0 (kvm_activate_realm)."""
    cfg = Config(proposal="private-first", platform="cca")
    s, outs = _run(cfg, [{"op": "finalize"}, {"op": "finalize"},
                         {"op": "populate", "offset": 0, "size": PS, "src": "buffer", "value": A}],
                   _loaded(cfg, shared=False))
    assert outs == [{"ret": 0}, {"ret": 0}, {"ret": "EBUSY", "done": 0}]


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_copy_aside_flow_launches(proposal):
    """create shared, load, (keep a copy), convert, populate from the copy, activate."""
    cfg = Config(proposal=proposal, platform="cca")
    s = _loaded(cfg)
    convert = {"op": "set_attributes", "offset": 0, "size": 2 * PS, "attributes": "private", "flags": ()}
    pop = {"op": "populate", "offset": 0, "size": 2 * PS, "src": "buffer", "value": A}
    order = {"private-first": [convert, pop], "populate-converts": [pop],
             "userspace-converts": [pop, convert]}[proposal]
    s, outs = _run(cfg, order + [{"op": "finalize"}], s)
    assert all(o.get("ret") == 0 for o in outs), outs
    assert launch_complete(cfg, s, A)
    r = step(cfg, s, {"op": "guest_read", "offset": 0, "private": True})
    assert r.outcome == {"ok": True, "value": A}


def test_conversion_to_shared_destroys_the_granule_contents():
    cfg = Config(proposal="private-first", platform="cca")
    s = _loaded(cfg, pages=1, shared=False)
    s, outs = _run(cfg, [{"op": "populate", "offset": 0, "size": PS, "src": "buffer", "value": A},
                         {"op": "set_attributes", "offset": 0, "size": PS, "attributes": "shared", "flags": ()},
                         {"op": "host_read", "offset": 0}], s)
    assert outs[-1] == {"ok": True, "value": 0}  # undelegated: A-cca-scrub


@pytest.mark.parametrize("pages", [1, 2])
@pytest.mark.parametrize("proposal", PROPOSALS)
def test_engines_agree_on_cca(proposal, pages):
    cfg = Config(proposal=proposal, platform="cca", series="v8")
    fast = json.dumps(explore(cfg, Bounds(pages=pages), engine="fast").to_json())
    ref = json.dumps(explore(cfg, Bounds(pages=pages), engine="reference").to_json())
    assert fast == ref


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_vmm_recovers_on_cca(proposal):
    """The reference VMM populates from its copy on cca; the populate errno passes
    through (no EIO for everything, as on snp), so every proposal's VMM recovers at 1
    and 2 pages, while populate-converts' does not on snp."""
    for pages in (1, 2):
        r = vmm_recovers(Config(proposal=proposal, platform="cca"), SpecBounds(pages=pages))
        assert r.holds, (pages, r.gives_up_on)
    assert not vmm_recovers(Config(proposal="populate-converts", platform="snp"), SpecBounds(pages=1)).holds


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gmemlab", *args], capture_output=True, text=True, cwd=ROOT)


def test_compare_cli_on_cca():
    r = _cli("compare", "--platform", "cca", "--series", "v8", "--pages", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    text = json.dumps(out)
    assert '"cca"' in text


def test_bad_cca_trace_exits_2_naming_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"format": "gmemlab-trace/1", "platform": "cca", "series": "v8"}\n'
                    '{"op": "create_gmem", "size": 8192, "flags": ["MMAP"]}\n'
                    '{"op": "populate", "offset": 0, "size": 8192, "src": "buffer"}\n')
    r = _cli("check-trace", str(path))
    assert r.returncode == 2
    assert f"{path}:3" in r.stderr
    assert "Traceback" not in r.stderr


def test_selftest_writes_a_realm_program_and_refuses_activation_cleanly(tmp_path):
    """A cca trace becomes a Realm selftest (KVM_VM_TYPE_ARM_REALM, KVM_ARM_RMI_POPULATE);
    finalize, the Realm's activation at its first KVM_RUN, is refused naming its line."""
    path = tmp_path / "cca.jsonl"
    head = ('{"format": "gmemlab-trace/1", "platform": "cca", "series": "v8"}\n'
            '{"op": "create_gmem", "size": 8192, "flags": ["MMAP"], "expect": {"ret": 0}}\n'
            '{"op": "populate", "offset": 0, "size": 4096, "src": "buffer", "value": "A", '
            '"expect": {"ret": 0, "done": 1}}\n')
    path.write_text(head)
    r = _cli("selftest", str(path), "-o", str(tmp_path / "cca.c"))
    assert r.returncode == 0, (r.stdout, r.stderr)
    c = (tmp_path / "cca.c").read_text()
    assert "#define TRACE_VM_TYPE KVM_VM_TYPE_ARM_REALM" in c and "KVM_ARM_RMI_POPULATE" in c
    path.write_text(head + '{"op": "finalize", "expect": {"ret": 0}}\n')
    r = _cli("selftest", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"{path}:4" in r.stderr and "finalize" in r.stderr
    assert "Traceback" not in r.stderr


def test_punch_of_a_shared_range_frees_a_delegated_granule():
    """kvm_realm_unmap_range_filter undelegates only under KVM_FILTER_PRIVATE, and the
    in-place series takes a punch's filter from the range's attributes: a granule the
    RMM holds at a KVM-shared gfn (userspace-converts populates shared pages) is freed
    still delegated (freed_pages_not_te_owned). With a KVM-private page in the range the
    private filter undelegates it; on snp the folio's free hook releases it."""
    from gmemlab.model.state import TE_NONE
    from gmemlab.model.step import FREED_TE_OWNED

    def punched(platform, pages, punch_pages, private_page=None):
        cfg = Config(proposal="userspace-converts", platform=platform)
        s = _loaded(cfg, pages=pages)
        s, outs = _run(cfg, [{"op": "populate", "offset": 0, "size": PS, "src": "buffer", "value": A}], s)
        assert outs == [{"ret": 0, "done": 1}] and s.pages[0].te != TE_NONE and not s.pages[0].private
        if private_page is not None:
            s, _ = _run(cfg, [{"op": "set_attributes", "offset": private_page * PS, "size": PS,
                               "attributes": "private", "flags": ()}], s)
        return step(cfg, s, {"op": "punch_hole", "offset": 0, "size": punch_pages * PS}).effects

    assert FREED_TE_OWNED in punched("cca", 1, 1)
    assert FREED_TE_OWNED in punched("cca", 2, 2)
    assert FREED_TE_OWNED not in punched("cca", 2, 2, private_page=1)
    assert FREED_TE_OWNED not in punched("snp", 1, 1)
