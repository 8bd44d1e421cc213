"""gmemlab's explorer against SPIN on the same semantics (benchmarks/peers/gmem_sw_v8.pml).

Explores private-first / sw_protected / series v8 at N pages (default 2) twice: with
gmemlab (``explore(..., symmetry=False)``, the action set of Bounds(pages=N)) and with
SPIN (the Promela model, one d_step per action; see the model's header for how its
state vector maps to gmemlab's and why SPIN counts exactly one state and two
transitions more). Prints one JSON object with both counts and times; exit status 1
if the counts disagree, 2 if SPIN or a C compiler cannot be had.

Usage: python3 benchmarks/peers/run_spin.py [--pages N] [--keep DIR]

SPIN comes from the Debian package ``spin``; run as root, this script installs it with
apt-get when it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
MODEL = os.path.join(HERE, "gmem_sw_v8.pml")
# SPIN's extra state (before create_gmem) and extra transitions (the two creates), and
# the one it adds to its own transition figure (which is stored + matched: the initial
# state counts as stored without a transition into it).
EXTRA_STATES, EXTRA_TRANSITIONS, SPIN_TRANSITION_FIGURE_OFFSET = 1, 2, 1


def ensure_spin() -> str | None:
    """The path of spin, installing the Debian package as root if needed."""
    spin = shutil.which("spin")
    if spin:
        return spin
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "spin"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("spin")


def run_spin(pages: int, workdir: str) -> dict:
    spin, cc = ensure_spin(), shutil.which("gcc") or shutil.which("cc")
    if not spin or not cc:
        raise RuntimeError("needs spin (Debian package 'spin') and a C compiler")
    shutil.copy(MODEL, workdir)
    model = os.path.basename(MODEL)
    t0 = time.perf_counter()
    # -o2: keep write-only variables in the state vector (init_shared is never read
    # after create_gmem, but gmemlab's VmState keeps gmem_flags, so it tells states apart).
    subprocess.run([spin, "-o2", f"-DNPAGES={pages}", "-a", model], cwd=workdir, check=True,
                   capture_output=True, text=True)
    subprocess.run([cc, "-O2", "-DSAFETY", "-DNOREDUCE", "-o", "pan", "pan.c"], cwd=workdir,
                   check=True, capture_output=True, text=True)
    t1 = time.perf_counter()
    out = subprocess.run(["./pan", "-m1000000"], cwd=workdir, check=True, capture_output=True,
                         text=True).stdout
    t2 = time.perf_counter()
    if "max search depth too small" in out:
        raise RuntimeError("pan's search depth (-m) is too small for this model")

    def figure(pattern: str) -> int:
        m = re.search(pattern, out)
        if not m:
            raise RuntimeError(f"no '{pattern}' in pan's output:\n{out}")
        return int(m.group(1))
    errors = figure(r"errors: (\d+)")
    stored, transitions = figure(r"(\d+) states, stored"), figure(r"(\d+) transitions")
    return {"states_stored": stored, "transitions_figure": transitions, "errors": errors,
            "states": stored - EXTRA_STATES,
            "transitions": transitions - SPIN_TRANSITION_FIGURE_OFFSET - EXTRA_TRANSITIONS,
            "generate_compile_seconds": round(t1 - t0, 3),
            "search_seconds": float(re.search(r"elapsed time ([0-9.e+-]+) seconds", out).group(1)),
            "pan_wall_seconds": round(t2 - t1, 4),
            "version": subprocess.run([spin, "-V"], capture_output=True, text=True).stdout.strip()}


def run_gmemlab(pages: int) -> dict:
    from gmemlab.explore import Bounds, explore
    from gmemlab.model.state import Config

    cfg = Config(proposal="private-first", platform="sw_protected", series="v8")
    explore(cfg, Bounds(pages=2), symmetry=False)   # imports and first-use costs out of the timing
    t0 = time.perf_counter()
    x = explore(cfg, Bounds(pages=pages), symmetry=False)
    seconds = time.perf_counter() - t0
    return {"states": len(x.states), "transitions": x.transitions, "seconds": round(seconds, 4),
            "engine": x.engine, "broken": [p for p in x.violations]}


def compare(pages: int = 2, keep: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = keep or tmp
        os.makedirs(workdir, exist_ok=True)
        spin = run_spin(pages, workdir)
    gml = run_gmemlab(pages)
    return {"config": {"proposal": "private-first", "platform": "sw_protected", "series": "v8",
                       "pages": pages, "symmetry": False},
            "gmemlab": gml, "spin": spin,
            "agree": spin["states"] == gml["states"] and spin["transitions"] == gml["transitions"]
            and spin["errors"] == 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=2)
    ap.add_argument("--keep", metavar="DIR", help="generate and compile the verifier here and keep it")
    args = ap.parse_args()
    try:
        res = compare(args.pages, args.keep)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps(res))
    return 0 if res["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
