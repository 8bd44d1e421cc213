"""Guest-scale replay: how fast check-trace's range engine replays a 64 GiB guest's boot.

Makes a guest-boot trace (default 16M pages = 64 GiB, 1,000,000 events) in a temporary
folder, then, in a child process (so that making the trace does not count in its peak
RSS), reads it line by line with the trace reader (gmemlab.traces.format: the typed
msgspec decoder, the strict path where it cannot vouch for a line) and replays it on
runs with every invariant judged (gmemlab.traces.replay.replay_ranges: what check-trace
does for a large file). For scale, it also times bare json.loads over the same lines. Prints one JSON
object:

    {"events": n, "seconds": s, "events_per_s": r, "json_loads_events_per_s": r0,
     "ratio": r / r0, "peak_rss_mib": m, ...}

Usage: python3 benchmarks/replay_scale.py [--pages N] [--events N] [--seed K] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def child(path: str, proposal: str) -> None:
    """Replay the file on runs; print its figures, peak RSS of this process included."""
    import resource

    from gmemlab.traces.format import iter_file
    from gmemlab.traces.replay import config_for, replay_ranges

    t0 = time.perf_counter()
    events = iter_file(path)
    header = next(events)
    report = replay_ranges(config_for(header, proposal), events, path)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"events": report.events, "seconds": seconds, "peak_rss_mib": rss / 1024,
                      "conforms": report.conforms, "violations": len(report.violations),
                      "runs": len(report.state.runmap)}))


def json_loads_rate(path: str) -> float:
    """Events per second of json.loads alone over the event lines (the floor of any reader)."""
    n = 0
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        next(f)
        for line in f:
            json.loads(line)
            n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=1 << 24)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--platform", default="snp")
    ap.add_argument("--proposal", default="private-first")
    ap.add_argument("--keep", metavar="DIR", help="write the trace here and keep it")
    ap.add_argument("--child", metavar="TRACE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.proposal)
        return

    from gmemlab.traces.emulate import emulate_lines

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        path = os.path.join(folder, f"guest_boot_{args.pages}p_{args.events}ev.jsonl")
        t0 = time.perf_counter()
        with open(path, "w", encoding="utf-8") as f:
            for line in emulate_lines("guest-boot", args.proposal, args.platform, pages=args.pages,
                                      seed=args.seed, events=args.events):
                f.write(line)
        gen_seconds = time.perf_counter() - t0
        r0 = json_loads_rate(path)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path,
                              "--proposal", args.proposal], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout)
        r = res["events"] / res["seconds"]
        print(json.dumps({"events": res["events"], "seconds": round(res["seconds"], 2),
                          "events_per_s": round(r), "json_loads_events_per_s": round(r0),
                          "ratio": round(r / r0, 4), "peak_rss_mib": round(res["peak_rss_mib"], 1),
                          "pages": args.pages, "trace_mib": round(os.path.getsize(path) / 2**20, 1),
                          "runs_at_end": res["runs"], "conforms": res["conforms"],
                          "violations": res["violations"], "generate_seconds": round(gen_seconds, 1)}))


if __name__ == "__main__":
    main()
