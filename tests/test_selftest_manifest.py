"""Every counterexample of the explore manifest becomes a C selftest that compiles.

data/manifest/explore.json lists, for every configuration gmemlab.explore.manifest.grid()
explores (proposal/platform/series/pages[+knobs]), the invariants it breaks. For every
(configuration, broken invariant) pair this test explores the configuration (once, for
all its invariants), takes the counterexample as ``gmemlab explore --json`` prints it,
makes it a trace the way docs/cli.md shows (a header naming the platform and the series,
then the events with their "expect"), renders it with ``gmemlab selftest`` and compiles
it with the system gcc (-Wall -Wextra -Werror) against the installed uAPI headers plus
gmemlab/render/c/gmemlab_uapi.h, in two gcc processes (-fsyntax-only). One program per
VM type is also linked and run, and must skip (exit 4) where /dev/kvm lacks its type;
the sw_protected ones also run on a default VM of the running kernel (--vm default) up to
their first set_attributes. (No counterexample of the manifest is on a default VM: that
platform breaks no invariant.)

gcc is required under CI (CI=true): there a missing gcc fails the test; elsewhere it
skips with the reason. The whole module takes about 10 s on 2 cores (docs/cli.md).
"""

from __future__ import annotations

import json
import os
import platform as _platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import pytest

from gmemlab.explore import Bounds, explore
from gmemlab.explore.manifest import PATH, grid, key
from gmemlab.model.state import Config
from gmemlab.render.selftest import PLATFORM_VM_TYPES, render
from gmemlab.traces.format import dumps, loads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, PATH)
GCC_FLAGS = ["-Wall", "-Wextra", "-Werror"]
VM_TYPE_NUMBER = {"default": 0, "sw_protected": 1, "snp": 4, "tdx": 5}   # asm/kvm.h: KVM_X86_*_VM
ARM64_VM_TYPES = ("cca",)   # KVM_VM_TYPE_ARM_REALM: an arm64 type, absent wherever the machine is not arm64


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc:
        return gcc
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("gcc is missing under CI: the manifest's selftests must be compiled there")
    pytest.skip("gcc is not installed: the manifest's selftests were not compiled")


def _manifest() -> dict:
    with open(MANIFEST, encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=None)
def manifest_traces() -> tuple:
    """(configuration key, invariant, platform, trace text) for every broken pair of the
    manifest, in manifest order; each configuration explored once."""
    man = _manifest()
    out = []
    for proposal, platform, series, pages, knobs in grid():
        k = key(proposal, platform, series, pages, knobs)
        broken = man[k]["broken"]
        if not broken:
            continue
        x = explore(Config(proposal=proposal, platform=platform, series=series, **knobs), Bounds(pages=pages))
        header = {"format": "gmemlab-trace/1", "platform": platform, "series": series, "page_size": 4096,
                  "source": "emulated", "description": f"counterexample of {k}: {{inv}}"}
        for inv in broken:
            cx = x.counterexample(inv)
            assert cx, f"{k}: the manifest lists {inv} as broken, explore finds no counterexample"
            h = dict(header, description=header["description"].format(inv=inv))
            out.append((k, inv, platform, dumps(h, cx)))
    return tuple(out)


@lru_cache(maxsize=None)
def rendered() -> dict:
    """C text -> [(key, invariant, platform)]: every pair rendered under one file name (the
    header's description names the pair, so each pair is its own program)."""
    programs: dict[str, list] = {}
    for k, inv, platform, text in manifest_traces():
        header, events = loads(text, "manifest_cx.jsonl")
        c = render(header, events, "manifest_cx.jsonl")
        programs.setdefault(c, []).append((k, inv, platform))
    return programs


def test_every_manifest_pair_has_a_counterexample_trace():
    man = _manifest()
    assert {key(*g) for g in grid()} == set(man), "the manifest and manifest.grid() disagree"
    pairs = [(k, inv) for k, v in man.items() for inv in v["broken"]]
    got = [(k, inv) for k, inv, _, _ in manifest_traces()]
    assert sorted(got) == sorted(pairs)
    assert len(got) >= 100, len(got)    # 118 when written
    # the launch platforms are among them: populate is expressed, not refused
    platforms = {p for _, _, p, _ in manifest_traces()}
    assert {"snp", "tdx", "cca"} <= platforms, platforms
    ops = {json.loads(line)["op"] for *_, text in manifest_traces() for line in text.splitlines()[1:]}
    assert "populate" in ops, ops


def _compile_batch(gcc: str, files: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([gcc, "-fsyntax-only", *GCC_FLAGS, *files], capture_output=True, text=True)


def test_every_manifest_counterexample_compiles(tmp_path):
    gcc = _gcc()
    programs = rendered()
    where = {}
    for i, (c, pairs) in enumerate(programs.items()):
        src = tmp_path / f"cx{i:03d}.c"
        src.write_text(c)
        where[str(src)] = pairs
    files = list(where)
    # two gcc processes (the machine's cores), each checking half the files
    halves = [h for h in (files[0::2], files[1::2]) if h]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda fs: _compile_batch(gcc, fs), halves))
    for r in results:
        if r.returncode:
            bad = sorted({line.split(":", 1)[0] for line in r.stderr.splitlines() if line.split(":", 1)[0] in where})
            who = [pair for f in bad for pair in where[f]]
            pytest.fail(f"{len(bad)} manifest selftest(s) do not compile, e.g. {who[:3]}:\n{r.stderr[:4000]}")
    assert len(files) == len(manifest_traces())   # one program per pair (the description names it)


def _vm_types() -> list[int] | None:
    """The VM types /dev/kvm accepts, or None without /dev/kvm."""
    if not os.path.exists("/dev/kvm"):
        return None
    from gmemlab.kvm.runner import Kvm, KvmUnavailable
    try:
        kvm = Kvm()
    except KvmUnavailable:
        return []
    try:
        return kvm.capabilities["VM_TYPES"] or [0]
    finally:
        kvm.close()


def test_one_manifest_selftest_per_vm_type_links_and_skips_where_the_type_is_absent(tmp_path):
    """One program per VM type is built for real (linked) and run: it exits 4 with a
    message where the machine lacks the type (SNP and TDX here; a CCA Realm on any
    machine that is not arm64), and otherwise runs to a verdict (0 or 1, never a crash)."""
    gcc = _gcc()
    chosen: dict[str, str] = {}
    for c, pairs in rendered().items():
        chosen.setdefault(pairs[0][2], c)
    assert {"snp", "tdx", "cca"} <= set(chosen), set(chosen)
    types = _vm_types()
    for platform, c in sorted(chosen.items()):
        src, exe = tmp_path / f"{platform}.c", tmp_path / platform
        src.write_text(c)
        r = subprocess.run([gcc, *GCC_FLAGS, "-o", str(exe), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, f"{platform}: does not build:\n{r.stderr}"
        assert f"#define TRACE_VM_TYPE {PLATFORM_VM_TYPES[platform]}" in c
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
        if platform in ARM64_VM_TYPES:
            absent = _platform.machine() not in ("aarch64", "arm64")
        else:
            absent = types is None or VM_TYPE_NUMBER[platform] not in types
        if absent:
            assert run.returncode == 4, f"{platform}: exit {run.returncode}\n{run.stdout}{run.stderr}"
            assert run.stdout.startswith("SKIP: ") and run.stdout.strip() != "SKIP:", run.stdout
        else:
            assert run.returncode in (0, 1, 4), f"{platform}: exit {run.returncode}\n{run.stdout}{run.stderr}"


def test_sw_protected_counterexamples_run_on_a_default_vm_up_to_their_conversion(tmp_path):
    """The manifest's sw_protected counterexamples, on a default VM of the running
    kernel (--vm default): their calls run for real up to the first set_attributes,
    which a kernel without in-place conversion answers ENOTTY (the program skips
    there, exit 4); a kernel with it runs them to a verdict."""
    gcc = _gcc()
    if not os.path.exists("/dev/kvm"):
        if os.environ.get("GMEMLAB_REQUIRE_KVM"):
            pytest.fail("no /dev/kvm: the programs did not run (GMEMLAB_REQUIRE_KVM is set)")
        pytest.skip("no /dev/kvm: the programs did not run")
    programs: dict[str, str] = {}
    for k, inv, platform, text in manifest_traces():
        if platform not in ("sw_protected", "default"):
            continue
        header, events = loads(text, "sw_cx.jsonl")
        programs.setdefault(render(header, events, "sw_cx.jsonl", vm="default"), f"{k}: {inv}")
    assert programs, "the manifest has no sw_protected counterexample any more"
    for i, (c, label) in enumerate(sorted(programs.items())):
        src, exe = tmp_path / f"sw{i}.c", tmp_path / f"sw{i}"
        src.write_text(c)
        r = subprocess.run([gcc, *GCC_FLAGS, "-o", str(exe), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, f"{label}: does not build:\n{r.stderr}"
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
        assert run.returncode in (0, 1, 4), f"{label}: exit {run.returncode}\n{run.stdout}{run.stderr}"
        if run.returncode == 1:
            assert run.stderr.startswith("FAIL trace line "), run.stderr
        if run.returncode == 4:
            assert run.stdout.startswith("SKIP: "), run.stdout
