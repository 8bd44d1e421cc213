"""The command line of INTERFACES.md: ``gmemlab`` and ``python -m gmemlab``.

Exit status: 0 all is well; 1 a trace diverges or an invariant breaks; 2 unusable input
or a misuse of the command line (the message names file, line and problem). No
traceback reaches the user: an internal error prints one line and exits 70 (set
GMEMLAB_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from gmemlab.errors import GmemlabError, InputError, UsageError
from gmemlab.model.state import PLATFORMS, PROPOSALS, SERIES

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 70


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _knob_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("knobs")
    g.add_argument("--refuse-unprepared-populate", action="store_true",
                   help="the v9 alternative: a NULL-source populate of a page not up to date is EOPNOTSUPP")
    g.add_argument("--convert-after-populate", action="store_true",
                   help="populate-converts: the TE takes the page before the conversion (literal call proposal)")
    g.add_argument("--huge-folios", action="store_true",
                   help="one huge folio backs the file: report whether launch keeps it intact")
    g.add_argument("--allocation-failures", action="store_true",
                   help="explore also tries each conversion with its allocation failing (ENOMEM)")


def _knobs(args) -> dict:
    return {"refuse_unprepared_populate": args.refuse_unprepared_populate,
            "convert_after_populate": args.convert_after_populate,
            "huge_folios": args.huge_folios,
            "allocation_failures": args.allocation_failures}


def _emit(text: str, out_path: str | None = None) -> None:
    if out_path:
        from gmemlab.fsutil import atomic_write
        atomic_write(out_path, text)
    else:
        sys.stdout.write(text)


def _json_text(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


# --- check-trace ----------------------------------------------------------------------

def cmd_check_trace(args) -> int:
    from gmemlab.render.text import check_report_text
    from gmemlab.traces.format import iter_file
    from gmemlab.traces.replay import config_for, replay

    path = args.file
    # Two streaming passes: the whole file is validated before anything is judged (an
    # unusable trace is exit 2 even when its first events would already diverge), and a
    # guest-scale trace is never held in memory.
    header = None
    for item in iter_file(path):
        header = header or item
    try:
        cfg = config_for(header, args.proposal, args.series, **_knobs(args))
    except UsageError as e:
        raise InputError(path, header["line"], str(e)) from None
    events = iter_file(path)
    next(events)
    report = replay(cfg, events, path)
    _emit(_json_text(report.to_json()) if args.json else check_report_text(report, header))
    return EXIT_OK if report.ok else EXIT_FAIL


# --- import -----------------------------------------------------------------------------

def cmd_import(args) -> int:
    from gmemlab.traces.importers import run_import

    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(args.file, 0, f"cannot read: {e.strerror}") from None
    text, skipped = run_import(data, args.file, args.kind, args.platform)
    _emit(text, args.output)
    if args.json:
        sys.stderr.write(_json_text({"skipped": dict(sorted(skipped.items()))}))
    elif skipped:
        total = sum(skipped.values())
        names = ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items()))
        sys.stderr.write(f"gmemlab import: skipped {total} line(s) of events it does not convert: {names}\n")
    return EXIT_OK


# --- explore / compare ------------------------------------------------------------------

def _explore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--platform", default="snp", choices=PLATFORMS)
    p.add_argument("--series", default="v8", choices=SERIES)
    p.add_argument("--pages", type=int, default=2, help="pages of the guest_memfd (1-6)")
    p.add_argument("--no-symmetry", action="store_true", help="turn symmetry reduction off")
    p.add_argument("--ranges", choices=("page+file", "all"), default="page+file",
                   help="range calls on single pages and the whole file (default), or on every "
                        "contiguous range (turns symmetry off)")
    p.add_argument("--no-direct-map", action="store_true",
                   help="create the guest_memfd with NO_DIRECT_MAP (another series)")
    p.add_argument("--processes", type=int, default=1,
                   help="host processes that map the file (2 adds a forked child)")
    p.add_argument("--json", action="store_true")
    _knob_options(p)


def _bounds(args):
    from gmemlab.explore.bfs import Bounds
    if not 1 <= args.pages <= 6:
        raise UsageError(f"--pages must be 1..6, got {args.pages}")
    if not 1 <= args.processes <= 2:
        raise UsageError(f"--processes must be 1 or 2, got {args.processes}")
    return Bounds(pages=args.pages, no_direct_map=args.no_direct_map,
                  processes=("vmm", "child")[:args.processes], ranges=args.ranges)


def cmd_explore(args) -> int:
    from gmemlab.explore.bfs import explore
    from gmemlab.model.state import Config
    from gmemlab.render.text import explore_text

    cfg = Config(proposal=args.proposal, platform=args.platform, series=args.series, **_knobs(args))
    result = explore(cfg, _bounds(args), symmetry=not args.no_symmetry,
                     progress=not args.json and sys.stderr.isatty())
    _emit(_json_text(result.to_json()) if args.json else explore_text(result))
    return EXIT_OK


def cmd_compare(args) -> int:
    from gmemlab.explore.compare import compare
    from gmemlab.render.text import compare_text

    table = compare(args.platform, args.series, _bounds(args), knobs=_knobs(args),
                    symmetry=not args.no_symmetry,
                    progress=not args.json and sys.stderr.isatty())
    _emit(_json_text(table.to_json()) if args.json else compare_text(table))
    return EXIT_OK


# --- emulate ----------------------------------------------------------------------------

def cmd_emulate(args) -> int:
    from gmemlab.traces.emulate import emulate_lines

    lines = emulate_lines(args.scenario, args.proposal, args.platform, args.series, pages=args.pages,
                          seed=args.seed, events=args.events)
    first = next(lines)  # the arguments are checked before anything is written
    if args.output:
        from gmemlab.fsutil import atomic_open
        with atomic_open(args.output) as f:
            f.write(first)
            f.writelines(lines)
    else:
        sys.stdout.write(first)
        for line in lines:
            sys.stdout.write(line)
    return EXIT_OK


# --- report -----------------------------------------------------------------------------

def cmd_report(args) -> int:
    from gmemlab.report import report

    for path in report(args.out, args.platform, args.series, args.pages,
                       log=lambda msg: print(f"gmemlab report: {msg}", file=sys.stderr)):
        print(path)
    return EXIT_OK


# --- sweep ------------------------------------------------------------------------------

def cmd_sweep(args) -> int:
    import time

    from gmemlab.sweep import matrix, parse_knob_sets, parse_list, parse_pages, sweep, table_text

    points = matrix(parse_list(args.proposals, "proposals", PROPOSALS),
                    parse_list(args.platforms, "platforms", PLATFORMS),
                    parse_list(args.series, "series", SERIES),
                    parse_pages(args.pages), parse_knob_sets(args.knobs))
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    engine = "dask" if args.scheduler else ("serial" if args.workers == 1 else "processes")
    t0 = time.monotonic()
    result = sweep(points, engine=engine, workers=args.workers, scheduler=args.scheduler)
    _emit(_json_text(result.to_json()) if args.json else table_text(result), args.output)
    if not args.json:
        print(f"gmemlab sweep: {len(points)} point(s) on {engine} in {time.monotonic() - t0:.1f} s",
              file=sys.stderr)
    return EXIT_OK


# --- main ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gmemlab", description="Model, explore and check KVM guest_memfd launch-memory proposals.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("check-trace", help="replay a gmemlab-trace/1 file against a proposal")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--proposal", default="private-first", choices=PROPOSALS)
    c.add_argument("--series", choices=SERIES, help="override the header's series")
    c.add_argument("--json", action="store_true")
    _knob_options(c)
    c.set_defaults(func=cmd_check_trace)

    i = sub.add_parser("import", help="convert a QEMU trace log or ftrace text into gmemlab-trace/1")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--from", dest="kind", required=True, choices=("qemu", "ftrace"))
    i.add_argument("--platform", default="snp", choices=PLATFORMS)
    i.add_argument("-o", "--output", metavar="OUT")
    i.add_argument("--json", action="store_true", help="print the skipped-event counts as JSON on stderr")
    i.set_defaults(func=cmd_import)

    e = sub.add_parser("explore", help="every state reachable from a fresh guest_memfd")
    e.add_argument("--proposal", default="private-first", choices=PROPOSALS)
    _explore_options(e)
    e.set_defaults(func=cmd_explore)

    m = sub.add_parser("compare", help="every proposal side by side")
    _explore_options(m)
    m.set_defaults(func=cmd_compare)

    em = sub.add_parser("emulate", help="write a trace made by driving the model through a scenario")
    em.add_argument("scenario", metavar="SCENARIO",
                    help="snp-launch, tdx-launch, legacy-copy, pinned-retry or guest-boot")
    em.add_argument("--proposal", default="private-first", choices=PROPOSALS)
    em.add_argument("--platform", choices=PLATFORMS, help="default: the scenario's own (snp for most)")
    em.add_argument("--series", default="v8", choices=SERIES)
    em.add_argument("--pages", type=int, help="guest_memfd size in pages (default 16; guest-boot 16M = 64 GiB)")
    em.add_argument("--events", type=int, help="guest-boot: number of events (default 1,000,000)")
    em.add_argument("--seed", type=int, default=0)
    em.add_argument("-o", "--output", metavar="OUT")
    em.set_defaults(func=cmd_emulate)
    sw = sub.add_parser("sweep", help="explore a matrix of configurations on a process pool or a Dask cluster")
    sw.add_argument("--proposals", default="all", help="comma list, or 'all' (default)")
    sw.add_argument("--platforms", default="snp", help="comma list, or 'all' (default: snp)")
    sw.add_argument("--series", default="v8", help="comma list, or 'all' (default: v8)")
    sw.add_argument("--pages", default="2", help="comma list of page counts 1-6 (default: 2)")
    sw.add_argument("--knobs", default="none",
                    help="comma list of knob sets; '+' joins knobs in one set, 'none' is no knob (default)")
    sw.add_argument("--workers", type=int, help="process pool size (default: one per core; 1 runs in-process)")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="run on this Dask distributed scheduler (tcp://HOST:PORT; needs gmemlab[sweep])")
    sw.add_argument("--json", action="store_true")
    sw.add_argument("-o", "--output", metavar="OUT")
    sw.set_defaults(func=cmd_sweep)
    r = sub.add_parser("report", help="run the notebooks headless; write HTML and the plain-text reply")
    r.add_argument("--out", default="reports", metavar="DIR", help="where to write (default: reports)")
    r.add_argument("--platform", default="snp", choices=PLATFORMS)
    r.add_argument("--series", default="v8", choices=SERIES)
    r.add_argument("--pages", type=int, default=2, help="pages of the guest_memfd (1-3)")
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except GmemlabError as e:
        print(f"gmemlab: {e}" if isinstance(e, UsageError) and not str(e).startswith("gmemlab") else str(e),
              file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("gmemlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # pragma: no cover - a bug: one line, not a traceback
        if os.environ.get("GMEMLAB_DEBUG"):
            raise
        print(f"gmemlab: internal error: {type(e).__name__}: {e} (GMEMLAB_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
