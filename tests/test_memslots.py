"""Memslots in the model: the edges of populate, guest accesses where no memslot is, and
replace_memslot (docs/trace-format.md, "Memslots"; docs/domain.md, "Memslots")."""

from __future__ import annotations

import pytest

from gmemlab.model.events import event
from gmemlab.model.state import Config, VmState
from gmemlab.model.step import SLOT_REPLACED_PINNED, step
from gmemlab.traces.format import dumps, loads
from gmemlab.traces.replay import replay, replay_ranges

PS = 4096


def run(cfg, *evs):
    s, outs, effects = VmState(), [], []
    for e in evs:
        r = step(cfg, s, e)
        s = r.state
        outs.append(r.outcome)
        effects.append(r.effects)
    return s, outs, effects


CREATE_PRIVATE = event("create_gmem", size=4 * PS, flags=("MMAP",))


def slot(off, size, **kw):
    return event("replace_memslot", offset=off, size=size, **kw)


def pop(off, size):
    return event("populate", offset=off, size=size)


@pytest.mark.parametrize("platform,past_end", [("snp", {"ret": 0, "done": 2}),
                                               ("tdx", {"ret": "EINVAL", "done": 2})])
def test_populate_at_the_memslot_edges(platform, past_end):
    cfg = Config(platform=platform)
    _, outs, _ = run(cfg, CREATE_PRIVATE, slot(PS, 2 * PS), pop(PS, 3 * PS), pop(0, PS), pop(3 * PS, PS))
    assert outs[1] == {"ret": 0}
    assert outs[2] == past_end                      # clamped (snp) / next page refused (tdx)
    assert outs[3] == {"ret": "EINVAL", "done": 0}  # starts before the memslot
    assert outs[4] == {"ret": "EINVAL", "done": 0}  # starts after it


@pytest.mark.parametrize("platform", ["snp", "tdx"])
def test_populate_past_the_end_of_the_file_is_clamped_like_the_memslot(platform):
    _, outs, _ = run(Config(platform=platform), CREATE_PRIVATE, pop(2 * PS, 4 * PS))
    assert outs[1]["done"] == 2 and outs[1]["ret"] == (0 if platform == "snp" else "EINVAL")


@pytest.mark.parametrize("platform,private,want", [
    ("snp", True, "MEMORY_FAULT"), ("snp", False, "MMIO"),
    ("tdx", True, "MEMORY_FAULT"), ("tdx", False, "MMIO"),
    ("sw_protected", True, "MMIO"), ("sw_protected", False, "MMIO"),
])
def test_guest_access_where_no_memslot_is(platform, private, want):
    cfg = Config(platform=platform)
    evs = [CREATE_PRIVATE, slot(0, PS)] + ([pop(0, PS), event("finalize")] if cfg.has_te else [])
    s, _, _ = run(cfg, *evs)
    for off in (PS, 16 * PS):  # outside the memslot, and past the end of the file
        r = step(cfg, s, event("guest_read", offset=off, private=private))
        assert r.outcome == {"exit": want} and r.state == s


@pytest.mark.parametrize("ev", [slot(PS // 2, PS), slot(0, PS + 1), slot(2 * PS, 3 * PS),
                                slot(0, PS, new_gmem=("NO_DIRECT_MAP",))])
def test_replace_memslot_refuses_what_the_kernel_refuses(ev):
    s, _, _ = run(Config(platform="snp"), CREATE_PRIVATE)
    r = step(Config(platform="snp"), s, ev)
    assert r.outcome == {"ret": "EINVAL"} and r.state == s


def test_replacing_pinned_shared_memory_with_a_private_guest_memfd_checks_no_reference():
    cfg = Config(platform="snp")
    create = event("create_gmem", size=2 * PS, flags=("MMAP", "INIT_SHARED"))
    s, outs, effects = run(cfg, create, event("host_write", offset=0, value=75), event("pin", offset=0, size=PS),
                           event("set_attributes", offset=0, size=2 * PS, attributes="private"),
                           slot(0, 2 * PS, new_gmem=("MMAP",)))
    assert outs[3]["ret"] == "EAGAIN" and outs[4] == {"ret": 0}
    assert SLOT_REPLACED_PINNED in effects[4]
    assert all(p.private and not p.pins and not p.noslot for p in s.pages)
    # The same replacement of memory nobody holds is no bypass.
    _, _, effects = run(cfg, create, slot(0, 2 * PS, new_gmem=("MMAP",)))
    assert SLOT_REPLACED_PINNED not in effects[1]


def test_the_range_engine_agrees_on_replace_memslot_at_guest_scale():
    n = 100_000
    h = {"format": "gmemlab-trace/1", "platform": "tdx", "series": "v8"}
    evs = [{"op": "create_gmem", "size": n * PS, "flags": ["MMAP"]},
           {"op": "replace_memslot", "offset": 10 * PS, "size": (n - 20) * PS},
           {"op": "populate", "offset": (n - 12) * PS, "size": 4 * PS, "expect": {"ret": 0}},
           {"op": "populate", "offset": 5 * PS, "size": PS},
           {"op": "finalize"},
           {"op": "guest_read", "offset": 3 * PS, "private": True},
           {"op": "guest_read", "offset": (n - 11) * PS, "private": True}]
    header, events = loads(dumps(h, evs), "big")
    from gmemlab.traces.replay import config_for
    cfg = config_for(header)
    runs, pages = replay_ranges(cfg, events), replay(cfg, events, "big", engine="pages")
    assert runs.to_json() == pages.to_json()
    assert pages.divergence["predicted"] == {"ret": "EINVAL", "done": 2}
