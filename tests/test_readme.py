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
    for i, a in enumerate(args):
        if a in ("-o", "--out"):
            assert (tmp_path / args[i + 1]).exists(), line
