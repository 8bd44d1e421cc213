"""SPIN on the same semantics (benchmarks/peers/gmem_sw_v8.pml) counts exactly the
states and transitions gmemlab's explorer finds (where spin and a C compiler exist),
at any page count the peer takes; a count it cannot take is refused, not explored as
some other model."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from gmemlab.model.vocab import MAX_PAGES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SPIN = os.path.join(ROOT, "benchmarks", "peers", "run_spin.py")


def run_spin(*args, timeout=180):
    return subprocess.run([sys.executable, RUN_SPIN, *args], capture_output=True, text=True, timeout=timeout)


# Under CI the set-up (.ci/system-deps.sh) installs spin, so the test must run there.
needs_spin = pytest.mark.skipif((not shutil.which("spin") or not (shutil.which("gcc") or shutil.which("cc")))
                                and os.environ.get("CI") != "true",
                                reason="needs the Debian package spin and a C compiler (make test installs spin as root)")


# 4 pages: past the three per-page lines the model once had written out (which explored
# a smaller model, silently, at -DNPAGES=4); the states gmemlab finds there are given so
# that both sides exploring the same wrong model would not pass either.
@needs_spin
@pytest.mark.parametrize("pages, states", [(2, 578), (4, 167_042)])
def test_spin_agrees_with_the_explorer(tmp_path, pages, states):
    r = run_spin("--pages", str(pages), "--keep", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["agree"] and res["spin"]["states"] == res["gmemlab"]["states"] == states
    assert res["spin"]["transitions"] == res["gmemlab"]["transitions"]
    # the verifier was generated for this page count, from the lines written for it
    with open(tmp_path / "gmem_sw_v8_pages.pml") as f:
        assert f.read().count("PAGE(") == pages
    for side in ("spin", "gmemlab"):
        assert res[side]["peak_rss_mib"] > 0
    assert res["ratios"]["rss"] == round(res["gmemlab"]["peak_rss_mib"] / res["spin"]["peak_rss_mib"], 3)


@pytest.mark.parametrize("pages", [0, MAX_PAGES + 1])
def test_unsupported_page_count_is_refused(pages):
    r = run_spin("--pages", str(pages), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    err = json.loads(r.stdout)["error"]
    assert f"--pages {pages}" in err and f"1..{MAX_PAGES}" in err
    assert "Traceback" not in r.stderr
