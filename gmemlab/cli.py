"""The command line of docs/cli.md: ``gmemlab`` and ``python -m gmemlab``.

Exit status: 0 all is well; 1 a trace diverges or an invariant breaks; 2 unusable input
or a misuse of the command line (the message names file, line and problem). No
traceback reaches the user: an internal error prints one line and exits 70 (set
GMEMLAB_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys

from gmemlab import __version__
from gmemlab.errors import GmemlabError, InputError, UsageError
from gmemlab.model import vocab
from gmemlab.model.vocab import PLATFORMS, SERIES

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 70


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option shows its default (unless it has none worth showing: None, False,
    an empty list); descriptions are wrapped line by line, and indented lines (the
    examples) are kept as they are."""

    def _fill_text(self, text, width, indent):
        return "\n".join(line if not line.strip() or line.startswith(" ")
                         else super(_Help, self)._fill_text(line, width, indent)
                         for line in text.splitlines())

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _pct(text: str) -> str:
    """Help text as argparse wants it (it %-formats help strings)."""
    return text.replace("%", "%%")


def _knob_options(p: argparse.ArgumentParser, what: str = "") -> None:
    """One --flag per knob of the registry (gmemlab.model.vocab.KNOBS), with its help,
    its status and where it was argued."""
    g = p.add_argument_group("knobs", "design knobs (gmemlab.model.vocab.KNOBS), each with where it "
                                      "was argued" + what)
    for k in vocab.KNOBS.values():
        status = f" [{k.status}]" if k.status else ""
        g.add_argument(k.flag, dest=k.name, action="store_true",
                       help=_pct(f"{k.help}{status}. Source: {k.source}"))


def _knobs(args) -> dict:
    return {name: bool(getattr(args, name, False)) for name in vocab.KNOBS}


def _variants_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variants", metavar="FILE.py", action="append", default=[],
                   help="load the proposal variants this Python file defines at top level "
                        "(Proposal.derive(...); docs/variants.md) before proposal names are "
                        "checked; may be given more than once")


def _proposal_option(p: argparse.ArgumentParser, default: str = "private-first") -> None:
    # No argparse choices: a variant's name is known only once --variants is loaded
    # (main checks the name then, see _load_variants).
    p.add_argument("--proposal", default=default, metavar="NAME",
                   help="the proposal: " + ", ".join(vocab.proposal_names())
                        + ", or a variant loaded with --variants")
    _variants_option(p)


_loaded: dict[str, list[str]] = {}   # variants file -> the proposal names it registered


def _load(path: str) -> None:
    key = os.path.abspath(path)
    names = _loaded.get(key)
    if names is None or any(n not in vocab.proposal_names() for n in names):
        # a broken file: InputError naming file:line, exit 2
        _loaded[key] = [p.name for p in vocab.load_variants(path)]


def _preload_variants(argv: list[str]) -> None:
    """Load --variants files named in argv before the parser is built, so that --help
    lists their proposals (main loads them again from the parsed arguments, which also
    catches abbreviated spellings; a file is loaded once)."""
    for i, a in enumerate(argv):
        if a == "--variants" and i + 1 < len(argv):
            _load(argv[i + 1])
        elif a.startswith("--variants="):
            _load(a.split("=", 1)[1])


def _load_variants(args) -> None:
    """Load the variants files, then check the proposal name against the registry."""
    for path in getattr(args, "variants", None) or []:
        _load(path)
    if getattr(args, "proposal", None) is not None:
        vocab.proposal(args.proposal)


def _emit(text: str, out_path: str | None = None, inputs: tuple = ()) -> None:
    if out_path:
        from gmemlab.fsutil import atomic_write
        atomic_write(out_path, text, inputs)
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
    # guest-scale trace is never held in memory. FILE itself is read once: a pipe, a
    # FIFO, /dev/stdin or "-" is spooled to a temporary file first (open_trace).
    from gmemlab.traces.format import open_trace
    with open_trace(path) as f:
        header = None
        for item in iter_file(f, path):
            header = header or item
        try:
            cfg = config_for(header, args.proposal, args.series, **_knobs(args))
        except UsageError as e:
            raise InputError(path, header["line"], str(e)) from None
        f.seek(0)
        events = iter_file(f, path)
        next(events)
        report = replay(cfg, events, path)
    _emit(_json_text(report.to_json()) if args.json else check_report_text(report, header))
    return EXIT_OK if report.ok else EXIT_FAIL


# --- import -----------------------------------------------------------------------------

def cmd_import(args) -> int:
    from gmemlab.traces.importers import run_import

    from gmemlab.traces.format import open_input

    if args.output:
        from gmemlab.fsutil import check_output
        check_output(args.output, (args.file,))
    with open_input(args.file) as f:  # read a line at a time, once (a pipe or FIFO too)
        text, skipped = run_import(f, args.file, args.kind, args.platform)
    _emit(text, args.output, (args.file,))
    if args.json:
        sys.stderr.write(_json_text({"skipped": dict(sorted(skipped.items()))}))
    elif skipped:
        total = sum(skipped.values())
        names = ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items()))
        sys.stderr.write(f"gmemlab import: skipped {total} line(s) of events it does not convert: {names}\n")
    return EXIT_OK


# --- explore / compare ------------------------------------------------------------------

def _explore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--platform", default="snp", choices=PLATFORMS, help="the platform (its trusted entity)")
    p.add_argument("--series", default="v8", choices=SERIES, help="the series whose rules apply")
    p.add_argument("--pages", type=int, default=2, help=f"pages of the guest_memfd (1..{vocab.MAX_PAGES})")
    p.add_argument("--no-symmetry", action="store_true", help="turn symmetry reduction off")
    p.add_argument("--ranges", choices=("page+file", "all"), default="page+file",
                   help="range calls on single pages and the whole file (page+file), or on every "
                        "contiguous range (turns symmetry off)")
    p.add_argument("--no-direct-map", action="store_true",
                   help="create the guest_memfd with NO_DIRECT_MAP (another series)")
    p.add_argument("--processes", type=int, default=1,
                   help="host processes that map the file (2 adds a forked child)")
    p.add_argument("--folio-pages", type=int, default=0, metavar="N",
                   help="with --huge-folios: pages per huge folio (0, the default: one folio over "
                        "the file); a 2-page folio stands for 2 MiB, or 1 GiB")
    p.add_argument("--engine", default="auto", choices=vocab.ENGINES,
                   help="the explorer's engine: reference (step() on every transition), fast (the "
                        "table engine), or auto (fast where it applies); both find the same exploration")
    p.add_argument("--timings", action="store_true",
                   help="print how long each exploration took on stderr (the output itself has no "
                        "timings: two runs give the same bytes)")
    p.add_argument("--max-states", type=int, default=5_000_000, metavar="N",
                   help="refuse (exit 2) an exploration estimated beyond N states, and stop one that "
                        "reaches N: what it found so far is reported, marked incomplete")
    p.add_argument("--interleave", type=int, default=None, metavar="THREADS", nargs="?", const=2,
                   help="calls made by THREADS threads (1-3; 2 without a number: the VMM's thread and "
                        "an I/O thread, 3 adds a vCPU), each call in steps at the kernel's lock "
                        "boundaries, the threads' steps in every order (gmemlab.model.threads); "
                        "symmetry is off")
    p.add_argument("--no-reduction", action="store_true",
                   help="with --interleave: explore every order of the threads' begins (no partial-order "
                        "reduction; the same verdicts, more states)")
    p.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                   help="stop an exploration whose state store outgrows SIZE (bytes, or with K, M, G: "
                        "4G): what it found so far is reported, marked incomplete, as at --max-states")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _knob_options(p)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(text: str) -> int:
    """A size: bytes, or a number with K, M, G or T (KiB, MiB, ... accepted too)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or a number with K, M, G: 4G)")
    return int(value * _UNITS[unit])


def _budget(args, x) -> str:
    """The budget an incomplete exploration stopped at, as its flag says it."""
    if x.stopped_by == "max_memory":
        return f"--max-memory {args.max_memory:,} bytes"
    return f"--max-states {args.max_states:,}"


def _scheduler_options(p: argparse.ArgumentParser, what: str) -> None:
    """--scheduler and its --connect-timeout (sweep and explore connect alike: gmemlab.sweep._connect)."""
    p.add_argument("--scheduler", metavar="ADDRESS", help=what)
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="with --scheduler: one deadline for connecting and the handshake (exit 2 past it)")


def _bounds(args):
    from gmemlab.explore import Bounds
    if not 1 <= args.pages <= vocab.MAX_PAGES:
        raise UsageError(f"--pages must be 1..{vocab.MAX_PAGES}, got {args.pages}")
    if not 1 <= args.processes <= 2:
        raise UsageError(f"--processes must be 1 or 2, got {args.processes}")
    folio_pages = getattr(args, "folio_pages", 0)
    if folio_pages < 0:
        raise UsageError(f"--folio-pages must be 0 or more, got {folio_pages}")
    interleave = getattr(args, "interleave", None)   # None: not given, the calls atomic
    if interleave is not None and not 1 <= interleave <= 3:
        raise UsageError(f"--interleave must be 1..3 threads, got {interleave}")
    interleave = interleave or 0
    return Bounds(pages=args.pages, no_direct_map=args.no_direct_map,
                  processes=("vmm", "child")[:args.processes], ranges=args.ranges,
                  folio_pages=folio_pages, interleave=interleave,
                  reduce=not getattr(args, "no_reduction", False))


def cmd_explore(args) -> int:
    from gmemlab.explore import explore
    from gmemlab.invariants import INVARIANT_NAMES
    from gmemlab.model.state import Config
    from gmemlab.render.text import explore_text

    cfg = Config(proposal=args.proposal, platform=args.platform, series=args.series, **_knobs(args))
    bounds = _bounds(args)
    _check_estimate(args, [args.proposal])
    cluster = {}
    if args.scheduler:   # the same exploration, its state table held by the cluster's workers
        from gmemlab.explore.partitioned import explore_partitioned as explore
        cluster = {"scheduler": args.scheduler, "connect_timeout": args.connect_timeout}
    result = explore(cfg, bounds, symmetry=not args.no_symmetry,
                     progress=not args.json and sys.stderr.isatty(), engine=args.engine,
                     max_states=args.max_states, max_memory=args.max_memory, **cluster)
    _emit(_json_text(result.to_json()) if args.json else explore_text(result))
    broken = not all(result.holds(n) for n in INVARIANT_NAMES)
    if args.timings:
        print(f"gmemlab explore: {result.seconds:.3f} s", file=sys.stderr)
    if result.incomplete:
        print(f"gmemlab explore: incomplete: {len(result.states):,} states explored, stopped at "
              f"{_budget(args, result)}; " + ("the broken invariants reported are real"
              if broken else f"nothing concluded: raise {_budget(args, result).split()[0]} or use fewer pages"),
              file=sys.stderr)
        return EXIT_FAIL if broken else EXIT_INPUT
    # 1: an invariant breaks (the counterexample is in the output), as check-trace does
    return EXIT_FAIL if broken else EXIT_OK


def cmd_query(args) -> int:
    from gmemlab.explore import explore
    from gmemlab.explore.queries import differing_counterexample, distinct_counterexamples
    from gmemlab.model.state import Config
    from gmemlab.render.query_views import question
    from gmemlab.render.text import steps_text
    from gmemlab.traces.format import event_json

    if args.differ_from is not None and args.distinct != 1:
        raise UsageError("--distinct and --differ-from do not combine: --differ-from gives one counterexample")
    cfg = Config(proposal=args.proposal, platform=args.platform, series=args.series, **_knobs(args))
    bounds = _bounds(args)
    _check_estimate(args, [args.proposal])
    x = explore(cfg, bounds, symmetry=not args.no_symmetry, progress=not args.json and sys.stderr.isatty(),
                engine=args.engine, max_states=args.max_states, max_memory=args.max_memory)
    ask = {"ends_with": args.ends_with, "through": args.through}
    if args.differ_from is not None:
        cx = differing_counterexample(x, args.differ_from, args.invariant, **ask)
        found = [] if cx is None else [cx]
    else:
        found = distinct_counterexamples(x, args.invariant, args.distinct, **ask)
    q = question(args.ends_with or "", args.through or "", args.distinct, args.differ_from or "")
    if args.json:
        _emit(_json_text({"proposal": args.proposal, "invariant": args.invariant, "question": q,
                          "counterexamples": [[event_json(e) for e in cx] for cx in found]}))
    else:
        lines = [f"{cfg.label()}, {bounds.pages} page(s): {args.invariant}: {q}"]
        for k, cx in enumerate(found, 1):
            lines += [f"  {k}. {len(cx)} steps", steps_text(cx, "      ")]
        _emit("\n".join(lines + ([] if found else ["  none"])) + "\n")
    if x.incomplete:
        print(f"gmemlab query: incomplete: {len(x.states):,} states explored, stopped at "
              f"{_budget(args, x)}; the answers are among those states only", file=sys.stderr)
    # 1: a counterexample answers (a finding, as explore), 0: none does
    return EXIT_FAIL if found else EXIT_OK


def _check_estimate(args, proposals) -> None:
    """Refuse, before any work, an exploration estimated beyond --max-states."""
    from gmemlab.explore.estimate import describe, estimate_states
    if args.max_states < 1:
        raise UsageError(f"--max-states must be >= 1, got {args.max_states}")
    symmetry = not args.no_symmetry and args.ranges != "all"
    if getattr(args, "interleave", 0):
        return    # no estimate for threads' steps: --max-states stops the search instead
    for name in proposals:
        est = estimate_states(name, args.platform, args.series, args.pages, symmetry=symmetry,
                              processes=args.processes)
        if est > args.max_states:
            raise UsageError(f"{name}/{args.platform}/{args.series} at {args.pages} page(s) is estimated at "
                             f"{describe(est)}, beyond --max-states {args.max_states:,}: use fewer pages "
                             "(or processes), or raise --max-states if the machine can take it")


def cmd_compare(args) -> int:
    from gmemlab.explore.compare import compare
    from gmemlab.render.text import compare_text

    # Every proposal known: the built-ins, then the variants --variants loaded. A broken
    # invariant is the comparison's content, not a failure: exit 0 unless input is bad.
    bounds = _bounds(args)
    _check_estimate(args, vocab.proposal_names())
    table = compare(args.platform, args.series, bounds, knobs=_knobs(args),
                    symmetry=not args.no_symmetry,
                    progress=not args.json and sys.stderr.isatty(),
                    proposals=vocab.proposal_names(), engine=args.engine, max_states=args.max_states,
                    max_memory=args.max_memory)
    if args.timings:
        for c in table.columns:
            print(f"gmemlab compare: {c.proposal}: {c.exploration.seconds:.3f} s", file=sys.stderr)
    short = [c.proposal for c in table.columns if c.exploration.incomplete]
    if short:
        x = next(c.exploration for c in table.columns if c.exploration.incomplete)
        raise UsageError(f"incomplete: {', '.join(short)} reached {_budget(args, x)}; "
                         f"raise {_budget(args, x).split()[0]} or use fewer pages")
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
        with atomic_open(args.output, (args.scenario,)) as f:
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

    for path in report(args.out, args.platform, args.series, args.pages, variants=tuple(args.variants),
                       log=lambda msg: print(f"gmemlab report: {msg}", file=sys.stderr)):
        print(path)
    return EXIT_OK


# --- reply ------------------------------------------------------------------------------

def cmd_reply(args) -> int:
    from gmemlab.explore.compare import compare
    from gmemlab.render.reply import pick_counterexample, reply_message

    if args.output:
        from gmemlab.fsutil import check_output
        check_output(args.output)
    bounds = _bounds(args)
    _check_estimate(args, vocab.proposal_names())
    table = compare(args.platform, args.series, bounds, knobs=_knobs(args), proposals=vocab.proposal_names(),
                    engine=args.engine, max_states=args.max_states, max_memory=args.max_memory)
    short = [c.proposal for c in table.columns if c.exploration.incomplete]
    if short:
        x = next(c.exploration for c in table.columns if c.exploration.incomplete)
        raise UsageError(f"incomplete: {', '.join(short)} reached {_budget(args, x)}; "
                         f"raise {_budget(args, x).split()[0]} or use fewer pages")
    if args.in_reply_to is not None:
        mid = args.in_reply_to.strip().strip("<>")
        if not mid or "@" not in mid or any(c.isspace() or c in "<>" for c in mid):
            raise UsageError(f"--in-reply-to: not a Message-Id: {args.in_reply_to!r}")
    date = None
    if args.date:
        from email.utils import format_datetime, parsedate_to_datetime
        from datetime import datetime, timezone
        try:
            when = datetime.fromisoformat(args.date)
        except ValueError:
            try:
                when = parsedate_to_datetime(args.date)
            except (TypeError, ValueError):
                raise UsageError(f"--date: neither ISO 8601 nor RFC 5322: {args.date!r}") from None
        date = format_datetime(when if when.tzinfo else when.replace(tzinfo=timezone.utc))
    try:
        pick_counterexample(table, args.proposal, args.invariant)
    except ValueError as e:
        raise UsageError(str(e)) from None
    text = reply_message(table, args.proposal, args.invariant, subject=args.subject,
                         in_reply_to=args.in_reply_to, sender=args.sender, to=args.to, cc=args.cc,
                         date=date)
    _emit(text, args.output)
    return EXIT_OK


# --- sweep ------------------------------------------------------------------------------

def cmd_sweep(args) -> int:
    import time

    from gmemlab.sweep import matrix, parse_knob_sets, parse_list, parse_pages, sweep, table_text

    # every knob given as a flag is on in every knob set of --knobs
    always = tuple(k for k, on in _knobs(args).items() if on)
    points = matrix(parse_list(args.proposals, "proposals", vocab.proposal_names()),
                    parse_list(args.platforms, "platforms", PLATFORMS),
                    parse_list(args.series, "series", SERIES),
                    parse_pages(args.pages), [tuple(sorted(set(s) | set(always)))
                                              for s in parse_knob_sets(args.knobs)],
                    variants=tuple(args.variants))
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    engine = "dask" if args.scheduler else ("serial" if args.workers == 1 else "processes")
    from gmemlab.sweep import check_budget
    print(check_budget(points, args.workers or min(len(points), os.cpu_count() or 1), args.yes),
          file=sys.stderr)
    t0 = time.monotonic()
    result = sweep(points, engine=engine, workers=args.workers, scheduler=args.scheduler,
                   connect_timeout=args.connect_timeout)
    _emit(_json_text(result.to_json()) if args.json else table_text(result), args.output)
    if not args.json:
        print(f"gmemlab sweep: {len(points)} point(s) on {engine} in {time.monotonic() - t0:.1f} s",
              file=sys.stderr)
    return EXIT_OK


# --- selftest ---------------------------------------------------------------------------

def cmd_selftest(args) -> int:
    from gmemlab.render.selftest import render_file

    if args.output:
        from gmemlab.fsutil import check_output
        check_output(args.output, (args.file,))
    _emit(render_file(args.file, vm=args.vm), args.output, (args.file,))
    return EXIT_OK


# --- main ---------------------------------------------------------------------------------

def _epilog(*examples: str) -> str:
    return "examples:\n" + "\n".join("  " + e for e in examples)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gmemlab", description="Model, explore and check KVM guest_memfd launch-memory proposals.",
                epilog="exit status: 0 all is well; 1 a trace diverges or an invariant breaks; 2 unusable "
                       "input or a misuse of the command line. `gmemlab COMMAND --help` describes each command.")
    p.add_argument("--version", action="version", version=f"gmemlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser(
        "check-trace", help="replay a gmemlab-trace/1 file against a proposal",
        description="Replay a gmemlab-trace/1 file (recorded on a kernel, imported or emulated) against "
                    "a proposal's model: exit 0 when every outcome matches and no invariant breaks, 1 "
                    "when the trace diverges or violates one, 2 when the file is unusable (file:line).",
        epilog=_epilog("gmemlab check-trace data/traces/launch/snp_private_first.jsonl",
                       "gmemlab check-trace t.jsonl --proposal userspace-converts --json",
                       "gmemlab check-trace t.jsonl --variants my_variants.py --proposal my-variant"))
    c.add_argument("file", metavar="FILE", help="the trace (JSON lines, header first)")
    _proposal_option(c)
    c.add_argument("--series", choices=SERIES, help="override the header's series")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    _knob_options(c)
    c.set_defaults(func=cmd_check_trace)

    i = sub.add_parser(
        "import", help="convert a QEMU trace log or ftrace text into gmemlab-trace/1",
        description="Convert a QEMU trace log or ftrace text into a gmemlab-trace/1 file; events it "
                    "does not convert are counted on stderr.",
        epilog=_epilog("gmemlab import qemu.log --from qemu -o launch.jsonl",
                       "gmemlab import trace.txt --from ftrace --platform tdx --json > t.jsonl"))
    i.add_argument("file", metavar="FILE", help="the log to convert")
    i.add_argument("--from", dest="kind", required=True, choices=("qemu", "ftrace"), help="what the log is")
    i.add_argument("--platform", default="snp", choices=PLATFORMS, help="the platform the log was taken on")
    i.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of stdout")
    i.add_argument("--json", action="store_true", help="print the skipped-event counts as JSON on stderr")
    i.set_defaults(func=cmd_import)

    e = sub.add_parser(
        "explore", help="every state reachable from a fresh guest_memfd",
        description="Explore every state a fresh guest_memfd reaches under one proposal, and decide "
                    "every invariant: exit 0 when all hold, 1 when one breaks (its shortest "
                    "counterexample is printed), 2 on bad input.",
        epilog=_epilog("gmemlab explore --proposal userspace-converts --platform tdx --pages 1",
                       "gmemlab explore --huge-folios --json",
                       "gmemlab explore --variants my_variants.py --proposal populate-converts-ebusy",
                       "gmemlab explore --pages 4 --scheduler tcp://127.0.0.1:8786 --json"))
    _proposal_option(e)
    _explore_options(e)
    _scheduler_options(e, "hold the state table on the workers of this Dask distributed scheduler, "
                          "partitioned by key (tcp://HOST:PORT; needs gmemlab[sweep]); the same output")
    e.set_defaults(func=cmd_explore)

    from gmemlab.model.events import FIELDS as OPS   # the trace's ops (the parser imports no numpy)
    qp = sub.add_parser(
        "query", help="the shortest counterexample that ends in a call, passes a state, or differs",
        description="Explore as explore does, then ask for particular counterexamples of one invariant "
                    "(docs/queries.md): ending in a given call, passing a given state first, several "
                    "that differ in their violating call, or one whose calls do not break the "
                    "invariant under another proposal. Exit 1 when a counterexample answers, 0 when "
                    "none does, 2 on bad input.",
        epilog=_epilog("gmemlab query host_never_touches_te_private --proposal userspace-converts "
                       "--pages 1 --ends-with host_read --through after_populate",
                       "gmemlab query host_never_touches_te_private --proposal userspace-converts --distinct 3",
                       "gmemlab query te_private_implies_kvm_private --proposal userspace-converts "
                       "--differ-from private-first --json"))
    qp.add_argument("invariant", metavar="INVARIANT", help="the invariant asked about (not no_stuck_state)")
    _proposal_option(qp)
    qp.add_argument("--ends-with", metavar="OP",
                    help="the violating call's op: " + ", ".join(OPS))
    qp.add_argument("--through", metavar="PRED",
                    help="a state the path passes before its violating call: a predicate of "
                         "docs/queries.md (after_populate, after_finalize, ...; a bad name lists them)")
    qp.add_argument("--distinct", type=int, default=1, metavar="K",
                    help="up to K counterexamples that differ in their violating call")
    qp.add_argument("--differ-from", metavar="PROPOSAL",
                    help="one whose calls, replayed under this proposal, do not break the invariant")
    _explore_options(qp)
    qp.set_defaults(func=cmd_query)

    m = sub.add_parser(
        "compare", help="every proposal side by side",
        description="Explore every proposal (the built-ins, then the variants --variants loads) on the "
                    "same configuration and print the matrix (72 columns, for email). Exit 0 unless "
                    "the input is bad: a broken invariant is what the matrix reports.",
        epilog=_epilog("gmemlab compare --platform snp --pages 1",
                       "gmemlab compare --series v7 --refuse-unprepared-populate --json",
                       "gmemlab compare --variants my_variants.py --engine reference"))
    _variants_option(m)
    _explore_options(m)
    m.set_defaults(func=cmd_compare)

    em = sub.add_parser(
        "emulate", help="write a trace made by driving the model through a scenario",
        description="Write a gmemlab-trace/1 file made by driving the model of a proposal through a "
                    "scenario, every event with the outcome the model predicts.",
        epilog=_epilog("gmemlab emulate snp-launch -o snp.jsonl",
                       "gmemlab emulate legacy-copy --platform tdx --pages 5 --seed 2",
                       "gmemlab emulate pinned-retry --variants my_variants.py --proposal my-variant"))
    em.add_argument("scenario", metavar="SCENARIO",
                    help="snp-launch, tdx-launch, legacy-copy, pinned-retry or guest-boot")
    _proposal_option(em)
    em.add_argument("--platform", choices=PLATFORMS, help="default: the scenario's own (snp for most)")
    em.add_argument("--series", default="v8", choices=SERIES, help="the series whose rules apply")
    em.add_argument("--pages", type=int, help="guest_memfd size in pages (default 16; guest-boot 16M = 64 GiB)")
    em.add_argument("--events", type=int, help="guest-boot: number of events (default 1,000,000)")
    em.add_argument("--seed", type=int, default=0, help="the random seed (same seed, same bytes)")
    em.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of stdout")
    em.set_defaults(func=cmd_emulate)

    sw = sub.add_parser(
        "sweep", help="explore a matrix of configurations on a process pool or a Dask cluster",
        description="Explore every point of proposal x platform x series x pages x knob set, on a "
                    "process pool, in this process (--workers 1) or on a Dask cluster; the results "
                    "do not depend on where they ran.",
        epilog=_epilog("gmemlab sweep --platforms all --pages 1,2",
                       "gmemlab sweep --knobs none,refuse_unprepared_populate+huge_folios --json",
                       "gmemlab sweep --variants my_variants.py --proposals all --workers 2",
                       "gmemlab sweep --scheduler tcp://127.0.0.1:8786"))
    sw.add_argument("--proposals", default="all",
                    help="comma list, or 'all' (the built-ins and the variants --variants loads)")
    _variants_option(sw)
    sw.add_argument("--platforms", default="snp", help="comma list, or 'all'")
    sw.add_argument("--series", default="v8", help="comma list, or 'all'")
    sw.add_argument("--pages", default="2", help=f"comma list of page counts 1..{vocab.MAX_PAGES}")
    sw.add_argument("--knobs", default="none",
                    help="comma list of knob sets; '+' joins knobs in one set, 'none' is no knob; names: "
                         + ", ".join(vocab.KNOBS))
    sw.add_argument("--workers", type=int, help="process pool size (default: one per core; 1 runs in-process)")
    _scheduler_options(sw, "run on this Dask distributed scheduler (tcp://HOST:PORT; needs gmemlab[sweep])")
    sw.add_argument("--yes", action="store_true",
                    help="run a matrix estimated over the budget (300 s of wall clock) without asking")
    sw.add_argument("--json", action="store_true", help="print JSON instead of the table")
    sw.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of stdout")
    _knob_options(sw, "; a knob given here is on in every knob set of --knobs")
    sw.set_defaults(func=cmd_sweep)

    from gmemlab.invariants import INVARIANT_NAMES
    from gmemlab.render.reply import SUBJECT
    rp = sub.add_parser(
        "reply", help="the reply to the list as an email (RFC 5322, text/plain)",
        description="Compare every proposal (the built-ins, then the variants --variants loads) and "
                    "write the reply a reviewer would post: a conclusion derived from the results, "
                    "one finding per broken invariant with the seed's lines it answers and its "
                    "shortest counterexample, the matrix without the rows every proposal shares, "
                    "and the sources as lore.kernel.org links. Plain text, 72 columns (a link is "
                    "never broken), as a message for git send-email or mutt. No Date header unless "
                    "--date is given: two runs give the same bytes.",
        epilog=_epilog("gmemlab reply --platform snp --pages 1",
                       "gmemlab reply --in-reply-to '<MESSAGE-ID>' -o reply.eml",
                       "git send-email --in-reply-to '<MESSAGE-ID>' reply.eml",
                       "gmemlab reply --variants my_variants.py --huge-folios --from 'Me <me@example.org>'"))
    rp.add_argument("--platform", default="snp", choices=PLATFORMS, help="the platform (its trusted entity)")
    rp.add_argument("--series", default="v8", choices=SERIES, help="the series whose rules apply")
    rp.add_argument("--pages", type=int, default=2, help=f"pages of the guest_memfd (1..{vocab.MAX_PAGES})")
    _variants_option(rp)
    rp.add_argument("--proposal", metavar="NAME",
                    help="prefer this proposal's counterexamples where it breaks an invariant")
    rp.add_argument("--invariant", metavar="NAME", choices=INVARIANT_NAMES,
                    help="put this invariant's finding first")
    rp.add_argument("--in-reply-to", metavar="MSGID",
                    help="the Message-Id replied to: In-Reply-To and References, and its lore link")
    rp.add_argument("--subject", default=SUBJECT, help="the Subject")
    rp.add_argument("--from", dest="sender", metavar="ADDRESS", help="the From header (omitted if not given)")
    rp.add_argument("--to", metavar="ADDRESSES", help="the To header (omitted if not given)")
    rp.add_argument("--cc", metavar="ADDRESSES", help="the Cc header (omitted if not given)")
    rp.add_argument("--date", metavar="DATE",
                    help="a Date header (ISO 8601 or RFC 5322; omitted if not given)")
    rp.add_argument("--engine", default="auto", choices=vocab.ENGINES, help="the explorer's engine")
    rp.add_argument("--max-states", type=int, default=5_000_000, metavar="N",
                    help="refuse (exit 2) an exploration estimated beyond N states")
    rp.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                    help="refuse (exit 2) an exploration whose state store outgrows SIZE (4G)")
    rp.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of stdout")
    _knob_options(rp)
    rp.set_defaults(func=cmd_reply, no_symmetry=False, processes=1, no_direct_map=False,
                    ranges="page+file")

    r = sub.add_parser(
        "report", help="run the notebooks headless; write HTML and the plain-text reply",
        description="Run the notebooks headless (papermill), write each as HTML with its widgets, and "
                    "the reply to the list as reply.txt (ASCII, 72 columns) and reply.html. Needs "
                    "gmemlab[lab].",
        epilog=_epilog("gmemlab report --out reports --platform snp --pages 1",
                       "gmemlab report --series v7 --variants my_variants.py"))
    r.add_argument("--out", default="reports", metavar="DIR", help="where to write")
    r.add_argument("--platform", default="snp", choices=PLATFORMS, help="the platform of every notebook")
    r.add_argument("--series", default="v8", choices=SERIES, help="the series of every notebook")
    r.add_argument("--pages", type=int, default=2,
                   help=f"pages of the guest_memfd (1..{vocab.WIDGET_MAX_PAGES})")
    _variants_option(r)
    r.set_defaults(func=cmd_report)

    st = sub.add_parser(
        "selftest", help="write a trace as a C selftest (KVM selftests style)",
        description="Write the trace (a counterexample, or any trace whose events all carry \"expect\") "
                    "as a standalone C selftest in the style of tools/testing/selftests/kvm/x86/"
                    "guest_memfd_conversions_test.c: the same calls in the same order, each outcome "
                    "asserted; populate and finalize are the SNP/TDX launch ioctls (on cca populate is "
                    "KVM_ARM_RMI_POPULATE in a Realm; the program skips off arm64), guest accesses on "
                    "sw_protected/default run real-mode code on a vCPU. Exit 2 on a trace it cannot express "
                    "(guest_accept, guest events on SNP/TDX/cca, finalize on cca, launch ops on other VM "
                    "types), naming the line.",
        epilog=_epilog("gmemlab selftest cx.jsonl -o host_touches_te_private_test.c",
                       "gmemlab selftest data/traces/selftests/fault_private.jsonl --vm default -o t.c "
                       "&& gcc -Wall -Werror -o t t.c && ./t"))
    st.add_argument("file", metavar="TRACE", help="the trace (JSON lines, header first)")
    st.add_argument("--vm", default="platform", choices=("platform", "sw_protected", "default"),
                    help="the VM type the program creates: the header's platform, or another")
    st.add_argument("-o", "--output", metavar="FILE.c", help="write here (atomically) instead of stdout")
    st.set_defaults(func=cmd_selftest)

    from gmemlab.kvm import command as kvm_command  # kvm-run: the running kernel as the oracle
    kvm_command.add_parser(sub)
    for cmd in sub.choices.values():   # what each option needs (_needs), checked by _check_needs
        cmd.set_defaults(_needs=(cmd.prog, _needs(cmd)))
    return p


# An option whose help begins "with --OTHER" acts only together with --OTHER: the knobs
# of the races (their help in gmemlab.model.vocab.KNOBS begins "with --interleave:"),
# --no-reduction, --folio-pages (with --huge-folios), --connect-timeout (with
# --scheduler). The help is the one statement of that dependency; a command that has
# --OTHER refuses the option without it rather than ignore it.
_NEEDS = re.compile(r"with (--[a-z][a-z0-9-]*)\b")


def _needs(p: argparse.ArgumentParser) -> tuple:
    """(dest, flag, default, other's dest, other's flag, other's default) for each option
    of p whose help begins "with --OTHER", where p has --OTHER."""
    flags = {s: a for a in p._actions for s in a.option_strings}
    out = []
    for a in p._actions:
        m = _NEEDS.match(a.help or "")
        other = flags.get(m.group(1)) if m else None
        if other is not None and a.option_strings:
            out.append((a.dest, a.option_strings[0], a.default, other.dest, m.group(1), other.default))
    return tuple(out)


def _check_needs(args) -> None:
    """Refuse an option given without the option it acts with (_needs), e.g.
    "gmemlab explore: --gup-fast-no-recheck needs --interleave"."""
    prog, needs = getattr(args, "_needs", ("gmemlab", ()))
    for dest, flag, default, other, other_flag, other_default in needs:
        if getattr(args, dest, default) != default and getattr(args, other, other_default) == other_default:
            raise UsageError(f"{prog}: {flag} needs {other_flag}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that temporary files are removed on the
    way out (fsutil.atomic_open); exit 130 like an interrupt (docs/cli.md)."""


def _on_sigterm(main_pid: int):
    def handler(signum, frame):
        if os.getpid() != main_pid:  # a forked worker: die as SIGTERM asks
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise _Terminated()
    return handler


def _safe_stdout() -> None:
    """A path that is not UTF-8 (decoded with surrogateescape) must not crash text
    output on a strict UTF-8 stdout: print it with backslash escapes."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not sys.__stdout__ and stream is not sys.__stderr__:
            continue  # not the process's own streams (a test's capture): leave them alone
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _drop_stdout() -> None:
    """After stdout failed, point it at /dev/null so the interpreter's final flush does
    not fail again (Python would then exit 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm(os.getpid()))
    try:
        _safe_stdout()
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        _preload_variants(argv)
        args = build_parser().parse_args(argv)
        _check_needs(args)
        _load_variants(args)
        code = args.func(args)
        sys.stdout.flush()      # a full disk behind stdout is reported here, not at exit
        return code
    except GmemlabError as e:
        print(f"gmemlab: {e}" if isinstance(e, UsageError) and not str(e).startswith("gmemlab") else str(e),
              file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("gmemlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_OK
    except OSError as e:
        # Reading an input or writing stdout failed (ENOSPC, EIO, ...): the file and the
        # errno, exit 2, like any unusable input or output.
        name = e.filename if e.filename is not None else "stdout"
        print(f"gmemlab: {name}: {e.strerror or e}", file=sys.stderr)
        if e.filename is None:
            _drop_stdout()
        return EXIT_INPUT
    except Exception as e:  # pragma: no cover - a bug: one line, not a traceback
        if os.environ.get("GMEMLAB_DEBUG"):
            raise
        print(f"gmemlab: internal error: {type(e).__name__}: {e} (GMEMLAB_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
