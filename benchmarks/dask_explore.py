"""The cost of holding the state table on a Dask cluster (``gmemlab explore --scheduler``).

One configuration (default: sw_protected, private-first, v8, 4 pages, no symmetry:
167,042 states) explored in this process and with its table partitioned over a
LocalCluster of worker processes on loopback (gmemlab.explore.partitioned), each timed
--repeats times after a 2-page warm-up; the cluster's start is timed apart. Prints one
JSON object: the seconds of every run, the medians, the overhead, the round trips and
keys sent, how many keys each worker held, and whether the two explorations' JSON is
the same bytes (it must be).

    python3 benchmarks/dask_explore.py [--pages 4] [--workers 2] [--repeats 3]

Standalone so that ``benchmarks/run.py`` can call it as a section later; it needs the
"sweep" extra (dask[distributed]).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proposal", default="private-first")
    ap.add_argument("--platform", default="sw_protected")
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--symmetry", action="store_true", help="symmetry on (default off)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from gmemlab.explore import Bounds, explore
    from gmemlab.explore.partitioned import PartitionedTable
    from gmemlab.explore.search import search
    from gmemlab.model.state import Config
    from gmemlab.spec import Spec

    cfg, bounds = Config(proposal=args.proposal, platform=args.platform, series="v8"), Bounds(pages=args.pages)
    explore(cfg, Bounds(pages=2), symmetry=args.symmetry)   # warm-up: imports, compiled code
    one = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        x1 = explore(cfg, bounds, symmetry=args.symmetry)
        one.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        start = time.perf_counter() - t0
        many, calls = [], {"lookups": 0, "keys": 0}
        for _ in range(args.repeats):
            table = PartitionedTable(client)
            lookup = table.lookup

            def counted(keys, lookup=lookup):
                calls["lookups"] += 1
                calls["keys"] += len(keys)
                return lookup(keys)
            table.lookup = counted
            t0 = time.perf_counter()
            xp = search(Spec(cfg, bounds, symmetry=args.symmetry), table=table)
            table.close()
            many.append(time.perf_counter() - t0)
            sizes = table.sizes()
    same = json.dumps(x1.to_json(), sort_keys=True) == json.dumps(xp.to_json(), sort_keys=True)
    m1, mp = statistics.median(one), statistics.median(many)
    print(json.dumps({
        "config": f"{args.proposal}/{args.platform}/v8/{args.pages}p" + ("" if args.symmetry else " no symmetry"),
        "states": len(x1.states), "workers": args.workers, "cpus": os.cpu_count(),
        "single_seconds": [round(t, 3) for t in one], "partitioned_seconds": [round(t, 3) for t in many],
        "single_median": round(m1, 3), "partitioned_median": round(mp, 3),
        "overhead_seconds": round(mp - m1, 3), "overhead_ratio": round(mp / m1, 2),
        "cluster_start_seconds": round(start, 2),
        "lookups_per_run": calls["lookups"] // args.repeats, "keys_per_run": calls["keys"] // args.repeats,
        "keys_per_worker": sizes, "same_json": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
