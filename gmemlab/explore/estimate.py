"""What an exploration will cost, estimated from its bounds before it starts.

The state count grows by a factor per page that itself shrinks as pages are added
(measured on snp/v8 private-first: x31 from 1 to 2 pages, x24 to 3, x19 to 4). The
estimate starts from the manifest's exact counts at 1 and 2 pages
(data/manifest/explore.json) and multiplies by the 1-to-2 factor shrunk by 0.8 per
page after that; turning symmetry off multiplies by pages! (the orders of the pages a
sorted state stands for) and a second process by 1.6 per page. It overestimates the
states measured at 3 and 4 pages by 5-10 %.

>>> estimate_states("private-first", "snp", "v8", 3) > 146_450
True
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache

SECONDS_PER_STATE = 6e-6     # fast engine, measured at 4 pages (2.75M states, 15 s)
# Peak resident memory: what the process holds whatever the size (Python, numpy, numba's
# compiled passes, one batch) and the search's store per state (gmemlab.explore.search:
# 35-55 bytes measured at 4-5 pages on sw_protected and 3 pages on snp, with slack).
BASE_BYTES = 250e6
BYTES_PER_STATE = 60
SHRINK = 0.8

_MANIFEST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "data", "manifest", "explore.json")


@lru_cache(maxsize=1)
def _manifest() -> dict:
    try:
        with open(_MANIFEST) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _base(proposal: str, platform: str, series: str) -> tuple[int, int]:
    """States at 1 and 2 pages: the manifest's, or for a proposal it does not know
    (a variant) the largest of the built-ins on that platform and series."""
    m = _manifest()
    pairs = []
    for (pr, pl, se, _), v in ((tuple(k.split("/")), v) for k, v in m.items() if k.count("/") == 3):
        if pl == platform and se == series and (pr == proposal or proposal is None):
            pairs.append(pr)
    found = [(m.get(f"{p}/{platform}/{series}/1p"), m.get(f"{p}/{platform}/{series}/2p")) for p in set(pairs)]
    found = [(a["states"], b["states"]) for a, b in found if a and b]
    if not found:
        if proposal is not None:
            return _base(None, platform, series)
        return 250, 10_000   # nothing known: about the largest of the manifest
    return max(found, key=lambda ab: ab[1])


def estimate_states(proposal: str, platform: str, series: str, pages: int, *,
                    symmetry: bool = True, processes: int = 1) -> int:
    s1, s2 = _base(proposal, platform, series)
    from gmemlab.model.platforms import PLATFORMS
    if PLATFORMS[platform].has_te:
        # The whole-range populate keeps symmetry off from 2 pages on (gmemlab.spec): the
        # manifest's 2-page count is unreduced (once regenerated), the growth is taken on
        # the reduced count, and every page order is then counted.
        s2, symmetry = max(s2 // 2, 1), False
    if pages <= 1:
        est = float(s1)
    else:
        g = max(s2 / max(s1, 1), 1.0)
        est = float(s2)
        for k in range(3, pages + 1):
            est *= max(g * SHRINK ** (k - 2), 1.0)
    if not symmetry:
        est *= math.factorial(pages)
    if processes > 1:
        est *= 1.6 ** pages
    return int(est)


def describe(states: int) -> str:
    """'about 48,000,000 states, ~290 s and ~43 GB'."""
    secs = states * SECONDS_PER_STATE
    gb = (BASE_BYTES + states * BYTES_PER_STATE) / 1e9
    return f"about {states:,} states, ~{secs:,.0f} s and ~{gb:,.1f} GB"
