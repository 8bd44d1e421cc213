"""Kernel against model, one op sequence at a time: the core of the differential fuzzer
(tests/test_kvm.py) and of benchmarks/kvm_fuzz.py.

``judge(kvm, events)`` runs the events on the kernel (gmemlab.kvm.runner), writes the
recording as a trace, reads it back and replays it through the model of platform
"default" (gmemlab.traces.replay): the first event whose model outcome contradicts the
kernel's is the divergence, and the recording is a file that ``gmemlab check-trace``
replays to the same divergence.

The argument vocabulary below keeps sequences within what the kernel can judge (one
small guest_memfd, a few pages, shared guest views), with the edges that found model
bugs: unaligned and zero lengths, offsets past the end of the file, and u64 values the
kernel reads as a negative loff_t.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PS = 4096
TOP = 1 << 63  # a u64 at or above this is a negative loff_t to the kernel

# create_gmem: mostly a few pages; the refused sizes of kvm_gmem_create.
CREATE_SIZES = (PS, 2 * PS, 3 * PS, 4 * PS)
BAD_CREATE_SIZES = (0, 1, PS - 1, PS + 1, TOP, (1 << 64) - PS)
GMEM_FLAG_SETS = (("MMAP", "INIT_SHARED"), ("MMAP",), (), ("INIT_SHARED",), ("MMAP", "INIT_SHARED", "NO_DIRECT_MAP"),
                  ("NO_DIRECT_MAP",))
# Offsets: a page of the file or just past it (+ an in-page offset), or loff_t edges.
IN_PAGE = (0, 0, 0, 1, PS - 1)
HUGE_OFFSETS = (TOP - 2 * PS, TOP - PS, TOP, (1 << 64) - PS)
LENGTHS = (PS, PS, 2 * PS, 3 * PS, 0, 1, PS - 1, PS + 1)
HUGE_LENGTHS = (TOP - PS, TOP, (1 << 64) - PS)
VALUES = (0, 1, 0x41, 0xAA, 0xFF)
OPS = ("create_gmem", "host_read", "host_write", "punch_hole", "pin", "unpin", "guest_read", "guest_write")
# How often each op is drawn (an unpin that finds no pin of the run ends it: fewer of them).
OP_WEIGHTS = (1, 2, 2, 2, 2, 1, 2, 2)

HEADER = {"format": "gmemlab-trace/1", "platform": "default", "series": "v8", "page_size": PS,
          "source": "scenario", "description": "gmemlab's kernel-vs-model fuzzer"}


def make_event(op: str, offset: int = 0, size: int = PS, value: int = 0, flags: tuple = ()) -> dict:
    """One trace event of the fuzzer's vocabulary (a plain dict, as a file holds it)."""
    if op == "create_gmem":
        return {"op": op, "size": size, "flags": list(flags)}
    if op in ("host_read",):
        return {"op": op, "offset": offset}
    if op == "host_write":
        return {"op": op, "offset": offset, "value": value}
    if op in ("punch_hole", "pin", "unpin"):
        return {"op": op, "offset": offset, "size": size}
    if op == "guest_read":
        return {"op": op, "offset": offset, "private": False}
    if op == "guest_write":
        return {"op": op, "offset": offset, "private": False, "value": value}
    raise ValueError(op)


def outcome_key(outcome: dict) -> str:
    """A coarse name of an outcome, for coverage: "ret=EINVAL", "ok+value", "signal=SIGBUS".

    >>> outcome_key({"ok": True, "value": 3}), outcome_key({"ret": 0}), outcome_key({"exit": "MMIO"})
    ('ok+value', 'ret=0', 'exit=MMIO')
    """
    if "ret" in outcome:
        return f"ret={outcome['ret']}"
    for k in ("signal", "exit", "exception"):
        if k in outcome:
            return f"{k}={outcome[k]}"
    return "ok+value" if "value" in outcome else "ok"


@dataclass
class Verdict:
    """One sequence judged: what ran, where the kernel stopped, the first divergence."""

    text: str                       # the recording (gmemlab-trace/1), kernel outcomes as "expect"
    events_run: int
    stopped: dict | None
    divergence: dict | None         # replay's {"line", "op", "expected" (kernel), "predicted" (model)}
    pairs: set = field(default_factory=set)  # (op, outcome_key) the kernel reached


def judge(kvm, events: list, header: dict | None = None) -> Verdict:
    """Run events (plain dicts) on the kernel and replay the recording through the model."""
    from gmemlab.kvm.runner import recorded_header, recorded_text, run_events
    from gmemlab.traces.format import dumps, loads
    from gmemlab.traces.replay import config_for, replay

    h, evs = loads(dumps(header or HEADER, events), "<fuzz>")
    rec = run_events(kvm, evs)
    text = recorded_text(recorded_header(kvm, h, "<fuzz>", rec), rec)
    h2, recorded = loads(text, "<recording>")
    report = replay(config_for(h2), recorded, "<recording>")
    pairs = {(e["op"], outcome_key(e["expect"])) for e in rec.events}
    return Verdict(text, len(rec.events), rec.stopped, report.divergence, pairs)


def random_events(rng: random.Random, max_ops: int = 10) -> list:
    """A random sequence of the fuzzer's vocabulary. ``rng`` is a random.Random: the
    benchmark's seeded one, or hypothesis' own (st.randoms), which shrinks it.

    Biased towards sequences the kernel can run to the end: a first create_gmem (mostly
    MMAP | INIT_SHARED, which the guest of an emulated vCPU can reach), unpins mostly of
    what an earlier pin took.
    """
    npages = 4  # of the file the last create_gmem of a good size made

    def offset():
        r = rng.random()
        if r < 0.03:
            return rng.choice(HUGE_OFFSETS)
        page = rng.randrange(npages) if r < 0.8 else npages + rng.randrange(2)
        return page * PS + rng.choice(IN_PAGE)

    def length(zero_ok: bool = True):
        if rng.random() < 0.03:
            return rng.choice(HUGE_LENGTHS)
        return rng.choice(LENGTHS if zero_ok else LENGTHS[:4])

    evs: list = []
    pins: list = []
    if rng.random() < 0.95:
        flags = GMEM_FLAG_SETS[0] if rng.random() < 0.6 else rng.choice(GMEM_FLAG_SETS[1:3])
        size = rng.choice(CREATE_SIZES)
        npages = size // PS
        evs.append(make_event("create_gmem", size=size, flags=flags))
    for _ in range(rng.randint(1, max_ops)):
        op = rng.choices(OPS, OP_WEIGHTS)[0]
        if op == "create_gmem":
            size = rng.choice(BAD_CREATE_SIZES if rng.random() < 0.5 else CREATE_SIZES)
            flags = rng.choice(GMEM_FLAG_SETS)
            if size in CREATE_SIZES and "NO_DIRECT_MAP" not in flags:
                npages = size // PS
            evs.append(make_event(op, size=size, flags=flags))
        elif op == "unpin" and pins and rng.random() < 0.8:
            evs.append(make_event(op, **rng.choice(pins)))
        elif op in ("pin", "unpin"):
            where = {"offset": offset(), "size": length(zero_ok=rng.random() < 0.1)}
            evs.append(make_event(op, **where))
            if op == "pin" and where["offset"] + where["size"] <= npages * PS:
                pins.append(where)
        elif op == "punch_hole":
            evs.append(make_event(op, offset=offset(), size=length()))
        else:
            evs.append(make_event(op, offset=offset(), value=rng.choice(VALUES)))
    return evs
