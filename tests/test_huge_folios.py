"""Huge folios as geometry (knob huge_folios, Config.folio_pages / Bounds.folio_pages):
which steps split a folio, when a split folio merges back and what the merge zeroes
(step.huge_folio_rule, assumption A-huge-merge-on-conversion), and, per proposal and
platform, whether launch keeps the folio whole (gmemlab.explore.compare.huge_folio_kept)
and whether the TE then maps it huge (Platform.te_huge_at_launch)."""

import dataclasses

import pytest

from gmemlab.errors import UsageError
from gmemlab.explore import Bounds, explore
from gmemlab.explore.compare import huge_folio_kept, huge_folio_splits, te_maps_huge_at_launch
from gmemlab.model.state import STALE, ZERO, Config, Page, VmState, folio_spans
from gmemlab.model.step import step
from gmemlab.spec import Spec
from tests.helpers import attrs, create, pin, populate, run, write

SW = Config(platform="sw_protected", huge_folios=True)
SW2 = dataclasses.replace(SW, folio_pages=2)


def test_geometry_of_the_file():
    s, _ = run(SW2, create(5))
    assert s.folios == (True, True)                 # pages 0-1, 2-3; page 4 is a tail
    assert run(SW, create(5))[0].folios == (True,)  # default: one folio over the file
    assert run(Config(platform="sw_protected"), create(4))[0].folios == ()   # no knob, no folios
    assert folio_spans(4, 2) == [range(0, 2), range(2, 4)]
    with pytest.raises(UsageError):
        Config(folio_pages=-1)
    with pytest.raises(UsageError):
        Bounds(folio_pages="2")


def test_partial_conversion_splits_only_its_folio():
    s, outs = run(SW2, create(4), attrs(1, 1, "private"))
    assert outs[-1] == {"ret": 0} and s.folios == (False, True)
    # converting a folio whole keeps it; so does a range covering whole folios only
    s, _ = run(SW2, create(4), attrs(2, 2, "private"))
    assert s.folios == (True, True)


def test_other_splits_partial_punch_and_te_taking_a_shared_page():
    s, _ = run(SW2, create(4), write(0), write(1), {"op": "punch_hole", "offset": 0, "size": 4096})
    assert s.folios == (False, True)
    s, _ = run(SW2, create(4), write(0), write(1), {"op": "punch_hole", "offset": 0, "size": 2 * 4096})
    assert s.folios == (True, True)                 # the whole folio punched: nothing split
    snp = Config(proposal="userspace-converts", platform="snp", huge_folios=True, folio_pages=2)
    s, outs = run(snp, create(4), populate(0, 2))
    assert outs[-1]["ret"] == 0 and s.folios == (False, True)   # the TE took shared pages


def test_merge_on_conversion_zeroes_the_never_up_to_date_parts():
    # A split folio whose page 1 holds memory never up to date (stale: allocated, not
    # zeroed) and page 0 a private page of data; converting page 1 back to private
    # leaves one attribute: the folio merges, page 1 is zeroed, page 0 is untouched.
    data = Page(private=True, allocated=True, uptodate=True, content=ord("D"), loaded=ord("D"))
    stale = Page(private=False, allocated=True, uptodate=False, content=STALE)
    pre = VmState(created=True, gmem_flags=frozenset({"MMAP"}), pages=(data, stale), folios=(False,))
    post, out, _ = step(SW2, pre, attrs(1, 1, "private"))
    assert out == {"ret": 0} and post.folios == (True,)
    assert post.pages[1].content == ZERO and post.pages[1].uptodate   # fails if the merge did not zero
    assert post.pages[0] == data
    # A page never allocated stays so: the merged folio backs it as a fresh file's does.
    empty = Page(private=False)
    post, _, _ = step(SW2, pre._replace(pages=(data, empty)), attrs(1, 1, "private"))
    assert post.folios == (True,) and post.pages[1] == Page(private=True)


def test_no_merge_while_a_part_is_pinned_or_attributes_differ():
    s, _ = run(SW2, create(2), attrs(0, 1, "private"), write(1), pin(1), attrs(0, 1, "shared"))
    assert s.folios == (False,)                    # one attribute again, but page 1 is pinned
    s, _ = run(SW2, create(4), attrs(0, 1, "private"), attrs(2, 1, "private"))
    assert s.folios == (False, False)              # each folio has two attributes
    s, _ = run(SW2, attrs(1, 1, "private"), state=s)
    assert s.folios == (True, False)               # the first folio is private whole again


def test_symmetry_is_off_when_pages_sit_in_different_folios():
    b = Bounds(pages=2, folio_pages=1)
    assert not Spec(SW, b).symmetric and Spec(SW, Bounds(pages=2)).symmetric
    assert Spec(SW, b).config.folio_pages == 1


# Per proposal and platform, at 2 pages with one 2-page folio (a 2-page folio stands
# for 2 MiB, or 1 GiB): does some launch keep the folio whole (never split on the way)?
# max_pins=0 keeps the test short; the default bounds give the same answers (docs).
KEPT = {"private-first": True, "populate-converts": True, "userspace-converts": False}


@pytest.mark.parametrize("platform", ["snp", "tdx", "cca"])
def test_launch_keeps_the_folio_per_proposal(platform):
    for proposal, kept in KEPT.items():
        x = explore(Config(proposal=proposal, platform=platform, huge_folios=True),
                    Bounds(pages=2, folio_pages=2, max_pins=0))
        assert huge_folio_kept(x) is kept, (platform, proposal)
        # none of the three maps a page it takes at launch with a huge TE entry
        assert te_maps_huge_at_launch(x) is False
        splits = huge_folio_splits(x)
        assert "set_attributes to private (part of the folio)" in splits
        assert not any(s.startswith("set_attributes") and "whole" in s for s in splits)
        if proposal == "userspace-converts":
            assert "populate from a buffer (whole folio)" in splits


def test_no_knob_no_metric():
    x = explore(Config(platform="snp"), Bounds(pages=1))
    assert huge_folio_kept(x) is None and te_maps_huge_at_launch(x) is None and huge_folio_splits(x) == []
    x = explore(Config(platform="snp", huge_folios=True), Bounds(pages=1, folio_pages=2))
    assert huge_folio_kept(x) is None               # no whole folio fits in one page
