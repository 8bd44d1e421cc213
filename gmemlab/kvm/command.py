"""``gmemlab kvm-run TRACE [-o OUT] [--json]``: the trace's events on the running kernel.

The events run on a KVM default VM through /dev/kvm (gmemlab.kvm.runner) and are written
back with the kernel's outcomes as "expect" (header: platform "default", source
"recorded", the kernel release, the capabilities found); the first event the kernel
cannot express ends the run, with a note. Exit status: 0 when every outcome the trace
already expected matches the kernel's, 1 when one differs, 2 on an unusable trace or when
/dev/kvm is missing or refuses (the message names the file and line, or the device).

Without -o the recording goes to stdout (unless --json, which prints one object instead:
{"kernel", "capabilities", "events", "stopped", "mismatches"}). A summary goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys

from gmemlab.errors import InputError

EXIT_OK, EXIT_DIFFERS = 0, 1


def add_parser(subparsers) -> None:
    """Register ``kvm-run`` on the CLI's subparsers (gmemlab.cli.build_parser)."""
    k = subparsers.add_parser(
        "kvm-run", help="run a trace on the running kernel (/dev/kvm) and record its outcomes",
        description="Run a gmemlab-trace/1 file's events on a KVM default VM of the running kernel "
                    "(guest_memfd bound at gpa 0, host accesses in a forked child, pins as io_uring "
                    "buffers, guest accesses by a real-mode vCPU) and write them back with the kernel's "
                    "outcomes as \"expect\". An event the kernel cannot express ends the run with a note. "
                    "Exit 0 when every outcome the trace expected matches the kernel's, 1 when one "
                    "differs, 2 when the file is unusable or /dev/kvm is missing or refuses.",
        epilog="examples:\n  gmemlab kvm-run data/traces/selftests/mmap_supported.jsonl -o recorded.jsonl\n"
               "  gmemlab kvm-run t.jsonl --json")
    k.add_argument("file", metavar="TRACE", help="the trace (JSON lines, header first)")
    k.add_argument("-o", "--output", metavar="OUT", help="write the recording here (atomically) instead of stdout")
    k.add_argument("--json", action="store_true",
                   help="print {kernel, capabilities, events, stopped, mismatches} as JSON")
    k.add_argument("--device", default="/dev/kvm", metavar="PATH", help="the KVM device")
    k.set_defaults(func=run)


def run(args) -> int:
    """The command: exit 0 (the kernel agrees with the trace), 1 (it differs); unusable
    input and a missing or refusing /dev/kvm raise GmemlabError (exit 2 in gmemlab.cli)."""
    from gmemlab.kvm.runner import PAGE_SIZE, Kvm, recorded_header, recorded_text, run_events
    from gmemlab.traces.format import load

    path = args.file
    if args.output:  # refused before anything runs: the input itself, a directory, read-only
        from gmemlab.fsutil import check_output
        check_output(args.output, (path,))
    header, events = load(path)  # the whole file is checked before anything runs
    if header["page_size"] != PAGE_SIZE:
        raise InputError(path, header["line"], f"page_size {header['page_size']} is not the running "
                                               f"kernel's page size {PAGE_SIZE}")
    kvm = Kvm(args.device)
    try:
        rec = run_events(kvm, events)
        out_header = recorded_header(kvm, header, os.path.basename(path), rec)
        caps = kvm.capabilities
    finally:
        kvm.close()
    text = recorded_text(out_header, rec)
    if args.output:
        from gmemlab.fsutil import atomic_write
        atomic_write(args.output, text, (path,))
    elif not args.json:
        sys.stdout.write(text)
    if args.json:
        sys.stdout.write(json.dumps({"kernel": out_header["kernel"], "capabilities": caps,
                                     "events": len(rec.events), "stopped": rec.stopped,
                                     "mismatches": rec.mismatches}, indent=2) + "\n")
    else:
        sys.stderr.write(summary(path, out_header, rec))
    return EXIT_DIFFERS if rec.mismatches else EXIT_OK


def summary(path: str, header: dict, rec) -> str:
    """A few lines for the terminal: what ran, where it stopped, what differed."""
    lines = [f"gmemlab kvm-run: {len(rec.events)} event(s) of {path} run on Linux {header['kernel']} "
             f"(KVM default VM)"]
    if rec.stopped:
        lines.append(f"  stopped at {path}:{rec.stopped['line']} ({rec.stopped['op']}): {rec.stopped['why']}")
    for m in rec.mismatches:
        lines.append(f"  {path}:{m['line']} {m['op']}: the trace expected {json.dumps(m['expected'])}, "
                     f"the kernel gave {json.dumps(m['kernel'])}")
    if not rec.mismatches:
        lines.append("  every outcome the trace expected matches the kernel's")
    return "\n".join(lines) + "\n"
