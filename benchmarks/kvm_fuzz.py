"""The kernel-vs-model fuzzer's speed and reach: random op sequences run on /dev/kvm
(gmemlab.kvm.runner) and replayed through the model of platform "default"
(gmemlab.kvm.differential.judge), the same vocabulary tests/test_kvm.py draws.

Prints one JSON object:

    {"kernel": release, "sequences": n, "seconds": s, "sequences_per_s": r,
     "events_run": n, "events_per_s": r, "divergences": n, "stops": {why: n},
     "pairs": {"op": ["outcome", ...]}, "pairs_reached": n}

where "pairs" is the coverage: every (op, outcome) the kernel gave at least once (an
outcome named coarsely: "ret=EINVAL", "ok+value", "signal=SIGBUS", "exit=MMIO"), and
"stops" counts where and why runs ended early (what the kernel cannot express). Exits 1
when a sequence diverged (its recording is printed to stderr), 2 without /dev/kvm.

Usage: python3 benchmarks/kvm_fuzz.py [--sequences N] [--seed K] [--max-ops N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> int:
    from gmemlab.kvm.differential import judge, random_events
    from gmemlab.kvm.runner import Kvm, KvmUnavailable

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-ops", type=int, default=10)
    args = ap.parse_args(argv)
    try:
        kvm = Kvm()
    except KvmUnavailable as e:
        print(f"kvm_fuzz: {e}", file=sys.stderr)
        return 2
    kvm.vcpu_memory_path  # probe once, before the clock starts
    rng = random.Random(args.seed)
    pairs: set = set()
    stops: Counter = Counter()
    events = divergences = 0
    t0 = time.perf_counter()
    for _ in range(args.sequences):
        v = judge(kvm, random_events(rng, args.max_ops))
        events += v.events_run
        pairs |= v.pairs
        if v.stopped:
            stops[v.stopped["why"].split(":")[0]] += 1
        if v.divergence:
            divergences += 1
            print(f"divergence {json.dumps(v.divergence)}:\n{v.text}", file=sys.stderr)
    dt = time.perf_counter() - t0
    by_op: dict = {}
    for op, out in sorted(pairs):
        by_op.setdefault(op, []).append(out)
    print(json.dumps({"kernel": kvm.release, "vcpu_memory_path": kvm.vcpu_memory_path,
                      "sequences": args.sequences, "seconds": round(dt, 3),
                      "sequences_per_s": round(args.sequences / dt, 1), "events_run": events,
                      "events_per_s": round(events / dt, 1), "divergences": divergences,
                      "stops": dict(stops.most_common()), "pairs": by_op, "pairs_reached": len(pairs)},
                     indent=1))
    kvm.close()
    return 1 if divergences else 0


if __name__ == "__main__":
    sys.exit(main())
