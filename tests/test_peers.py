"""SPIN on the same semantics (benchmarks/peers/gmem_sw_v8.pml) counts exactly the
states and transitions gmemlab's explorer finds (where spin and a C compiler exist)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Under CI the set-up (.ci/system-deps.sh) installs spin, so the test must run there.
@pytest.mark.skipif((not shutil.which("spin") or not (shutil.which("gcc") or shutil.which("cc")))
                    and os.environ.get("CI") != "true",
                    reason="needs the Debian package spin and a C compiler (make test installs spin as root)")
def test_spin_agrees_with_the_explorer(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "peers", "run_spin.py"),
                        "--keep", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["agree"] and res["spin"]["states"] == res["gmemlab"]["states"] == 578
    assert res["spin"]["transitions"] == res["gmemlab"]["transitions"]
