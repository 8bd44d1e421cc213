"""The command line under hostile arguments: whatever words it is given, it answers with
exit 0, 1 or 2 (130 only when interrupted), never an internal error, never a traceback,
and never hangs.

Hypothesis draws each command's argument list from the options it knows, values good and
bad (numbers out of range, negative, huge, not numbers, unknown names, paths that do not
exist, a directory, a device, /dev/zero, a FIFO with no writer is left out: it is
covered, with a writer, in tests/test_hostile.py), and words no command knows. Sizes are
kept to what runs in well under a second (1 page); larger requests are refused by the
estimates before any work (tests/test_processes.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import time

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gmemlab.cli import main
from gmemlab.model.vocab import KNOBS, PLATFORMS, PROPOSALS, SERIES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = os.path.join(ROOT, "data", "traces", "launch", "snp_private_first.jsonl")
LOG = os.path.join(ROOT, "data", "recordings", "qemu-snp-boot-pid.log")

WORDS = st.sampled_from(["", "-", "--", "-x", "--nope", "0", "-1", "1", "2", "9", "99999999999999999999",
                         "1e3", "nan", "x", "é", "\udcff".encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                         "/nonexistent", ROOT, "/dev/zero", "/dev/null", TRACE, LOG])
PAGES = st.sampled_from(["1", "0", "-1", "9", "x", "", "99999999999999999999"])
NAMES = {
    "--proposal": st.sampled_from(list(PROPOSALS) + ["private_frist", ""]),
    "--platform": st.sampled_from(list(PLATFORMS) + ["cca", "SNP"]),
    "--series": st.sampled_from(list(SERIES) + ["v13", "v9"]),
    "--engine": st.sampled_from(["auto", "reference", "fast", "batched"]),
    "--pages": PAGES,
    "--max-states": st.sampled_from(["1", "10", "0", "-5", "x"]),
    "--variants": st.sampled_from(["/nonexistent.py", TRACE, ROOT]),
}
FLAGS = ["--json"] + [k.flag for k in KNOBS.values()]


def _options(names):
    pairs = st.lists(st.sampled_from(sorted(names)).flatmap(lambda n: st.tuples(st.just(n), NAMES[n])),
                     max_size=4)
    flags = st.lists(st.sampled_from(FLAGS), max_size=3, unique=True)
    extra = st.lists(WORDS, max_size=2)
    return st.tuples(pairs, flags, extra).map(lambda t: [w for p in t[0] for w in p] + t[1] + t[2])


COMMANDS = st.one_of(
    st.tuples(st.just(["check-trace"]), st.lists(WORDS, min_size=0, max_size=1),
              _options(["--proposal", "--series", "--variants"])),
    # 1 page unless the draw says otherwise (argparse keeps the last --pages)
    st.tuples(st.just(["explore", "--pages", "1"]), st.just([]),
              _options(["--proposal", "--platform", "--series", "--engine", "--pages", "--max-states"])),
    st.tuples(st.just(["compare", "--pages", "1"]), st.just([]),
              _options(["--platform", "--series", "--engine", "--pages", "--max-states"])),
    st.tuples(st.just(["import"]), st.lists(WORDS, max_size=1),
              st.lists(st.sampled_from(["--from", "qemu", "ftrace", "--platform", "tdx", "x"]), max_size=4)),
    st.tuples(st.just(["emulate"]), st.lists(st.sampled_from(["snp-launch", "pinned-retry", "nope", ""]), max_size=1),
              st.lists(st.sampled_from(["--pages", "1", "0", "-3", "99999999999999", "--platform", "tdx",
                                        "--seed", "x", "--events", "5"]), max_size=4)),
    st.tuples(st.just([]), st.lists(WORDS, max_size=3), st.just([])),
)


# No "explain" phase: it traces every line, which makes the time bound meaningless.
@settings(max_examples=300, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(COMMANDS)
def test_any_arguments_exit_0_1_or_2_without_an_internal_error(cmd):
    argv = cmd[0] + cmd[1] + cmd[2]
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:      # --help and --version end through argparse
            code = e.code
    took = time.monotonic() - t0
    assert code in (0, 1, 2), (argv, code, err.getvalue()[-500:])
    assert "internal error" not in err.getvalue(), (argv, err.getvalue()[-500:])
    assert "Traceback" not in err.getvalue(), argv
    assert took < 10, (argv, took)   # never a hang (1-page explorations take well under 1 s)


# --- options that act only with another: refused alone, never silently ignored ------------

def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def test_interleave_takes_1_to_3_threads_and_0_is_not_atomic():
    for n in ("0", "-1", "4"):
        code, err = _run(["explore", "--pages", "1", "--interleave", n])
        assert code == 2 and f"--interleave must be 1..3 threads, got {n}" in err, (n, err)


# The knobs whose help says they act "with --interleave" (gmemlab.model.vocab.KNOBS).
INTERLEAVE_KNOBS = [k.flag for k in KNOBS.values() if k.help.startswith("with --interleave")]


def test_the_race_knobs_need_interleave():
    assert {"--gup-fast-no-recheck", "--populate-holds-lock"} <= set(INTERLEAVE_KNOBS)
    for cmd in (["explore"], ["query", "private_not_pinned"], ["compare"]):
        for flag in INTERLEAVE_KNOBS + ["--no-reduction"]:
            code, err = _run(cmd + ["--pages", "1", flag])
            assert code == 2 and f"gmemlab {cmd[0]}: {flag} needs --interleave" in err, (cmd, flag, err)


def test_folio_pages_needs_huge_folios():
    code, err = _run(["explore", "--pages", "1", "--folio-pages", "3"])
    assert code == 2 and "--folio-pages needs --huge-folios" in err, err
    code, err = _run(["explore", "--pages", "1", "--folio-pages", "1", "--huge-folios"])
    assert code == 0, err


def test_docs_cli_md_has_a_row_for_every_knob():
    """docs/cli.md's knob table names every knob of the registry, so that it cannot fall
    behind gmemlab.model.vocab.KNOBS again."""
    text = open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8").read()
    table = text.split("| option | what it turns on |\n", 1)[1].split("\n\n", 1)[0]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `--")}
    missing = [k.flag for k in KNOBS.values() if k.flag not in rows]
    assert not missing, f"docs/cli.md's knob table lacks {', '.join(missing)}"
