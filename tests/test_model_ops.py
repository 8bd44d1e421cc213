"""Each op of docs/trace-format.md, each errno, against the kernel facts of docs/domain.md."""

import pytest

from gmemlab.model.state import GARBAGE, STALE, TE_NONE, TE_PENDING, TE_VALID, Config
from gmemlab.model.step import (HOST_TOUCHED_TE, KVM_WROTE_PRIVATE, MEASURED_NOT_LOADED, STALE_EXPOSED,
                                TE_TOOK_SHARED, step)
from helpers import (FINALIZE, PS, accept, attrs, create, gread, gwrite, pin, populate, punch, read, run,
                     unpin, write)

SW = Config(platform="sw_protected")
SNP = Config(platform="snp")
TDX = Config(platform="tdx")


# --- create_gmem ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 100, PS + 1])
def test_create_rejects_bad_sizes(size):
    s, (out,) = run(SW, {"op": "create_gmem", "size": size, "flags": ("MMAP",)})
    assert out == {"ret": "EINVAL"} and not s.created


def test_create_initial_attribute_follows_init_shared():
    s, _ = run(SW, create(2, "MMAP", "INIT_SHARED"))
    assert [p.private for p in s.pages] == [False, False]
    s, _ = run(SW, create(2, "MMAP"))
    assert [p.private for p in s.pages] == [True, True]


def test_no_direct_map_needs_its_series():
    _, (out,) = run(SW, create(1, "MMAP", "NO_DIRECT_MAP"))
    assert out == {"ret": "EINVAL"}
    _, (out,) = run(Config(platform="sw_protected", no_direct_map_series=True), create(1, "MMAP", "NO_DIRECT_MAP"))
    assert out == {"ret": 0}


def test_ops_before_create_are_ebadf():
    _, outs = run(SW, read(0), attrs(0, 1, "private"), FINALIZE)
    assert outs == [{"ret": "EBADF"}] * 3


# --- set_attributes ---------------------------------------------------------------------

@pytest.mark.parametrize("offset,size", [(0, 0), (1, PS), (0, PS + 1), (0, 3 * PS), (2 * PS, PS)])
def test_set_attributes_validation(offset, size):
    s, outs = run(SW, create(2), {"op": "set_attributes", "offset": offset, "size": size,
                                  "attributes": "private", "flags": ()})
    assert outs[1] == {"ret": "EINVAL"}


def test_set_attributes_flags_rejected_after_v5():
    for series in ("v7", "v8"):
        _, outs = run(Config(platform="sw_protected", series=series), create(1), attrs(0, 1, "private", "PRESERVE"))
        assert outs[1] == {"ret": "EINVAL"}


def test_v5_modes():
    v5 = Config(platform="sw_protected", series="v5")
    _, outs = run(v5, create(1), attrs(0, 1, "private", "ZERO", "PRESERVE"))
    assert outs[1] == {"ret": "EINVAL"}
    _, outs = run(v5, create(2), attrs(1, 1, "private", "ZERO"))
    assert outs[1] == {"ret": "EOPNOTSUPP", "error_offset": PS}
    # SNP: PRESERVE only to private and before finalize; the check precedes the early return.
    snp5 = Config(platform="snp", series="v5")
    _, outs = run(snp5, create(1), attrs(0, 1, "shared", "PRESERVE"))
    assert outs[1] == {"ret": "EOPNOTSUPP", "error_offset": 0}
    _, outs = run(snp5, create(1), FINALIZE, attrs(0, 1, "private", "PRESERVE"))
    assert outs[2] == {"ret": "EOPNOTSUPP", "error_offset": 0}


def test_v5_flags_zero_scrambles_sw_protected_contents():
    v5 = Config(platform="sw_protected", series="v5")
    s, outs = run(v5, create(1), write(0, "A"), attrs(0, 1, "private"), attrs(0, 1, "shared"), read(0))
    assert outs[-1] == {"ok": True, "value": None}
    _, _, effects = step(v5, run(v5, create(1), write(0, "A"))[0],
                         {**attrs(0, 1, "private"), "process": "vmm"})
    assert KVM_WROTE_PRIVATE in effects
    s, outs = run(v5, create(1), write(0, "A"), attrs(0, 1, "private", "PRESERVE"),
                  attrs(0, 1, "shared", "PRESERVE"), read(0))
    assert outs[-1] == {"ok": True, "value": ord("A")}


def test_contents_survive_conversions_on_sw_protected():
    # selftests init_shared / init_private: contents survive both directions (v6-v8).
    s, outs = run(SW, create(1), write(0, "A"), attrs(0, 1, "private"), gread(0), attrs(0, 1, "shared"), read(0))
    assert outs[3] == {"ok": True, "value": ord("A")}
    assert outs[-1] == {"ok": True, "value": ord("A")}


def test_already_in_state_returns_zero_and_changes_nothing():
    s0, _ = run(SW, create(2), write(0))
    s1, _, _ = step(SW, s0, {**attrs(0, 2, "shared"), "process": "vmm"})
    assert s1 == s0


def test_to_private_unmaps_then_eagain_on_pin_without_attribute_change():
    # selftest elevated_refcount: the bulk call fails at the pinned page, nothing converted.
    s, outs = run(SW, create(4), write(0), write(1), pin(2), attrs(0, 4, "private"))
    assert outs[-1] == {"ret": "EAGAIN", "error_offset": 2 * PS}
    assert not any(p.private for p in s.pages)
    assert all(not p.mapped for p in s.pages)  # unmapped even though the call failed
    s, outs = run(SW, attrs(0, 1, "private"), attrs(1, 1, "private"), attrs(2, 1, "private"),
                  unpin(2), attrs(0, 4, "private"), state=s)
    assert outs == [{"ret": 0}, {"ret": 0}, {"ret": "EAGAIN", "error_offset": 2 * PS}, {"ret": 0}, {"ret": 0}]
    assert all(p.private for p in s.pages)


def test_to_shared_on_snp_gives_ciphertext_and_releases_te():
    s, outs = run(SNP, create(1), write(0, "A"), attrs(0, 1, "private"), populate(0, 1),
                  attrs(0, 1, "shared"), read(0))
    assert outs[3] == {"ret": 0, "done": 1}
    assert outs[-1] == {"ok": True, "value": None}
    assert s.pages[0].te == TE_NONE


def test_to_shared_on_tdx_gives_zero():
    s, outs = run(TDX, create(1), write(0, "A"), attrs(0, 1, "private"), populate(0, 1),
                  attrs(0, 1, "shared"), read(0))
    assert outs[-1] == {"ok": True, "value": 0}


def test_snp_page_never_assigned_keeps_plaintext():
    _, outs = run(SNP, create(1), write(0, "A"), attrs(0, 1, "private"), attrs(0, 1, "shared"), read(0))
    assert outs[-1] == {"ok": True, "value": ord("A")}


# --- host access -----------------------------------------------------------------------

def test_host_access_private_and_overflow_sigbus():
    _, outs = run(SW, create(1, "MMAP"), read(0), write(0), {"op": "host_read", "offset": PS})
    assert outs[1:] == [{"signal": "SIGBUS"}] * 3


def test_host_access_without_mmap_is_enodev():
    _, outs = run(SW, create(1, "INIT_SHARED"), read(0))
    assert outs[1] == {"ret": "ENODEV"}


def test_fresh_shared_page_reads_zero_and_forked_child_loses_mapping():
    s, outs = run(SW, create(1), read(0), write(0, "A", "child"), read(0), attrs(0, 1, "private"),
                  read(0, "child"))
    assert outs[1] == {"ok": True, "value": 0}
    assert outs[3] == {"ok": True, "value": ord("A")}
    assert outs[-1] == {"signal": "SIGBUS"}


# --- pin / punch_hole -----------------------------------------------------------------------

def test_pin_private_is_efault_and_takes_nothing():
    s, outs = run(SW, create(2), attrs(1, 1, "private"), pin(0, 2))
    assert outs[-1] == {"ret": "EFAULT"}
    assert all(p.pins == 0 for p in s.pages)


def test_punch_hole_zeroes_keeps_attributes():
    # selftests truncate / mmap_supported.
    s, outs = run(SW, create(2), write(0, "A"), attrs(1, 1, "private"), punch(0, 2), read(0))
    assert outs[3] == {"ret": 0} and outs[-1] == {"ok": True, "value": 0}
    assert [p.private for p in s.pages] == [False, True]


@pytest.mark.parametrize("offset,size", [(1, PS), (0, PS - 1), (0, 0)])
def test_invalid_punch_hole(offset, size):
    _, outs = run(SW, create(2), {"op": "punch_hole", "offset": offset, "size": size})
    assert outs[-1] == {"ret": "EINVAL"}


def test_punch_hole_past_end_succeeds():
    _, outs = run(SW, create(2), punch(2, 4))
    assert outs[-1] == {"ret": 0}


def test_snp_refaulted_private_page_needs_validation_again():
    s, outs = run(SNP, create(1), attrs(0, 1, "private"), populate(0, 1), FINALIZE, gread(0),
                  punch(0, 1), gread(0), accept(0), gread(0))
    assert outs[4] == {"ok": True, "value": 0}
    assert outs[6] == {"exception": "#VC"}
    assert outs[-1] == {"ok": True, "value": None}  # validated, but nobody wrote it in the guest's key


# --- populate ----------------------------------------------------------------------------------

def test_populate_on_sw_protected_is_enotty():
    _, outs = run(SW, create(1), populate(0, 1))
    assert outs[-1] == {"ret": "ENOTTY"}


def test_private_first_snp_launch():
    s, outs = run(SNP, create(2), write(0, "A"), write(1, "B"), attrs(0, 2, "private"), populate(0, 2),
                  FINALIZE, gread(0), gread(1))
    assert outs[4] == {"ret": 0, "done": 2}
    assert outs[-2:] == [{"ok": True, "value": ord("A")}, {"ok": True, "value": ord("B")}]
    assert all(p.te == TE_VALID and p.measured for p in s.pages)


def test_snp_populate_errors_become_eio_unless_progress():
    _, outs = run(SNP, create(2), populate(0, 2))
    assert outs[-1] == {"ret": "EIO", "done": 0}  # destination shared: EINVAL, reported as EIO
    _, outs = run(SNP, create(2), attrs(0, 1, "private"), populate(0, 2))
    assert outs[-1] == {"ret": 0, "done": 1}  # partial progress: 0, advanced


def test_tdx_populate_returns_page_errno():
    _, outs = run(TDX, create(2), populate(0, 2))
    assert outs[-1] == {"ret": "EINVAL", "done": 0}
    _, outs = run(TDX, create(2), attrs(0, 2, "private"), populate(0, 1), populate(0, 2))
    assert outs[-1] == {"ret": "EIO", "done": 0}  # re-adding a page the S-EPT maps


def test_snp_populate_twice_fails():
    _, outs = run(SNP, create(1), attrs(0, 1, "private"), populate(0, 1), populate(0, 1))
    assert outs[-1] == {"ret": "EIO", "done": 0}


def test_populate_after_finalize_refused():
    # TDX: tdx_vcpu_init_mem_region refuses a RUNNABLE TD (EINVAL). SNP: snp_launch_update
    # has no launch-state check; kvm_gmem_populate fails on the first page -> EIO.
    for cfg, errno in ((SNP, "EIO"), (TDX, "EINVAL")):
        _, outs = run(cfg, create(1), attrs(0, 1, "private"), FINALIZE, populate(0, 1), FINALIZE)
        assert outs[-2] == {"ret": errno, "done": 0}
        assert outs[-1] == {"ret": "EINVAL"}
        # the argument checks come first
        _, outs = run(cfg, create(1), attrs(0, 1, "private"), FINALIZE, {**populate(0, 1), "size": 100})
        assert outs[-1] == {"ret": "EINVAL", "done": 0}


def test_v7_populate_measures_stale_v8_zeroes():
    for series, stale in (("v7", True), ("v8", False)):
        cfg = Config(platform="snp", series=series)
        s, _ = run(cfg, create(1), attrs(0, 1, "private"))
        s2, out, eff = step(cfg, s, {**populate(0, 1), "process": "vmm"})
        assert out == {"ret": 0, "done": 1}
        assert (STALE_EXPOSED in eff) == stale
        assert (s2.pages[0].content == STALE) == stale
        if stale:
            assert MEASURED_NOT_LOADED in eff


def test_refuse_unprepared_populate_knob():
    cfg = Config(platform="tdx", series="v8", refuse_unprepared_populate=True)
    _, outs = run(cfg, create(2), write(0), attrs(0, 2, "private"), populate(0, 2))
    assert outs[-1] == {"ret": "EOPNOTSUPP", "done": 1}


def test_legacy_copy_path():
    s, outs = run(SNP, create(1, "MMAP"), populate(0, 1, "buffer", "B"), FINALIZE, gread(0))
    assert outs[1] == {"ret": 0, "done": 1}
    assert outs[-1] == {"ok": True, "value": ord("B")}


def test_populate_converts_converts_and_inherits_eagain():
    cfg = Config(proposal="populate-converts", platform="tdx")
    s, outs = run(cfg, create(2), write(0), write(1), pin(1), populate(0, 2))
    assert outs[-1] == {"ret": "EAGAIN", "done": 1}
    assert [p.private for p in s.pages] == [True, False]
    assert s.pages[0].te == TE_VALID and not s.pages[1].mapped
    cfg = Config(proposal="populate-converts", platform="snp")
    _, outs = run(cfg, create(1), write(0), pin(0), populate(0, 1))
    assert outs[-1] == {"ret": "EIO", "done": 0}  # the EAGAIN and its offset are lost


def test_populate_converts_refuses_private_destination():
    cfg = Config(proposal="populate-converts", platform="tdx")
    _, outs = run(cfg, create(1, "MMAP"), populate(0, 1))
    assert outs[-1] == {"ret": "EINVAL", "done": 0}


def test_convert_after_populate_knob_leaves_te_private_shared_page():
    cfg = Config(proposal="populate-converts", platform="snp", convert_after_populate=True)
    s, outs = run(cfg, create(1), write(0), pin(0), populate(0, 1))
    assert outs[-1] == {"ret": "EIO", "done": 0}
    assert s.pages[0].te == TE_VALID and not s.pages[0].private


def test_userspace_converts_te_takes_shared_page():
    cfg = Config(proposal="userspace-converts", platform="snp")
    s, _ = run(cfg, create(1), write(0))
    s2, out, eff = step(cfg, s, {**populate(0, 1), "process": "vmm"})
    assert out == {"ret": 0, "done": 1} and TE_TOOK_SHARED in eff
    assert s2.pages[0].te == TE_VALID and not s2.pages[0].private
    _, out, eff = step(cfg, s2, {**write(0), "process": "vmm"})
    assert out == {"signal": "SIGBUS"} and HOST_TOUCHED_TE in eff
    tdx = Config(proposal="userspace-converts", platform="tdx")
    s, outs = run(tdx, create(1), write(0), populate(0, 1), read(0))
    assert outs[-1] == {"ok": True, "value": 0}  # host-key reads of TD memory return zeros


# --- guest ----------------------------------------------------------------------------------------

def test_guest_cannot_run_before_finalize_on_te_platforms():
    _, outs = run(SNP, create(1), gread(0))
    assert outs[-1] == {"ret": "EINVAL"}


def test_guest_view_mismatch_exits_on_snp_tdx_not_sw():
    for cfg in (SNP, TDX):
        _, outs = run(cfg, create(1), FINALIZE, gread(0, private=True))
        assert outs[-1] == {"exit": "MEMORY_FAULT"}
    _, outs = run(SW, create(1), gread(0, private=True))
    assert outs[-1] == {"ok": True, "value": 0}


def test_guest_private_fault_prepares_and_requires_accept():
    s, outs = run(TDX, create(1, "MMAP"), FINALIZE, gread(0), accept(0), gread(0), gwrite(0, "G"), gread(0))
    assert outs[2] == {"exception": "#VE"}
    assert outs[4] == {"ok": True, "value": 0}  # TDG.MEM.PAGE.ACCEPT zeroes
    assert outs[-1] == {"ok": True, "value": ord("G")}
    s, outs = run(SNP, create(1, "MMAP"), FINALIZE, gread(0))
    assert outs[-1] == {"exception": "#VC"} and s.pages[0].te == TE_PENDING


def test_guest_accept_stops_at_shared_page():
    s, outs = run(SNP, create(2), attrs(0, 1, "private"), FINALIZE, accept(0, 2))
    assert outs[-1] == {"exit": "MEMORY_FAULT"}
    assert s.pages[0].te == TE_VALID


def test_map_gpa_range_checks():
    _, outs = run(SNP, create(2), FINALIZE, {"op": "map_gpa_range", "offset": 1, "size": PS, "private": True},
                  {"op": "map_gpa_range", "offset": 0, "size": 0, "private": True},
                  {"op": "map_gpa_range", "offset": 0, "size": 2 * PS, "private": True})
    assert outs[2:] == [{"ret": "EINVAL"}, {"ret": "EINVAL"}, {"ret": 0}]


def test_guest_shared_access_reads_host_data():
    _, outs = run(SNP, create(1), write(0, "A"), FINALIZE, gread(0, private=False))
    assert outs[-1] == {"ok": True, "value": ord("A")}


def test_guest_read_of_ciphertext_is_not_plaintext():
    _, outs = run(SNP, create(1), attrs(0, 1, "private"), populate(0, 1), FINALIZE,
                  attrs(0, 1, "shared"), gread(0, private=False))
    assert outs[-1] == {"ok": True, "value": None}
    assert GARBAGE != STALE


def test_assumption_names_are_registered_and_used():
    import os
    import re

    from gmemlab.model.assumptions import ASSUMPTIONS
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gmemlab")
    used = set()
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py") and f != "assumptions.py":
                used |= set(re.findall(r"\bA-[a-z0-9-]+[a-z0-9]", open(os.path.join(d, f)).read()))
    assert used == set(ASSUMPTIONS)


def test_allocation_failure_is_enomem_at_start_and_changes_nothing():
    s, _ = run(SW, create(2), write(0))
    fail = {**attrs(1, 1, "private"), "process": "vmm", "fail": "ENOMEM"}
    s2, out, _ = step(SW, s, fail)
    assert out == {"ret": "ENOMEM", "error_offset": PS} and s2 == s
    # The no-op check comes first: nothing to allocate, nothing to fail.
    _, out, _ = step(SW, s, {**attrs(0, 1, "shared"), "process": "vmm", "fail": "ENOMEM"})
    assert out == {"ret": 0}


def test_populate_converts_inherits_enomem():
    tdx = Config(proposal="populate-converts", platform="tdx")
    s, _ = run(tdx, create(2), write(0))
    s2, out, _ = step(tdx, s, {**populate(0, 2), "process": "vmm", "fail": "ENOMEM"})
    assert out == {"ret": "ENOMEM", "done": 0} and not any(p.private for p in s2.pages)
    snp = Config(proposal="populate-converts", platform="snp")
    _, out, _ = step(snp, run(snp, create(1))[0], {**populate(0, 1), "process": "vmm", "fail": "ENOMEM"})
    assert out == {"ret": "EIO", "done": 0}  # the ENOMEM is lost in snp_launch_update


def test_freed_pages_not_te_owned_and_conversion_spares_unconverted():
    from gmemlab.invariants import Transition, violations
    from gmemlab.model.step import FREED_TE_OWNED
    # SNP: punching a measured page reclaims it first (sev_gmem_invalidate): no effect.
    s, _ = run(SNP, create(2), attrs(0, 2, "private"), populate(0, 2), FINALIZE)
    ev = {**punch(0, 1), "process": "vmm"}
    post, out, eff = step(SNP, s, ev)
    assert out == {"ret": 0} and FREED_TE_OWNED not in eff and not post.pages[0].allocated
    assert violations(SNP, Transition(s, ev, out, post, eff)) == []
    # ... and the invariant can fail: the same step reported as freeing an owned page.
    t = Transition(s, ev, out, post, frozenset({FREED_TE_OWNED}))
    assert "freed_pages_not_te_owned" in violations(SNP, t)
    # A conversion that touched a page it did not convert breaks conversion_spares_unconverted.
    ev = {**attrs(0, 1, "shared"), "process": "vmm"}
    post, out, eff = step(SNP, s, ev)
    assert "conversion_spares_unconverted" not in violations(SNP, Transition(s, ev, out, post, eff))
    bad = post.replace_pages({1: post.pages[1]._replace(te=TE_NONE)})
    assert "conversion_spares_unconverted" in violations(SNP, Transition(s, ev, out, bad, eff))
