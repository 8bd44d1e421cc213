"""Small builders shared by the tests."""

from gmemlab.model.state import Config, VmState
from gmemlab.model.step import step

PS = 4096


def run(cfg: Config, *events: dict, state: VmState = VmState()):
    """Apply events in order; return (final state, list of outcomes)."""
    outs = []
    for ev in events:
        ev = {"process": "vmm", **ev}
        if ev["op"] in ("create_gmem", "set_attributes"):
            ev.setdefault("flags", ())
        state, out, _ = step(cfg, state, ev)
        outs.append(out)
    return state, outs


def create(pages=2, *flags):
    return {"op": "create_gmem", "size": pages * PS, "flags": tuple(flags or ("MMAP", "INIT_SHARED"))}


def attrs(first, n, attr, *flags):
    return {"op": "set_attributes", "offset": first * PS, "size": n * PS, "attributes": attr, "flags": tuple(flags)}


def write(page, value="A", process="vmm"):
    return {"op": "host_write", "offset": page * PS, "value": ord(value) if isinstance(value, str) else value,
            "process": process}


def read(page, process="vmm"):
    return {"op": "host_read", "offset": page * PS, "process": process}


def populate(first, n, src=None, value=None):
    ev = {"op": "populate", "offset": first * PS, "size": n * PS, "src": src}
    if src == "buffer":
        ev["value"] = ord(value)
    return ev


def pin(page, n=1):
    return {"op": "pin", "offset": page * PS, "size": n * PS}


def unpin(page, n=1):
    return {"op": "unpin", "offset": page * PS, "size": n * PS}


def gread(page, private=True):
    return {"op": "guest_read", "offset": page * PS, "private": private}


def gwrite(page, value="G", private=True):
    return {"op": "guest_write", "offset": page * PS, "private": private, "value": ord(value)}


def accept(first, n=1):
    return {"op": "guest_accept", "offset": first * PS, "size": n * PS}


def punch(first, n):
    return {"op": "punch_hole", "offset": first * PS, "size": n * PS}


FINALIZE = {"op": "finalize"}
