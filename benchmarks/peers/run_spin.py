"""gmemlab's explorer against SPIN on the same semantics (benchmarks/peers/gmem_sw_v8.pml).

Explores private-first / sw_protected / series v8 at N pages (default 2) twice: with
gmemlab (``explore(..., symmetry=False)``, the action set of Bounds(pages=N)) and with
SPIN (the Promela model, one d_step per action; see the model's header for how its
state vector maps to gmemlab's and why SPIN counts exactly one state and two
transitions more). Prints one JSON object with both counts, the search time and peak
RSS of each side and the ratios gmemlab / SPIN; exit status 1 if the counts disagree,
2 (with {"error": ...}) if the page count is out of range or SPIN or a C compiler
cannot be had.

How each side is measured, so that the two figures are of the same thing:

- SPIN: pan, the verifier SPIN generates, compiled and run with SPIN's default
  settings for a reachability count ("SPIN default": ``-DSAFETY -DNOREDUCE``, the hash
  table and everything else as pan chooses, and a depth bound ``-m1000000``, raised
  fourfold and run again while pan says it cut the search short; only the complete
  run counts). Time: pan's own "elapsed time" of the search (its
  wall time as a process is given too). Memory: pan's peak RSS, from the kernel
  (``os.wait4`` on pan alone, so spin's and gcc's own peaks do not count), and pan's own
  "total actual memory usage" figure beside it.
- gmemlab: ``explore()`` in a child process of its own (this script with
  ``--gmemlab-child N``), after a warm-up exploration at 2 pages in the same child, so
  that imports and first-use costs are neither in the time nor in the per-state memory.
  Time: the N-page ``explore()`` call. Memory: the child's peak RSS; and bytes per
  stored state = (peak RSS - the child's RSS right after the warm-up) / states.

Usage: python3 benchmarks/peers/run_spin.py [--pages N] [--keep DIR]

SPIN comes from the Debian package ``spin``; run as root, this script installs it with
apt-get when it is missing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
from gmemlab.model.vocab import MAX_PAGES as GMEMLAB_MAX_PAGES  # noqa: E402  (after the path is set)

MODEL = os.path.join(HERE, "gmem_sw_v8.pml")
# The file of PAGE(k) lines the model #includes (its header says why), written per run.
PAGES_FILE = "gmem_sw_v8_pages.pml"
# The model's own bound: its page loops run "for (i : 0 .. NPAGES - 1)" over
# "hidden byte i", which ends at i == NPAGES, so NPAGES must fit in a byte.
MODEL_MAX_PAGES = 255
MAX_PAGES = min(MODEL_MAX_PAGES, GMEMLAB_MAX_PAGES)
# SPIN's extra state (before create_gmem) and extra transitions (the two creates), and
# the one it adds to its own transition figure (which is stored + matched: the initial
# state counts as stored without a transition into it).
EXTRA_STATES, EXTRA_TRANSITIONS, SPIN_TRANSITION_FIGURE_OFFSET = 1, 2, 1
# "SPIN default": pan as SPIN builds it for a safety search, nothing tuned (hash table
# -w24, depth-first); only the depth bound is raised so that it never cuts the search
# short. A depth-first search here goes about as deep as there are states (every state
# has many successors, one of them new most of the time), and pan allocates and zeroes
# its stack for the whole bound up front (pan.c: trail = emalloc((maxdepth+3)*...)), so
# the bound starts at 1,000,000 and grows fourfold only when pan reports "max search
# depth too small": its stack is then never much bigger than the search needs, and
# only the complete run is measured.
PAN_CFLAGS = ("-O2", "-DSAFETY", "-DNOREDUCE")
PAN_DEPTH, PAN_DEPTH_GROWTH, PAN_DEPTH_MAX = 1_000_000, 4, 1 << 30


class Refused(Exception):
    """A request this script cannot honour: exit 2 with {"error": message}."""


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


def check_pages(pages: int) -> None:
    if not 1 <= pages <= MAX_PAGES:
        raise Refused(f"--pages {pages}: the peer supports 1..{MAX_PAGES} pages (gmemlab explores at most "
                      f"gmemlab.model.vocab.MAX_PAGES = {GMEMLAB_MAX_PAGES}; the Promela model at most "
                      f"{MODEL_MAX_PAGES}, its page loop index being a byte)")


def pages_file_text(pages: int) -> str:
    """The PAGE(0) .. PAGE(pages-1) lines, behind a guard that stops the preprocessor if
    the model is generated with another -DNPAGES than the file was written for."""
    return (f"/* written by benchmarks/peers/run_spin.py for NPAGES = {pages} */\n"
            f"#if NPAGES != {pages}\n#error \"{PAGES_FILE} was written for NPAGES = {pages}\"\n#endif\n"
            + "".join(f"    PAGE({k})\n" for k in range(pages)))


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


# pan keeps its counts in doubles (exact far beyond these models) but prints them with
# "%9.8g": 8 significant digits, so from 10^8 transitions on (5 pages) the figure is
# rounded (1.3129502e+08). The generated pan.c is given "%9.0f" for these three lines.
PAN_ROUNDED_COUNT = re.compile(r'"%9\.8g( states, stored\\n| states, matched\\n| transitions \(= stored\+matched\)\\n)"')


def exact_counts(pan_c: str) -> None:
    """Make the generated verifier print its state and transition counts in full."""
    with open(pan_c) as f:
        text = f.read()
    text, n = PAN_ROUNDED_COUNT.subn(r'"%9.0f\1"', text)
    if n != 3:
        raise RuntimeError(f"pan.c of this SPIN version does not print its counts as expected "
                           f"({n} of 3 count lines found): cannot make them exact")
    with open(pan_c, "w") as f:
        f.write(text)


def run_pan(workdir: str, depth: int):
    """(output, rusage, wall seconds) of one run of ./pan with depth bound ``depth``.

    pan's output goes to a file (no pipe to drain) and pan is waited for with wait4,
    whose rusage is pan's alone (RUSAGE_CHILDREN would mix in spin's and gcc's peaks)."""
    log = os.path.join(workdir, "pan.out")
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(["./pan", f"-m{depth}"], cwd=workdir, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    with open(log) as f:
        out = f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"pan exited with {proc.returncode}:\n{out[-2000:]}")
    return out, usage, wall


def run_spin(pages: int, workdir: str) -> dict:
    spin, cc = ensure_spin(), shutil.which("gcc") or shutil.which("cc")
    if not spin or not cc:
        raise Refused("needs spin (Debian package 'spin') and a C compiler")
    shutil.copy(MODEL, workdir)
    with open(os.path.join(workdir, PAGES_FILE), "w") as f:
        f.write(pages_file_text(pages))
    model = os.path.basename(MODEL)
    t0 = time.perf_counter()
    # -o2: keep write-only variables in the state vector (init_shared is never read
    # after create_gmem, but gmemlab's VmState keeps gmem_flags, so it tells states apart).
    subprocess.run([spin, "-o2", f"-DNPAGES={pages}", "-a", model], cwd=workdir, check=True,
                   capture_output=True, text=True)
    exact_counts(os.path.join(workdir, "pan.c"))
    subprocess.run([cc, *PAN_CFLAGS, "-o", "pan", "pan.c"], cwd=workdir, check=True,
                   capture_output=True, text=True)
    t1 = time.perf_counter()
    depth, shallow = PAN_DEPTH, []
    while True:
        out, usage, wall = run_pan(workdir, depth)
        if "max search depth too small" not in out:
            break
        shallow.append(depth)
        depth *= PAN_DEPTH_GROWTH
        if depth > PAN_DEPTH_MAX:
            raise RuntimeError(f"pan's search depth (-m) is too small for this model even at {shallow[-1]:,}")

    def figure(pattern: str, kind=int):
        m = re.search(pattern, out)
        if not m:
            raise RuntimeError(f"no '{pattern}' in pan's output:\n{out}")
        return kind(m.group(1))
    errors = figure(r"errors: (\d+)")
    stored, transitions = figure(r"(\d+) states, stored"), figure(r"(\d+) transitions")
    return {"settings": f"SPIN default: spin -o2 -a; gcc {' '.join(PAN_CFLAGS)}; pan -m{depth}",
            "depth_bound": depth, "depth_bounds_too_small": shallow,
            "depth_reached": figure(r"depth reached (\d+)"),
            "states_stored": stored, "transitions_figure": transitions, "errors": errors,
            "states": stored - EXTRA_STATES,
            "transitions": transitions - SPIN_TRANSITION_FIGURE_OFFSET - EXTRA_TRANSITIONS,
            "generate_compile_seconds": round(t1 - t0, 3),
            "search_seconds": figure(r"elapsed time ([0-9.e+-]+) seconds", float),
            "pan_wall_seconds": round(wall, 4),
            "peak_rss_mib": _mib(usage.ru_maxrss),
            "pan_total_memory_mb": figure(r"([0-9.]+)\s+total actual memory usage", float),
            "version": subprocess.run([spin, "-V"], capture_output=True, text=True).stdout.strip()}


def _current_rss_kib() -> float:
    """This process's resident set now (Linux /proc), or its peak so far elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def gmemlab_child(pages: int) -> dict:
    """One exploration, measured in this (child) process: see the module docstring."""
    from gmemlab.explore import Bounds, explore
    from gmemlab.model.state import Config

    cfg = Config(proposal="private-first", platform="sw_protected", series="v8")
    explore(cfg, Bounds(pages=2), symmetry=False)   # imports and first-use costs out of the figures
    gc.collect()
    base = _current_rss_kib()
    t0 = time.perf_counter()
    x = explore(cfg, Bounds(pages=pages), symmetry=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    states = len(x.states)
    return {"states": states, "transitions": x.transitions, "seconds": round(seconds, 4),
            "engine": x.engine, "broken": sorted(x.violations),
            "peak_rss_mib": _mib(peak), "rss_after_warmup_mib": _mib(base),
            # the kernel's RSS counters lag by a few pages per thread, so at small counts
            # (where the exploration adds next to nothing) the difference can dip below 0
            "bytes_per_state": round(max(0, peak - base) * 1024 / states, 1) if states else None,
            # the search's own count of its store (gmemlab.explore.search: keys, parents,
            # actions, goal bits, the table, the non-goal states' ways out), buffers' slack
            # included: what a stored state costs, without the fixed costs around it
            "store_bytes_per_state": round(x.store_bytes / states, 1) if states else None}


def run_gmemlab(pages: int) -> dict:
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--gmemlab-child", str(pages)],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"gmemlab's exploration failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def compare(pages: int = 2, keep: str | None = None) -> dict:
    check_pages(pages)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = keep or tmp
        os.makedirs(workdir, exist_ok=True)
        spin = run_spin(pages, workdir)
    gml = run_gmemlab(pages)    # after pan has exited: the two never share the machine
    return {"config": {"proposal": "private-first", "platform": "sw_protected", "series": "v8",
                       "pages": pages, "symmetry": False},
            "gmemlab": gml, "spin": spin,
            "ratios": {"time": round(gml["seconds"] / spin["search_seconds"], 3) if spin["search_seconds"] else None,
                       "rss": round(gml["peak_rss_mib"] / spin["peak_rss_mib"], 3)},
            "agree": spin["states"] == gml["states"] and spin["transitions"] == gml["transitions"]
            and spin["errors"] == 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=2, help=f"pages of the guest_memfd (1..{MAX_PAGES})")
    ap.add_argument("--keep", metavar="DIR", help="generate and compile the verifier here and keep it")
    ap.add_argument("--gmemlab-child", type=int, metavar="N", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gmemlab_child is not None:
        print(json.dumps(gmemlab_child(args.gmemlab_child)))
        return 0
    try:
        res = compare(args.pages, args.keep)
    except Refused as e:
        print(f"run_spin.py: {e}", file=sys.stderr)
        print(json.dumps({"error": str(e)}))
        return 2
    except (RuntimeError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", None) or getattr(e, "stdout", None) or ""
        print(json.dumps({"error": f"{e}\n{detail}".strip()}))
        return 2
    print(json.dumps(res))
    return 0 if res["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
