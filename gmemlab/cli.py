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


def _knobs(args) -> dict:
    return {"refuse_unprepared_populate": args.refuse_unprepared_populate,
            "convert_after_populate": args.convert_after_populate,
            "huge_folios": args.huge_folios}


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
    from gmemlab.traces.format import iter_events
    from gmemlab.traces.replay import config_for, replay

    path = args.file
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(path, 0, f"cannot read: {e.strerror}") from None
    it = iter_events(data, path)
    header = next(it)
    try:
        cfg = config_for(header, args.proposal, args.series, **_knobs(args))
    except UsageError as e:
        raise InputError(path, header["line"], str(e)) from None
    # The whole file is validated before anything is judged: an unusable trace is exit 2
    # even when its first events would already diverge.
    events = list(it)
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
