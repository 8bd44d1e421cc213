"""The explorer's state store: the two tables give the same ids, the compiled passes
the same explorations as numpy alone, edges recomputed on demand are the search's, and
a memory budget ends the search cleanly.

Without numba (GMEMLAB_NO_NUMBA=1, in a child process) the explorer runs on numpy alone
(gmemlab.explore.table.SortedTable, FastEngine.expand); with it, on the compiled passes
(HashTable, gmemlab.explore.compiled). Both must give every exploration byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmemlab.explore import Bounds, explore
from gmemlab.explore import table as T
from gmemlab.explore.search import KeyLayout
from gmemlab.model.state import Config

needs_numba = pytest.mark.skipif(T.njit is None, reason="numba is not installed")

CONFIGS = [("private-first", "snp", 2, True), ("populate-converts", "tdx", 2, True),
           ("userspace-converts", "sw_protected", 3, False), ("private-first", "sw_protected", 3, True),
           ("populate-converts", "cca", 1, True), ("userspace-converts", "snp", 2, True)]


def _fingerprint(proposal, platform, pages, symmetry) -> dict:
    x = explore(Config(proposal=proposal, platform=platform, series="v8"), Bounds(pages=pages), symmetry=symmetry)
    h = hashlib.sha256()
    for a in (x.src, x.dst, x.act):
        h.update(np.asarray(a, np.int32).tobytes())
    return {"json": json.dumps(x.to_json(), sort_keys=True), "edges": h.hexdigest(),
            "parents": hashlib.sha256(np.asarray(x.parent.parent).tobytes()
                                      + np.asarray(x.parent.action).tobytes()).hexdigest(),
            "keys": hashlib.sha256(np.asarray(x.states.keys).tobytes()).hexdigest()}


def _child_fingerprints(env_extra: dict) -> list:
    code = ("import json, sys; sys.path.insert(0, 'tests'); import test_table as t; "
            "print(json.dumps([t._fingerprint(*c) for c in t.CONFIGS]))")
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
    return json.loads(out.stdout)


@needs_numba
def test_numpy_alone_gives_the_compiled_explorations():
    compiled = [_fingerprint(*c) for c in CONFIGS]
    numpy_only = _child_fingerprints({"GMEMLAB_NO_NUMBA": "1"})
    for c, a, b in zip(CONFIGS, compiled, numpy_only):
        assert a == b, c


def _batches(draw_keys):
    return [np.array(b, np.int64) for b in draw_keys]


@needs_numba
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.just(-1), st.integers(0, 40)), max_size=60), min_size=1, max_size=6),
       st.integers(1, 5))
def test_the_hash_table_assigns_what_the_sorted_table_does(batches, A):
    """Same dst and new ids for any batches (keys drawn from a small range: many
    repeats within and across batches; -1: no successor)."""
    h, s = T.HashTable(bits=2), T.SortedTable()       # bits=2: it must grow, mid-batch too
    n = 0
    for b in batches:
        dense = np.array(b + [-1] * (-len(b) % A), np.int64)
        head = n
        dh, nh = h.assign(dense, head, A, n)
        ds, ns = s.assign(dense, head, A, n)
        assert nh.tolist() == ns.tolist()
        assert dh.tolist() == ds.tolist()
        n += len(nh)
        keys = np.unique(dense[dense >= 0])
        assert h.lookup(keys).tolist() == s.lookup(keys).tolist()


@given(st.integers(1, 8), st.data())
def test_a_key_decodes_to_its_row_and_context(n, data):
    lay = KeyLayout(n)
    rows = np.array(data.draw(st.lists(st.lists(st.integers(0, min(lay.pmask, 2**31 - 1)), min_size=n, max_size=n),
                                       min_size=1, max_size=20)), np.int32)
    cids = np.array(data.draw(st.lists(st.integers(0, 255), min_size=len(rows), max_size=len(rows))), np.int32)
    r, c = lay.decode(lay.encode(rows, cids))
    assert (r == rows).all() and (c == cids).all()


def test_a_memory_budget_ends_the_search_cleanly():
    cfg = Config(proposal="private-first", platform="sw_protected", series="v8")
    full = explore(cfg, Bounds(pages=3), symmetry=False)
    from gmemlab.explore.search import search
    from gmemlab.spec import Spec
    cut = search(Spec(cfg, Bounds(pages=3), symmetry=False), max_memory=full.store_bytes // 4)
    assert cut.incomplete and 0 < len(cut.states) < len(full.states)
    # what it found is what the full search found first, under the same ids
    assert (cut.states.keys == full.states.keys[:len(cut.states)]).all()
    assert "complete" in cut.to_json() and cut.to_json()["complete"] is False


def test_the_store_is_compact():
    """The search keeps a key, a parent, an action and a goal bit per state, the table,
    and the non-goal states' ways out: well under 64 bytes a state here."""
    x = explore(Config(proposal="private-first", platform="sw_protected", series="v8"), Bounds(pages=4),
                symmetry=False)
    assert len(x.states) == 167_042
    assert x.store_bytes / len(x.states) < 64
