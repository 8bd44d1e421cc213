"""Notebooks are committed without outputs: a git pre-commit hook that refuses them.

``python3 gmemlab/githooks.py install`` (the Makefile runs it for `make lab` and `make
test`) writes ``pre-commit`` into the checkout's hooks directory (``git rev-parse
--git-path hooks``, so core.hooksPath and worktrees are honoured). Outside a git
checkout, or without git, it does nothing and succeeds; a pre-commit hook that is not
this one is left alone (with a note). The hook checks the staged version of every
``*.ipynb`` being committed and refuses the commit if one has outputs, execution counts
or papermill's injected-parameters cell: `make strip` clears them.

Standard library only, and runnable as a script: the hook runs even where the virtual
environment is gone. tests/test_notebooks.py holds the tree to the same rule (CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

MARKER = "# gmemlab: refuse notebooks with outputs (gmemlab/githooks.py)"
HOOK = f"""#!/bin/sh
{MARKER}
top=$(git rev-parse --show-toplevel) || exit 1
if [ -f "$top/gmemlab/githooks.py" ]; then
    exec python3 "$top/gmemlab/githooks.py" pre-commit
fi
"""


def problems(text: str) -> list[str]:
    """What keeps one notebook (its JSON text) from being committed; [] if nothing."""
    try:
        nb = json.loads(text)
    except ValueError as e:
        return [f"not JSON ({e})"]
    out = []
    for i, cell in enumerate(nb.get("cells", [])):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            out.append(f"cell {i}: papermill's injected-parameters cell")
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            out.append(f"cell {i}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            out.append(f"cell {i}: execution count {cell['execution_count']}")
    return out


def unstripped(paths) -> list[str]:
    """``path: problem`` for every notebook file among ``paths`` that is not stripped."""
    found = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            found += [f"{path}: {p}" for p in problems(f.read())]
    return found


def _git(*args: str, cwd: str | None = None) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except OSError:   # no git
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def pre_commit(cwd: str | None = None) -> int:
    """The hook: 1 (and why, on stderr) if a staged notebook has outputs, else 0."""
    staged = _git("diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z", cwd=cwd)
    bad = []
    for path in (staged or "").split("\0"):
        if not path.endswith(".ipynb"):
            continue
        blob = _git("show", f":{path}", cwd=cwd)
        if blob is not None:
            bad += [f"{path}: {p}" for p in problems(blob)]
    if bad:
        print("gmemlab: notebooks are committed without outputs; run `make strip`, `git add` "
              "them and commit again:", *("  " + b for b in bad), sep="\n", file=sys.stderr)
        return 1
    return 0


def install(cwd: str | None = None, log=print) -> str | None:
    """Write the pre-commit hook into the git checkout around ``cwd``; returns its path,
    or None when there is no checkout (or another pre-commit hook is already there)."""
    cwd = cwd or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if _git("rev-parse", "--is-inside-work-tree", cwd=cwd) != "true":
        return None
    hooks = _git("rev-parse", "--git-path", "hooks", cwd=cwd)
    if not hooks:
        return None
    hooks = os.path.join(cwd, hooks)
    path = os.path.join(hooks, "pre-commit")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            current = f.read()
        if current == HOOK:
            return path
        if MARKER not in current:
            log(f"gmemlab: {path} exists and is not gmemlab's: left alone "
                "(add `python3 gmemlab/githooks.py pre-commit` to it)")
            return None
    os.makedirs(hooks, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(HOOK)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    log(f"gmemlab: installed {path} (refuses notebooks with outputs)")
    return path


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd == "install":
        try:
            install()
        except OSError as e:   # never fail the set-up over the hook
            print(f"gmemlab: no pre-commit hook installed ({e})", file=sys.stderr)
        return 0
    if cmd == "pre-commit":
        return pre_commit()
    if cmd == "check":
        bad = unstripped(argv[1:])
        print(*bad, sep="\n", file=sys.stderr) if bad else None
        return 1 if bad else 0
    print("usage: githooks.py install | pre-commit | check NOTEBOOK...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
