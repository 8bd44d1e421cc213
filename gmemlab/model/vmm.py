"""The reference VMM: what userspace does to launch a VM under each proposal, seeing
only what its calls return.

no_stuck_state asks whether *some* sequence of calls still launches the VM; the caller
it imagines sees the whole state. A real VMM sees the return value, error_offset and
the pages done of each call, and remembers what it did itself. The seed's argument
against populate-converts is about exactly that difference: populate would inherit
conversion's failures (EAGAIN for an elevated refcount, ENOMEM), while the platform
ioctls have no field to say which page stopped it and why ("It doesn't look like there's
room for this information to be plumbed out through the platform-specific ioctls",
Ackerley Tng, quoted in "Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for
KVM_SET_MEMORY_ATTRIBUTES2", 2026-04-07).

A Policy is data: the launch script a VMM follows for a proposal (as QEMU would write it
from the uAPI documentation), and the errnos it treats as transient. The script runs on
the whole file, one call per step, as VMMs call it; the VMM's own state (``Vmm``) is
where in the script it is and the first page its current step has not done.

What the VMM does with an outcome (``observe``):
- 0: the step is done (a host write: that page; a populate: the pages it says it did,
  and it calls again for the rest, as KVM_SEV_SNP_LAUNCH_UPDATE's documentation asks:
  "the caller should continue calling this command until those fields indicate the
  entire range has been processed", Documentation/virt/kvm/x86/amd-memory-encryption.rst).
- an errno the policy's ``retry`` names (KVM_SET_MEMORY_ATTRIBUTES2 documents EAGAIN
  for an unexpected reference, with error_offset, and ENOMEM; EINTR is a signal): call
  again from where it stopped (KVM_TDX_INIT_MEM_REGION advances gpa and nr_pages past
  the pages it did, Documentation/virt/kvm/x86/intel-tdx.rst).
- anything else: the VMM cannot tell what to change, and stops the launch (QEMU's
  sev_snp_launch_update and tdx_init_mem_region report the error and exit).
  Assumption A-vmm-documented.

>>> from gmemlab.model.state import Config
>>> p = policy_for(Config(proposal="populate-converts", platform="snp"))
>>> p.script
('create', 'load', 'populate', 'finalize')
>>> v = Vmm()
>>> next_call(p, Config(proposal="populate-converts", platform="snp"), 2, ord("A"), v)["op"]
'create_gmem'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gmemlab.errors import UsageError
from gmemlab.model.events import Event, event
from gmemlab.model.platforms import PLATFORMS
from gmemlab.model.state import Config

# What a VMM must do about each cause of a failed call, as the uAPI documentation lets
# it decide. Two causes that share an outcome but need different recoveries leave the
# VMM guessing (gmemlab.explore.recovery.error_information).
RECOVERY = {
    "EAGAIN": "drop the page's extra references, then retry",   # KVM_SET_MEMORY_ATTRIBUTES2: error_offset
    "ENOMEM": "free memory, then retry",
    "EINTR": "retry",
}
GIVE_UP = "stop the launch"


def recovery(cause: str | None) -> str:
    """What the VMM must do for a failure with this cause.

    >>> recovery("EAGAIN"), recovery("EINVAL")
    ("drop the page's extra references, then retry", 'stop the launch')
    """
    return RECOVERY.get(cause, GIVE_UP)


@dataclass(frozen=True)
class Policy:
    proposal: str
    claim: str
    source: str
    # The launch, step by step: "create" (KVM_CREATE_GUEST_MEMFD with MMAP|INIT_SHARED),
    # "load" (write the image through mmap, page by page), "convert" (the whole file to
    # private with KVM_SET_MEMORY_ATTRIBUTES2), "populate" (the launch ioctl over the
    # whole file, source NULL: in place; on a platform that requires a source, cca, from
    # the copy of the image the VMM kept: the copy-aside launch), "finalize".
    script: tuple
    # The errnos the VMM treats as transient: it calls again from where it stopped.
    retry: frozenset = frozenset(RECOVERY)


STEPS = ("create", "load", "convert", "populate", "finalize")

# On a platform without a trusted entity there is no launch: load, convert, run.
NO_TE_SCRIPT = ("create", "load", "convert")

POLICIES = {
    "private-first": Policy(
        "private-first", "load while shared, convert to private, populate in place, finalize",
        "the proposed flow for in-place conversion, steps 1-4 (seed message, 2026-04-07)",
        ("create", "load", "convert", "populate", "finalize")),
    "populate-converts": Policy(
        "populate-converts", "load while shared, populate (which converts), finalize",
        "populate converts the destination itself (proposed on a call; seed message)",
        ("create", "load", "populate", "finalize")),
    "userspace-converts": Policy(
        "userspace-converts", "load while shared, populate on shared memory, convert to private, finalize",
        "userspace sets the destination shared before populate and converts afterwards (seed message)",
        ("create", "load", "populate", "convert", "finalize")),
}


def policy_for(cfg: Config) -> Policy:
    """The reference VMM of cfg's proposal (a designer's variant: its base's VMM)."""
    name = cfg.rules.base or cfg.rules.name
    if name not in POLICIES:
        raise UsageError(f"no reference VMM for proposal {name!r}; known: {', '.join(POLICIES)}")
    return POLICIES[name]


class Vmm(NamedTuple):
    """What the VMM knows: where it is in its script, the first page the current step
    has not done, and the call it could not act on ("" while it still runs)."""
    at: int = 0
    cursor: int = 0
    gave_up: str = ""


# With kvm.gmem_in_place_conversion off (knob in_place_off) there is no in-place launch:
# the legacy flow creates the file private (INIT_SHARED is refused on snp/tdx) and
# populates from a separate source; without a TE the file is loaded and used as it is
# (KVM_SET_MEMORY_ATTRIBUTES2 is ENOTTY).
LEGACY_SCRIPT = ("create", "populate", "finalize")
LEGACY_NO_TE_SCRIPT = ("create", "load")


def script(policy: Policy, cfg: Config) -> tuple:
    if cfg.in_place_off:
        return LEGACY_SCRIPT if cfg.has_te else LEGACY_NO_TE_SCRIPT
    return policy.script if cfg.has_te else NO_TE_SCRIPT


def finished(policy: Policy, cfg: Config, v: Vmm) -> bool:
    return not v.gave_up and v.at == len(script(policy, cfg))


def next_call(policy: Policy, cfg: Config, pages: int, value: int, v: Vmm) -> Event | None:
    """The VMM's next call, or None when it has finished or given up."""
    steps = script(policy, cfg)
    if v.gave_up or v.at == len(steps):
        return None
    ps, what = cfg.page_size, steps[v.at]
    if what == "create":
        legacy = cfg.in_place_off and cfg.has_te
        return event("create_gmem", size=pages * ps, flags=("MMAP",) if legacy else ("MMAP", "INIT_SHARED"))
    if what == "load":
        return event("host_write", offset=v.cursor * ps, value=value, process="vmm")
    if what == "convert":
        # v5 had content modes and converted with flags 0 destructively; the seed's flow
        # converts "(PRESERVE, or new flag?)". v6 and later require flags == 0.
        flags = ("PRESERVE",) if cfg.features.content_modes else ()
        return event("set_attributes", offset=0, size=pages * ps, attributes="private", flags=flags)
    if what == "populate":
        if PLATFORMS[cfg.platform].populate_requires_source or cfg.in_place_off:
            # The copy-aside launch (cca: KVM_ARM_RMI_POPULATE requires source_uaddr): the
            # VMM kept a copy of the image it loaded and populates from that copy.
            return event("populate", offset=v.cursor * ps, size=(pages - v.cursor) * ps,
                         src="buffer", value=value)
        return event("populate", offset=v.cursor * ps, size=(pages - v.cursor) * ps, src=None)
    return event("finalize")


def observe(policy: Policy, cfg: Config, pages: int, v: Vmm, ev: dict, out: dict) -> Vmm:
    """The VMM after it saw ``out`` for its call ``ev``."""
    failed = out.get("ret", 0) != 0 or "signal" in out or "exception" in out
    op = ev["op"]
    if not failed:
        if op == "host_write":
            v = v._replace(cursor=v.cursor + 1)
        elif op == "populate":
            v = v._replace(cursor=v.cursor + out.get("done", 0))
        else:
            v = v._replace(cursor=pages)
        return Vmm(v.at + 1, 0) if v.cursor >= pages else v
    errno = out.get("ret") or out.get("signal") or out.get("exception")
    if errno in policy.retry:
        # from where it stopped: TDX advances past the pages done, SNP returns 0 then
        return v._replace(cursor=v.cursor + out.get("done", 0)) if op == "populate" else v
    return v._replace(gave_up=f"{op} {errno}")
