"""gmemlab sweep: the same results whichever engine ran them (in-process, process pool,
a Dask LocalCluster on loopback), the table, and misuse (exit 2)."""

import json
import os
import subprocess
import sys

import pytest

from gmemlab.errors import UsageError
from gmemlab.explore.manifest import key
from gmemlab.sweep import MissingExtra, matrix, parse_knob_sets, sweep, table_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "data", "manifest", "explore.json")) as _f:
    MANIFEST = json.load(_f)

POINTS = matrix(["private-first", "populate-converts", "userspace-converts"], ["snp", "sw_protected"], ["v8"],
                [1, 2], parse_knob_sets("none,refuse_unprepared_populate"))
ARGS = ["--proposals", "all", "--platforms", "snp,sw_protected", "--series", "v8", "--pages", "1,2",
        "--knobs", "none,refuse_unprepared_populate", "--json"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gmemlab", "sweep", *args], capture_output=True, text=True,
                          cwd=ROOT)


def _distributed():
    try:
        import distributed
    except ImportError:
        if os.environ.get("CI") == "true":
            raise  # the test extra brings dask[distributed]: CI must run these
        pytest.skip("needs the sweep extra (dask[distributed])")
    return distributed


@pytest.fixture(scope="module")
def serial():
    return sweep(POINTS, engine="serial")


def test_results_agree_with_the_manifest(serial):
    assert len(serial.results) == len(POINTS) == 24
    for r in serial.results:
        k = key(r["proposal"], r["platform"], r["series"], r["pages"], {n: True for n in r["knobs"]})
        if k in MANIFEST:
            assert (r["states"], r["transitions"], r["broken"]) == \
                   (MANIFEST[k]["states"], MANIFEST[k]["transitions"], MANIFEST[k]["broken"])


def test_process_pool_gives_the_same_json(serial):
    pool = sweep(POINTS, engine="processes", workers=2)
    assert json.dumps(pool.to_json()) == json.dumps(serial.to_json())
    assert table_text(pool) == table_text(serial)


def test_dask_local_cluster_gives_the_same_json(serial):
    distributed = _distributed()
    # worker threads in this process, reached over TCP on loopback (the CLI below connects too)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        via_dask = sweep(POINTS, engine="dask", scheduler=cluster.scheduler_address)
        assert json.dumps(via_dask.to_json()) == json.dumps(serial.to_json())
        # and through the command line, as a user would point it at a cluster
        r = _cli(*ARGS, "--scheduler", cluster.scheduler_address)
        assert r.returncode == 0, r.stderr
    out = _cli(*ARGS, "--workers", "2")
    assert out.returncode == 0, out.stderr
    assert r.stdout == out.stdout
    assert json.loads(out.stdout) == json.loads(json.dumps(serial.to_json()))


def test_table_text(serial):
    text = table_text(serial)
    assert text.splitlines()[0].split() == ["proposal", "platform", "series", "pages", "knobs", "states",
                                            "transitions", "launch", "broken"]
    assert "userspace-converts/snp/v8/2p: te_private_implies_kvm_private" in text


@pytest.mark.parametrize("args", [["--platforms", "snp,nope"], ["--pages", "0"], ["--pages", "2,x"],
                                  ["--knobs", "none,bogus"], ["--series", "v9"], ["--proposals", ""],
                                  ["--workers", "0"], ["--scheduler", "not an address", "--pages", "1"]])
def test_bad_parameters_are_exit_2(args):
    r = _cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("gmemlab")


def test_dask_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)   # import distributed -> ImportError
    with pytest.raises(MissingExtra, match=r"'sweep' extra") as e:
        sweep(POINTS[:1], engine="dask", scheduler="tcp://127.0.0.1:1")
    assert isinstance(e.value, ImportError) and isinstance(e.value, UsageError)
