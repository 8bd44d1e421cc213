"""Notebooks cannot be committed with outputs: the pre-commit hook of gmemlab/githooks.py
(installed by `make lab` / `make test` inside a git checkout, and a silent no-op outside
one) refuses a staged notebook with outputs, execution counts or papermill's injected
cell. Runs in throw-away repositories under tmp_path, never in this checkout's git."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKS = os.path.join(ROOT, "gmemlab", "githooks.py")

if shutil.which("git") is None:
    pytest.skip("git is missing", allow_module_level=True)


def _env(tmp_path):
    return dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path), GIT_CONFIG_GLOBAL=os.devnull,
                GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")


def _git(repo, env, *args):
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)


def _notebook(executed: bool) -> str:
    with open(os.path.join(ROOT, "notebooks", "06_variants.ipynb")) as f:
        nb = json.load(f)
    if executed:
        code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        code["execution_count"] = 1
        code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    return json.dumps(nb, indent=1) + "\n"


def test_hook_refuses_a_notebook_with_outputs(tmp_path):
    env = _env(tmp_path)
    repo = tmp_path / "repo"
    (repo / "gmemlab").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    shutil.copy(HOOKS, repo / "gmemlab" / "githooks.py")
    assert _git(repo, env, "init", "-q").returncode == 0
    r = subprocess.run([sys.executable, "gmemlab/githooks.py", "install"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    hook = repo / ".git" / "hooks" / "pre-commit"
    assert hook.is_file() and os.access(hook, os.X_OK)
    # installing again changes nothing
    r = subprocess.run([sys.executable, "gmemlab/githooks.py", "install"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and hook.read_text().count("pre-commit\n") == 1

    nb = repo / "notebooks" / "06_variants.ipynb"
    nb.write_text(_notebook(executed=True))
    _git(repo, env, "add", "-A")
    r = _git(repo, env, "commit", "-q", "-m", "outputs")
    assert r.returncode != 0
    assert "make strip" in r.stderr and "06_variants.ipynb: cell" in r.stderr and "output(s)" in r.stderr
    assert "execution count 1" in r.stderr

    nb.write_text(_notebook(executed=False))
    _git(repo, env, "add", "-A")
    r = _git(repo, env, "commit", "-q", "-m", "stripped")
    assert r.returncode == 0, r.stderr
    # the staged version is what counts, not the file on disk
    nb.write_text(_notebook(executed=True))
    (repo / "other.txt").write_text("x")
    _git(repo, env, "add", "other.txt")
    assert _git(repo, env, "commit", "-q", "-m", "other").returncode == 0


def test_install_outside_a_checkout_does_nothing(tmp_path):
    env = _env(tmp_path)
    (tmp_path / "gmemlab").mkdir()
    shutil.copy(HOOKS, tmp_path / "gmemlab" / "githooks.py")
    r = subprocess.run([sys.executable, "gmemlab/githooks.py", "install"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    assert not (tmp_path / ".git").exists()
    # and with no git on the PATH either
    r = subprocess.run([sys.executable, "gmemlab/githooks.py", "install"], cwd=tmp_path,
                       env=dict(env, PATH=os.path.dirname(sys.executable)), capture_output=True, text=True)
    assert r.returncode == 0


def test_a_foreign_hook_is_left_alone(tmp_path):
    env = _env(tmp_path)
    repo = tmp_path / "repo"
    (repo / "gmemlab").mkdir(parents=True)
    shutil.copy(HOOKS, repo / "gmemlab" / "githooks.py")
    _git(repo, env, "init", "-q")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\nexit 0\n")
    r = subprocess.run([sys.executable, "gmemlab/githooks.py", "install"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "left alone" in r.stdout
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
