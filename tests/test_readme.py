"""Every command of the README runs as written (from a folder holding the project's data/,
as a reader who cloned it would), and exits as the README says: 0, or 1 where the
command explores or checks a proposal that breaks an invariant."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _commands() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("gmemlab "):     # `make lab` / `make test` are the suite itself
                out.append(line)
    return out


COMMANDS = _commands()


def _quoted() -> dict[str, list[str]]:
    """The outputs the README quotes: an untagged block under a paragraph ending in
    "`NAME` prints ...:" is the output of the README's one command "gmemlab NAME ...";
    its lines, a line "..." standing for lines left out."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    out = {}
    for name, block in re.findall(r"`(\w[\w-]*)` prints[^`]*?(?:`[^`]*`[^`]*?)*:\n\n```\n(.*?)```", text, re.S):
        lines = [c for c in COMMANDS if shlex.split(c)[1] == name]
        assert len(lines) == 1, f"the README quotes {name}'s output but runs {len(lines)} {name} commands"
        out[lines[0]] = block.splitlines()
    return out


QUOTED = _quoted()


def _shown_in(quoted: list[str], printed: list[str]) -> bool:
    """Whether the quoted lines are the printed ones, "..." leaving out any run of lines
    (none included); the others in order and each exactly as printed."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if q == "..." else re.escape(q + "\n") for q in quoted)
    return re.fullmatch(pattern + (r"(?:[^\n]*\n)*" if quoted[-1:] == ["..."] else ""),
                        "".join(p + "\n" for p in printed)) is not None


def test_the_readme_quotes_the_compare_matrix():
    assert any(shlex.split(c)[1] == "compare" for c in QUOTED)
    printed = ["a", "b", "c", "d"]
    assert _shown_in(["a", "...", "d"], printed) and _shown_in(["a", "b", "..."], printed)
    assert not _shown_in(["a", "c", "..."], printed) and not _shown_in(["a", "b"], printed)


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("line", COMMANDS)
def test_every_readme_command_runs_as_written(line, tmp_path):
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")
    args = shlex.split(line)
    bin_dir = os.path.dirname(sys.executable)
    gmemlab = os.path.join(bin_dir, "gmemlab")
    cmd = [gmemlab] + args[1:] if os.path.exists(gmemlab) else [sys.executable, "-m", "gmemlab"] + args[1:]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    # it breaks invariants: by design of that proposal, or a race knob opens the race
    breaks = "userspace-converts" in args or bool({"--check-before-unmap", "--gup-fast-no-recheck"} & set(args))
    assert r.returncode == (1 if breaks else 0), (line, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    if line in QUOTED:   # what the README says it prints, it prints
        assert _shown_in(QUOTED[line], r.stdout.splitlines()), (line, r.stdout)
    for i, a in enumerate(args):
        if a in ("-o", "--out"):
            assert (tmp_path / args[i + 1]).exists(), line
