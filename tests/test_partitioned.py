"""One exploration across a Dask cluster (gmemlab.explore.partitioned): the state table
partitioned by key hash over two workers of a LocalCluster on loopback gives the same
exploration as one process, byte for byte; the keys really are spread; misuse is exit 2."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gmemlab.errors import UsageError
from gmemlab.explore import Bounds, explore
from gmemlab.explore.search import search
from gmemlab.model.state import Config
from gmemlab.spec import Spec

distributed = pytest.importorskip("distributed") if os.environ.get("CI") != "true" else __import__("distributed")

from gmemlab.explore.partitioned import PartitionedTable, explore_partitioned, owner  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gmemlab", "explore", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _cluster(**kw):
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, protocol="tcp", host="127.0.0.1",
                                    dashboard_address=None, **kw)


@pytest.fixture(scope="module")
def client():
    # worker threads in this process, reached over TCP on loopback (the CLI test connects too)
    with _cluster(processes=False) as cluster, distributed.Client(cluster) as c:
        yield c


def _json(x) -> str:
    return json.dumps(x.to_json(), sort_keys=True)


CASES = [  # (proposal, platform, pages, symmetry, max_states)
    ("private-first", "snp", 1, True, None),
    ("populate-converts", "snp", 2, True, None),
    ("userspace-converts", "snp", 2, True, None),
    ("userspace-converts", "snp", 1, False, None),
    ("private-first", "sw_protected", 3, True, None),
    ("userspace-converts", "sw_protected", 3, False, None),
    ("private-first", "snp", 2, True, 1500),     # stops incomplete
]


@pytest.mark.parametrize("proposal,platform,pages,symmetry,max_states", CASES)
def test_same_exploration_as_one_process(client, proposal, platform, pages, symmetry, max_states):
    cfg, bounds = Config(proposal=proposal, platform=platform, series="v8"), Bounds(pages=pages)
    kw = {} if max_states is None else {"max_states": max_states}
    one = explore(cfg, bounds, symmetry=symmetry, **kw)
    many = explore_partitioned(cfg, bounds, symmetry=symmetry, client=client, **kw)
    assert many.incomplete == one.incomplete == (max_states is not None)
    assert _json(many) == _json(one)


def test_keys_are_spread_over_both_workers(client):
    spec = Spec(Config(proposal="private-first", platform="sw_protected"), Bounds(pages=3), symmetry=False)
    table = PartitionedTable(client)
    x = search(spec, table=table)
    sizes = table.sizes()
    assert len(set(table.workers)) == len(sizes) == 2
    assert all(n > 0 for n in sizes) and sum(sizes) == len(x.states) == len(table)
    assert min(sizes) > 0.4 * len(x.states)   # an even hash: neither worker holds nearly all
    table.close()
    table.close()                              # twice is fine; the counts are remembered
    assert table.sizes() == sizes
    with pytest.raises(UsageError, match="closed"):
        table.lookup(np.array([1], np.int64))


def test_table_answers_as_a_dict(client):
    """lookup/add against a plain dict, over keys of every sign, in several rounds."""
    rng = np.random.default_rng(7)
    known: dict[int, int] = {}
    with PartitionedTable(client) as table:
        assert table.lookup(np.empty(0, np.int64)).tolist() == []
        for _ in range(5):
            ask = rng.integers(-2**63, 2**63 - 1, 400, dtype=np.int64)
            ask[::3] = rng.choice(np.array(list(known) or [0], np.int64), len(ask[::3]))
            got = table.lookup(ask)
            assert got.dtype == np.int32
            assert got.tolist() == [known.get(int(k), -1) for k in ask]
            new = np.unique(ask[got < 0])
            sids = np.arange(len(known), len(known) + len(new), dtype=np.int32)
            table.add(new, sids)
            known.update(zip(new.tolist(), sids.tolist()))
        assert sum(table.sizes()) == len(known)


def test_owner_is_stable_and_even():
    keys = np.arange(100_000, dtype=np.int64) << 8      # regular bit fields, as state keys are
    part = owner(keys, 2)
    assert np.array_equal(part, owner(keys.copy(), 2))
    assert abs(int(part.sum()) - 50_000) < 1_000
    assert set(np.unique(owner(keys, 3)).tolist()) == {0, 1, 2}


def test_worker_processes_give_the_same_exploration():
    """Over worker processes; then a worker killed under a table is a UsageError at once."""
    cfg, bounds = Config(proposal="populate-converts", platform="sw_protected"), Bounds(pages=3)
    with _cluster(processes=True) as cluster, distributed.Client(cluster) as c:
        table = PartitionedTable(c)
        x = search(Spec(cfg, bounds, symmetry=True), table=table)
        assert all(n > 0 for n in table.sizes())
        table.close()
        assert _json(x) == _json(explore(cfg, bounds, symmetry=True))

        table = PartitionedTable(c, call_timeout=20)
        keys = np.arange(1000, dtype=np.int64)
        table.add(keys, keys.astype(np.int32))
        assert table.lookup(keys[::-1]).tolist() == list(range(999, -1, -1))
        os.kill(c.run(os.getpid)[table.workers[1]], signal.SIGKILL)
        with pytest.raises(UsageError, match="Dask cluster at tcp://127.0.0.1:.* failed while"):
            for _ in range(200):   # until the scheduler has seen the worker go
                table.lookup(keys)
                time.sleep(0.05)
        table.close()


def test_cli_json_is_byte_identical(client):
    args = ["--proposal", "userspace-converts", "--platform", "snp", "--pages", "2", "--json"]
    r = _cli(*args, "--scheduler", client.scheduler.address)
    one = _cli(*args)
    assert r.returncode == one.returncode == 1, r.stderr     # an invariant breaks: exit 1
    assert r.stdout == one.stdout and r.stdout


@pytest.mark.parametrize("address", ["not an address", "tcp://127.0.0.1:1", "http://127.0.0.1:8786"])
def test_bad_scheduler_is_exit_2(address):
    r = _cli("--pages", "1", "--scheduler", address, "--connect-timeout", "2")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.startswith("gmemlab: cannot reach the Dask scheduler")


def test_scheduler_without_workers_is_exit_2():
    with distributed.LocalCluster(n_workers=0, protocol="tcp", host="127.0.0.1", dashboard_address=None,
                                  processes=False) as cluster:
        r = _cli("--pages", "1", "--scheduler", cluster.scheduler_address, "--connect-timeout", "1")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "no workers" in r.stderr, r.stderr
