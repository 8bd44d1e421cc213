"""gmemlab emulate and the emulated corpus in data/emulated."""

import collections
import json
import os

import pytest

from gmemlab.cli import main
from gmemlab.errors import UsageError
from gmemlab.model.vocab import PROPOSALS
from gmemlab.traces.emulate import SCENARIOS, corpus, emulate, emulate_lines, verdict
from gmemlab.traces.format import dumps, loads
from gmemlab.traces.format import iter_file
from gmemlab.traces.replay import config_for, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATED = os.path.join(ROOT, "data", "emulated")
MANIFEST = json.load(open(os.path.join(EMULATED, "manifest.json")))


def test_manifest_covers_every_file():
    files = sorted(f for f in os.listdir(EMULATED) if f.endswith(".jsonl"))
    assert files == sorted(MANIFEST)
    assert sorted(MANIFEST) == sorted(name for name, *_ in corpus())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_emulated_file_replays_with_its_verdict(name):
    path = os.path.join(EMULATED, name)
    header = next(iter_file(path))
    assert header["source"] == "emulated"
    for proposal in PROPOSALS:
        events = iter_file(path)
        next(events)
        report = replay(config_for(header, proposal), events, path)
        assert verdict(report) == MANIFEST[name]["verdicts"][proposal], proposal
    maker = header["description"].split("proposal ")[1].split(",")[0]
    assert MANIFEST[name]["verdicts"][maker]["verdict"] in ("conforms", "violates")


def test_corpus_is_up_to_date():
    """The committed files are what the emulator makes today (regenerate: data/README.md)."""
    for name, scenario, proposal, platform, opts in corpus():
        text = "".join(emulate_lines(scenario, proposal, platform, **opts))
        with open(os.path.join(EMULATED, name), encoding="utf-8") as f:
            assert f.read() == text, f"{name} is stale: python -m gmemlab.traces.emulate data/emulated"
        assert MANIFEST[name]["command"].startswith(f"gmemlab emulate {scenario} --proposal {proposal} "
                                                    f"--platform {platform}")


def _text(*args, **kwargs):
    return "".join(emulate_lines(*args, **kwargs))


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = _text("guest-boot", pages=2048, events=800, seed=7)
    assert a == _text("guest-boot", pages=2048, events=800, seed=7)
    assert a != _text("guest-boot", pages=2048, events=800, seed=8)
    assert len(a.splitlines()) == 801
    # the streaming writer makes what format.dumps makes
    header, events = emulate("guest-boot", pages=2048, events=800, seed=7)
    assert dumps(header, events) == a


def test_guest_boot_is_linux_like():
    header, events = emulate("guest-boot", pages=4096, events=3000, seed=1)
    events = list(events)
    assert "guest-boot" in header["description"] and "seed 1" in header["description"]
    ops = collections.Counter(ev["op"] for ev in events)
    for op in ("create_gmem", "host_write", "set_attributes", "populate", "finalize", "guest_accept",
               "map_gpa_range", "guest_read", "guest_write"):
        assert ops[op], op
    sizes = {ev["size"] for ev in events if ev["op"] == "map_gpa_range"}
    assert {4096, 2 << 20} <= sizes
    # every guest map_gpa_range is answered by a set_attributes of the same range, and a
    # conversion to private is followed by the guest's accept
    for k, ev in enumerate(events[:-2]):
        if ev["op"] == "map_gpa_range":
            answer = events[k + 1]
            assert answer["op"] == "set_attributes"
            assert (answer["offset"], answer["size"]) == (ev["offset"], ev["size"])
            assert answer["attributes"] == ("private" if ev["private"] else "shared")
            if ev["private"] and answer["expect"] == {"ret": 0}:
                assert events[k + 2]["op"] == "guest_accept"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "guest-boot"])
def test_launch_scenarios_conform_to_their_proposal(scenario):
    for platform in SCENARIOS[scenario][0]:
        for proposal in PROPOSALS:
            header, events = loads(_text(scenario, proposal, platform, pages=6, seed=3))
            report = replay(config_for(header, proposal), events)
            assert report.conforms, (platform, proposal, report.divergence)
            ops = [ev["op"] for ev in events]
            assert "finalize" in ops and "populate" in ops


def test_pinned_retry_fails_then_succeeds():
    for platform, proposal, failing in (("snp", "private-first", "EAGAIN"), ("snp", "populate-converts", "EIO"),
                                        ("tdx", "populate-converts", "EAGAIN"),
                                        ("tdx", "userspace-converts", "EAGAIN")):
        _, events = emulate("pinned-retry", proposal, platform, pages=8, seed=0)
        rets = [ev["expect"].get("ret") for ev in events if ev["op"] in ("set_attributes", "populate")]
        assert failing in rets and rets[-1] == 0, (platform, proposal, rets)


def test_bad_arguments(capsys, tmp_path):
    out = tmp_path / "x.jsonl"
    for argv in (["emulate", "boot"], ["emulate", "tdx-launch", "--platform", "snp"],
                 ["emulate", "snp-launch", "--platform", "sw_protected"],
                 ["emulate", "pinned-retry", "--platform", "sw_protected"],
                 ["emulate", "snp-launch", "--events", "10"], ["emulate", "guest-boot", "--pages", "100"]):
        assert main(argv + ["-o", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith("gmemlab: ")
        if argv[1] != "snp-launch" and argv[1] != "guest-boot":
            assert "snp-launch" in err and "guest-boot" in err, err
    assert not out.exists()
    with pytest.raises(UsageError):
        emulate("nope")


def test_cli_writes_the_trace(capsys, tmp_path):
    out = tmp_path / "t.jsonl"
    assert main(["emulate", "legacy-copy", "--platform", "tdx", "--pages", "5", "--seed", "2", "-o", str(out)]) == 0
    assert out.read_text() == _text("legacy-copy", platform="tdx", pages=5, seed=2)
    assert main(["emulate", "legacy-copy", "--platform", "tdx", "--pages", "5", "--seed", "2"]) == 0
    assert capsys.readouterr().out == out.read_text()
    assert main(["check-trace", str(out)]) == 0
