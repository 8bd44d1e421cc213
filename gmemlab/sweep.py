"""gmemlab sweep: one exploration per point of a parameter matrix, run in parallel.

The matrix is proposal x platform x series x pages x knob set; every point is one
``explore()`` (symmetry on, the explorer's default bounds otherwise) summarized as
states, transitions, the invariants it breaks, the "sometimes" properties it never
reaches and the calls needed to launch. Points run on a process pool by default, in
this process with ``engine="serial"``, or on a Dask distributed cluster given its
scheduler address (``engine="dask"``; the "sweep" extra). Whichever engine ran them,
the results are the same data in the same order (sorted by point), with no timings:
``to_json`` and ``table_text`` of two runs are byte-identical.

Proposals, platforms, series, knobs and the page limit come from the one registry
(gmemlab.model.vocab). A designer's variants (``gmemlab sweep --variants FILE.py``) are
registered in this process; each Point carries the variants files too, so that a worker
process (or a Dask worker: the path must exist there) loads them before it explores.

>>> r = sweep(matrix(["private-first", "userspace-converts"], ["snp"], ["v8"], [1], [()]), engine="serial")
>>> [(p["proposal"], p["states"], p["broken"]) for p in r.results]
[('private-first', 198, []), ('userspace-converts', 246, ['te_private_implies_kvm_private', 'host_never_touches_te_private', 'populate_targets_private'])]
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from gmemlab.errors import UsageError
from gmemlab.model import vocab
from gmemlab.model.state import Config
from gmemlab.model.vocab import KNOBS, MAX_PAGES

ENGINES = ("processes", "serial", "dask")
CONNECT_TIMEOUT = 10.0    # seconds: one deadline for reaching a Dask scheduler (connect + handshake)


class MissingExtra(UsageError, ImportError):
    """An optional dependency is missing; the message names the extra that brings it."""


@dataclass(frozen=True, order=True)
class Point:
    """One configuration of the matrix."""

    proposal: str
    platform: str
    series: str
    pages: int
    knobs: tuple = ()        # names of the knobs turned on, sorted
    variants: tuple = ()     # variants files (absolute paths) a worker loads before exploring

    def label(self) -> str:
        return "/".join([self.proposal, self.platform, self.series, f"{self.pages}p"] + list(self.knobs))


def parse_knob_sets(text: str) -> list[tuple]:
    """Knob sets from the command line: comma between sets, '+' within one, 'none' empty.

    >>> parse_knob_sets("none,refuse_unprepared_populate+convert-after-populate")
    [(), ('convert_after_populate', 'refuse_unprepared_populate')]

    A knob is named as in Config (``huge_folios``) or as its flag without the dashes
    in front (``huge-folios``).
    """
    sets = []
    for item in _items(text, "knobs"):
        names = () if item == "none" else tuple(sorted({n.strip().replace("-", "_") for n in item.split("+")}))
        for name in names:
            if name not in KNOBS:
                raise UsageError(f"unknown knob {name!r}; known: {', '.join(KNOBS)} (or 'none')")
        sets.append(names)
    return sets


def _items(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise UsageError(f"--{what}: empty item in {text!r}")
    return items


def parse_list(text: str, what: str, known: tuple) -> list[str]:
    """A comma list of known names ('all' for every one)."""
    if text.strip() == "all":
        return list(known)
    items = _items(text, what)
    for t in items:
        if t not in known:
            raise UsageError(f"--{what}: unknown {what.rstrip('s')} {t!r}; known: {', '.join(known)}")
    return items


def parse_pages(text: str) -> list[int]:
    pages = []
    for t in _items(text, "pages"):
        if not t.isdigit() or not 1 <= int(t) <= MAX_PAGES:
            raise UsageError(f"--pages: {t!r} is not a page count in 1..{MAX_PAGES}")
        pages.append(int(t))
    return pages


def matrix(proposals, platforms, series, pages, knob_sets, variants: tuple = ()) -> list[Point]:
    """Every combination, validated (a bad value is a UsageError naming it), sorted, unique.

    ``variants``: files of proposal variants (already loaded here, see
    gmemlab.model.vocab.load_variants) that each worker loads too.
    """
    variants = tuple(os.path.abspath(v) for v in variants)
    points = set()
    for pr, pl, se, n, kn in itertools.product(proposals, platforms, series, pages, knob_sets):
        Config(proposal=pr, platform=pl, series=se, **{k: True for k in kn})  # validates
        if not 1 <= n <= MAX_PAGES:
            raise UsageError(f"pages must be 1..{MAX_PAGES}, got {n}")
        points.add(Point(pr, pl, se, n, tuple(sorted(kn)),
                         variants if pr not in vocab.PROPOSALS else ()))
    if not points:
        raise UsageError("the matrix is empty")
    return sorted(points)


def run_point(point: Point) -> dict:
    """Explore one point and summarize it (the unit of work every engine runs)."""
    from gmemlab.explore import Bounds, explore
    from gmemlab.explore.compare import calls_to_launch
    from gmemlab.invariants import INVARIANT_NAMES, SOMETIMES

    if point.proposal not in vocab.proposal_names():
        for path in point.variants:  # a fresh worker process: load the designer's variants
            vocab.load_variants(path)
    cfg = Config(proposal=point.proposal, platform=point.platform, series=point.series,
                 **{k: True for k in point.knobs})
    x = explore(cfg, Bounds(pages=point.pages))
    if x.incomplete:
        raise UsageError(f"point {point.label()}: more than {len(x.states):,} states, beyond what one "
                         "exploration takes: use fewer pages")
    return {"proposal": point.proposal, "platform": point.platform, "series": point.series,
            "pages": point.pages, "knobs": list(point.knobs),
            "states": len(x.states), "transitions": x.transitions,
            "broken": [n for n in INVARIANT_NAMES if not x.holds(n)],
            "unreached": [p.name for p in SOMETIMES if p.name not in x.witnesses],
            "calls_to_launch": calls_to_launch(x)[0]}


BUDGET_SECONDS = 300      # a sweep estimated beyond this (wall clock) asks for --yes
MAX_POINT_STATES = 5_000_000   # what one point's explore() takes (its default max_states)


def estimate(points: list[Point], workers: int) -> tuple[int, float]:
    """(estimated states of the largest point, estimated wall-clock seconds on workers),
    from gmemlab.explore.estimate, before any work."""
    from gmemlab.explore.estimate import SECONDS_PER_STATE, estimate_states
    per = [estimate_states(p.proposal, p.platform, p.series, p.pages) for p in points]
    busy = sum(per) * SECONDS_PER_STATE
    return max(per), max(busy / max(1, workers), max(per) * SECONDS_PER_STATE)


def check_budget(points: list[Point], workers: int, yes: bool, budget: float = BUDGET_SECONDS) -> str:
    """The line announcing the work (for stderr); a UsageError when a point cannot be
    explored, or when the whole is over budget and ``yes`` was not given."""
    from gmemlab.explore.estimate import describe, estimate_states
    for p in points:
        est = estimate_states(p.proposal, p.platform, p.series, p.pages)
        if est > MAX_POINT_STATES and not yes:
            raise UsageError(f"point {p.label()} is estimated at {describe(est)}, beyond the "
                             f"{MAX_POINT_STATES:,} states one exploration takes: use fewer pages "
                             "(or pass --yes to try: such a point fails if it goes beyond)")
    biggest, secs = estimate(points, workers)
    line = (f"gmemlab sweep: {len(points)} point(s) x up to {biggest:,} states each: "
            f"about {secs:,.0f} s on {workers} worker(s)")
    if secs > budget and not yes:
        raise UsageError(f"{line[len('gmemlab sweep: '):]}, over the budget of {budget:,.0f} s: "
                         "narrow the matrix, or pass --yes to run it anyway")
    return line


@dataclass
class SweepResult:
    points: list
    results: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"points": len(self.points), "results": self.results}


def sweep(points: list[Point], engine: str = "processes", workers: int | None = None,
          scheduler: str | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> SweepResult:
    """Run every point on the chosen engine; results sorted by point."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine == "dask" and not scheduler:
        raise UsageError("the dask engine needs a scheduler address (--scheduler tcp://HOST:PORT)")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    points = sorted(points)
    if engine == "serial":
        results = [run_point(p) for p in points]
    elif engine == "processes":
        results = _run_processes(points, workers)
    else:
        results = _run_dask(points, scheduler, connect_timeout)
    return SweepResult(points, results)


def _worker_init(parent: int) -> None:
    """In each pool worker: leave Ctrl-C to the parent (it stops the pool), and die with
    the parent (PR_SET_PDEATHSIG on Linux; elsewhere a thread watching getppid)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:   # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, taken as an interruption (exit 130)."""


def _run_processes(points: list[Point], workers: int | None) -> list[dict]:
    """On a pool of worker processes. SIGINT or SIGTERM stops it at once: every worker
    is killed (no queued point runs) and KeyboardInterrupt propagates."""
    import multiprocessing

    workers = workers or min(len(points), os.cpu_count() or 1)
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    old_term = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum, frame):
            raise _Terminated()
        old_term = signal.signal(signal.SIGTERM, on_term)
    pool = None
    try:
        pool = ctx.Pool(workers, initializer=_worker_init, initargs=(os.getpid(),))
        pending = pool.map_async(run_point, points, chunksize=1)
        while True:   # a bounded wait, so that a signal is seen promptly
            try:
                results = pending.get(0.2)
                break
            except multiprocessing.TimeoutError:
                continue
        pool.close()
        pool.join()
        return results
    finally:
        if pool is not None:
            pool.terminate()   # a no-op once joined; on an interruption it kills the workers
            pool.join()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def dask_client(scheduler: str, connect_timeout: float, who: str):
    """A distributed.Client of the scheduler, connected within connect_timeout (_connect);
    MissingExtra naming ``who`` without the 'sweep' extra."""
    try:
        from distributed import Client
    except ImportError as e:
        raise MissingExtra(f"{who} needs the 'sweep' extra: pip install 'gmemlab[sweep]' "
                           f"(dask[distributed]); {e}") from None
    return _connect(Client, scheduler, connect_timeout)


def _run_dask(points: list[Point], scheduler: str, connect_timeout: float = CONNECT_TIMEOUT) -> list[dict]:
    client = dask_client(scheduler, connect_timeout, "the dask engine")
    try:
        futures = client.map(run_point, points, pure=False)
        return client.gather(futures)
    finally:
        client.close()


def _connect(Client, scheduler: str, timeout: float):
    """A Client of the scheduler, within one deadline for the TCP connection and the
    handshake; every failure (refused, silent peer, garbage, not a scheduler) is a
    UsageError naming the address."""
    import socket
    from urllib.parse import urlsplit

    where = f"cannot reach the Dask scheduler at {scheduler!r}"
    if not timeout > 0:
        raise UsageError(f"--connect-timeout must be > 0, got {timeout}")
    addr = scheduler if "://" in scheduler else "tcp://" + scheduler
    u = urlsplit(addr)
    try:
        host, port = u.hostname, u.port
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    if u.scheme not in ("tcp", "tls") or not host or port is None:
        raise UsageError(f"{where}: expected tcp://HOST:PORT")
    deadline = time.monotonic() + timeout
    try:   # fail fast (and clearly) when nothing listens
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise UsageError(f"{where}: {e.strerror or e}") from None
    box: dict = {}

    def attempt():
        try:
            box["client"] = Client(addr, timeout=max(0.5, deadline - time.monotonic()))
        except BaseException as e:  # noqa: BLE001 - reported below as a UsageError
            box["error"] = e
    t = threading.Thread(target=attempt, name="gmemlab-dask-connect", daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()))
    if t.is_alive() or "client" not in box:
        err = box.get("error")
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        why = (f"no answer within {timeout:g} s (is it a Dask scheduler?)" if err is None
               else f"{detail}" if isinstance(err, (OSError, TimeoutError))
               else f"the peer does not speak the Dask protocol ({detail})")
        if len(why) > 300:
            why = why[:300] + "..."
        raise UsageError(f"{where}: {why}")
    return box["client"]


def table_text(r: SweepResult) -> str:
    """One row per point; the broken invariants (and the sometimes never reached) below."""
    head = ["proposal", "platform", "series", "pages", "knobs", "states", "transitions", "launch", "broken"]
    rows = []
    for res in r.results:
        rows.append([res["proposal"], res["platform"], res["series"], str(res["pages"]),
                     "+".join(res["knobs"]) or "-", f"{res['states']:,}", f"{res['transitions']:,}",
                     "-" if res["calls_to_launch"] is None else str(res["calls_to_launch"]),
                     str(len(res["broken"]))])
    width = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    right = {3, 5, 6, 7, 8}

    def fmt(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, width))).rstrip()
    out = [fmt(head), fmt(["-" * w for w in width])] + [fmt(row) for row in rows]
    broken = [(Point(res["proposal"], res["platform"], res["series"], res["pages"], tuple(res["knobs"])).label(),
               res["broken"]) for res in r.results if res["broken"]]
    if broken:
        out.append("")
        out.append("broken invariants:")
        for label, names in broken:
            out.append(f"  {label}: {', '.join(names)}")
    return "\n".join(out) + "\n"
