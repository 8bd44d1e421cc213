"""The manifest of expected exploration results, in the spirit of TLA+ Examples'
manifest.json: proposal x platform x series x pages (x knobs) -> states, transitions,
broken invariants. Tests re-explore and compare; ``python -m gmemlab.explore.manifest``
rewrites it after a deliberate change of the model (review the diff!).
"""

from __future__ import annotations

import json
import sys

from gmemlab.explore import Bounds, explore
from gmemlab.invariants import INVARIANT_NAMES
from gmemlab.model.state import Config
from gmemlab.model.vocab import PLATFORMS, PROPOSALS, SERIES

PATH = "data/manifest/explore.json"

# (pages, knobs) combinations recorded for every proposal x platform x series.
GRID = [(1, {}), (2, {})]
# Extra entries: the knobs, at 2 pages on snp.
KNOBBED = [{"convert_after_populate": True}, {"refuse_unprepared_populate": True}]


def key(proposal: str, platform: str, series: str, pages: int, knobs: dict) -> str:
    k = "/".join([proposal, platform, series, f"{pages}p"])
    on = sorted(n for n, v in knobs.items() if v)
    return k + ("+" + "+".join(on) if on else "")


def entry(proposal, platform, series, pages, knobs) -> dict:
    x = explore(Config(proposal=proposal, platform=platform, series=series, **knobs), Bounds(pages=pages))
    return {"states": len(x.states), "transitions": x.transitions,
            "broken": [n for n in INVARIANT_NAMES if not x.holds(n)]}


def grid():
    for proposal in PROPOSALS:
        for platform in PLATFORMS:
            for series in SERIES:
                for pages, knobs in GRID:
                    yield proposal, platform, series, pages, knobs
    for proposal in PROPOSALS:
        for series in ("v7", "v8"):
            for knobs in KNOBBED:
                yield proposal, "snp", series, 2, knobs


def build() -> dict:
    return {key(*g): entry(*g) for g in grid()}


if __name__ == "__main__":
    from gmemlab.fsutil import atomic_write
    data = build()
    atomic_write(sys.argv[1] if len(sys.argv) > 1 else PATH, json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{len(data)} entries written")
