"""The properties people argue about, as named data (names from docs/domain.md).

An ``always`` property is a claim on every reachable state, or on every transition
where that is its nature; a ``sometimes`` property names something that must be
reachable for the paired ``always`` not to hold vacuously (a model that can do nothing
passes every safety check). no_stuck_state is a property of the whole graph: the
explorer decides it by reverse reachability; a replay cannot.

>>> [p.name for p in ALWAYS][:3]
['private_not_host_mapped', 'private_not_pinned', 'te_private_implies_kvm_private']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gmemlab.model import step as S
from gmemlab.model import threads
from gmemlab.model.state import TE_NONE, TE_VALID, Config, VmState


@dataclass(frozen=True)
class Transition:
    """One step as the invariants see it."""

    pre: VmState
    event: dict
    outcome: dict
    post: VmState
    effects: frozenset

    @property
    def call(self) -> dict:
        """The call this step is part of: the event, or for a "run" of a thread the call
        that thread has in flight (gmemlab.model.threads), which the step may end."""
        if self.event["op"] == "run":
            for c in self.pre.threads:
                if c.thread == self.event.get("thread"):
                    return c.event
        return self.event


@dataclass(frozen=True)
class Property:
    name: str
    kind: str                # "always" or "sometimes"
    claim: str               # one line, as it would read in a reply
    source: str              # where the argument was made, or the selftest behind it
    on_state: Callable[[Config, VmState], bool] | None = None
    on_transition: Callable[[Config, Transition], bool] | None = None
    pair: str = ""           # for "always": the "sometimes" that shows it is not vacuous
    graph: bool = False      # decided on the whole state graph (explorer only)


SEED = "Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for KVM_SET_MEMORY_ATTRIBUTES2 (Michael Roth, 2026-04-07)"


# --- state predicates ---------------------------------------------------------------

def _private_not_host_mapped(cfg, s):
    return not any(p.private and p.mapped for p in s.pages)


def _private_not_pinned(cfg, s):
    """No private page holds a reference. Assumption A-speculative-ref: the reference a
    GUP-fast call holds between taking it and reading the page table again (the call
    drops it if the entry changed; gmemlab.model.threads) is not a pin yet: it makes the
    conversion's refcount check fail like any other, but no caller has it."""
    held = threads.speculative_refs(cfg, s) if s.threads else {}
    return not any(p.private and p.pins - held.get(i, 0) > 0 for i, p in enumerate(s.pages))


def _te_implies_kvm(cfg, s):
    return not any(p.te != TE_NONE and not p.private for p in s.pages)


def _host_never_touches_te_state(cfg, s):
    """No TE-held page is mapped or pinned by the host (a GUP-fast call's reference before
    its second look is no pin: assumption A-speculative-ref, _private_not_pinned)."""
    held = threads.speculative_refs(cfg, s) if s.threads else {}
    return not any(p.te != TE_NONE and (p.mapped or p.pins - held.get(i, 0) > 0) for i, p in enumerate(s.pages))


def _direct_map_absent(cfg, s):
    if "NO_DIRECT_MAP" not in s.gmem_flags:
        return True
    return not any(p.dmap and (p.private or p.te != TE_NONE) for p in s.pages)


# --- transition predicates ----------------------------------------------------------

def failed_call_pages(cfg: Config, t: Transition) -> range | None:
    """The pages a failed (or stopped-short) call may not have changed; None if it succeeded.

    A call fails when it returns an errno; populate also stops short when it reports
    fewer pages done than asked. The pages it reports done may have changed.
    """
    out, ev = t.outcome, t.call
    if "ret" not in out or ev["op"] not in ("set_attributes", "populate", "punch_hole",
                                            "pin", "unpin", "map_gpa_range", "finalize",
                                            "create_gmem"):
        return None
    n = len(t.pre.pages)
    if ev["op"] == "populate" and "done" in out:
        first = ev["offset"] // cfg.page_size
        asked = ev["size"] // cfg.page_size
        if out["ret"] == 0 and out["done"] >= asked:
            return None
        return range(min(first + out["done"], n), n)
    if out["ret"] == 0:
        return None
    return range(n)


def _failed_call_changes_nothing(cfg, t):
    pages = failed_call_pages(cfg, t)
    if pages is None or not t.pre.created or len(t.pre.pages) != len(t.post.pages):
        return True
    return all((t.pre.pages[i].private, t.pre.pages[i].te) == (t.post.pages[i].private, t.post.pages[i].te)
               for i in pages)


def _effect_absent(name):
    return lambda cfg, t: name not in t.effects


def _guest_never_sees_stale(cfg, t):
    return S.STALE_EXPOSED not in t.effects


def _conversion_spares_unconverted(cfg, t):
    """KVM_SET_MEMORY_ATTRIBUTES2, judged page by page (so that the fast engine can judge a
    range call on each page's part): a page whose attribute the call left as it was -- one
    of its range that had the requested attribute already, one outside its range, or any
    page of a call that failed -- keeps its contents and its TE state (what the guest can
    read follows from those and the attribute); and a page's attribute only ever becomes
    the requested one."""
    ev = t.call
    if ev["op"] != "set_attributes" or not t.pre.created or len(t.pre.pages) != len(t.post.pages):
        return True
    want = ev["attributes"] == "private"
    for a, b in zip(t.pre.pages, t.post.pages):
        if a.private != b.private:
            if b.private != want:
                return False
        elif (a.content, a.te) != (b.content, b.te):
            return False
    return True


def _conversion_meets_converted_page(cfg, t):
    ev = t.call
    if ev["op"] != "set_attributes" or t.outcome.get("ret") != 0 or not t.pre.created:
        return False
    want = ev["attributes"] == "private"
    return any(p.private == want for p in t.pre.pages)


def _te_page_freed(cfg, t):
    if t.call["op"] != "punch_hole" or t.outcome.get("ret") != 0 or not t.pre.created \
            or len(t.pre.pages) != len(t.post.pages):
        return False
    return any(a.te != TE_NONE and not b.allocated for a, b in zip(t.pre.pages, t.post.pages))


# --- sometimes predicates -----------------------------------------------------------

def _some(pred):
    return lambda cfg, s: any(pred(p) for p in s.pages)


def _a_call_failed(cfg, t):
    return failed_call_pages(cfg, t) is not None and t.pre.created


def _loaded_and_measured(cfg, s):
    return any(p.measured and p.loaded != 0 for p in s.pages)


def launch_complete(cfg: Config, s: VmState, value: int) -> bool:
    """A finished launch with ``value`` loaded in every page. With a trusted entity:
    finalized, every page loaded, measured, held by the TE and usable by the guest, and
    KVM-private. Without one (no launch): every page KVM-private and holding the value
    userspace loaded."""
    if cfg.has_te:
        if not s.finalized:
            return False
        return all(p.private and p.measured and p.te == TE_VALID and p.content == value == p.loaded
                   for p in s.pages)
    return s.created and all(p.private and p.content == value == p.loaded for p in s.pages)


def launched_and_running(cfg: Config, s: VmState) -> bool:
    """The goal of no_stuck_state: the VM runs and no page is in limbo.

    Assumption A-goal: "launched and running" is: launch finalized (snp, tdx; sw_protected
    has no launch) and no page the TE holds while KVM tracks it as shared, since the
    guest cannot use such a page either way.
    """
    if not s.created:
        return False
    if cfg.has_te and not s.finalized:
        return False
    return _te_implies_kvm(cfg, s)


ALWAYS = [
    Property("private_not_host_mapped", "always",
             "a KVM-private page is in no host page table",
             "docs/domain.md, uAPI facts: conversion to private unmaps from every host page table; "
             "selftest fault_private", on_state=_private_not_host_mapped,
             pair="a_private_page_exists"),
    Property("private_not_pinned", "always",
             "a KVM-private page has no unexpected references (safe refcount)",
             SEED + "; selftest elevated_refcount", on_state=_private_not_pinned,
             pair="a_page_is_pinned"),
    Property("te_private_implies_kvm_private", "always",
             "pages the trusted entity holds are KVM-private",
             SEED + ": 'private as tracked by KVM' vs 'by trusted entity'",
             on_state=_te_implies_kvm, pair="a_page_is_te_private"),
    Property("host_never_touches_te_private", "always",
             "no host access, mapping or pin reaches a TE-private page",
             SEED + ": host safety of the userspace-converts alternative",
             on_state=_host_never_touches_te_state,
             on_transition=_effect_absent(S.HOST_TOUCHED_TE), pair="a_page_is_te_private"),
    Property("populate_targets_private", "always",
             "the TE only takes pages that KVM already tracks as private",
             SEED + ": 'expecting the pages to be marked private in advance of platform-specific preparation'",
             on_transition=_effect_absent(S.TE_TOOK_SHARED), pair="populate_succeeds"),
    Property("kvm_never_writes_private", "always",
             "generic KVM code never changes an initialized KVM-private page's contents "
             "(the legacy copy path writes it from platform code)",
             SEED + ": 'KVM code (kvm_gmem_populate) still doesn't touch memory contents'",
             on_transition=_effect_absent(S.KVM_WROTE_PRIVATE), pair="private_page_holds_data"),
    Property("launch_contents_preserved", "always",
             "what userspace loaded is what got measured",
             "docs/domain.md, the three proposals: private-first steps 2-4 (load while shared, convert, populate in place)",
             on_transition=_effect_absent(S.MEASURED_NOT_LOADED), pair="loaded_image_measured"),
    Property("failed_call_changes_nothing", "always",
             "a failed call leaves attributes and TE state as they were, past the point it says it reached",
             SEED + " (Ackerley: conversion errors have no room in the platform ioctls); "
             "selftest elevated_refcount", on_transition=_failed_call_changes_nothing,
             pair="a_call_fails"),
    Property("guest_never_sees_stale_data", "always",
             "the guest never reads, and launch never measures, stale host data",
             "[PATCH v8 00/46] guest_memfd: In-place conversion support: 'KVM: guest_memfd: "
             "Zero page while getting pfn'", on_transition=_guest_never_sees_stale,
             pair="populate_succeeds"),
    Property("no_stuck_state", "always",
             "from every reachable state some calls still reach a launched, running VM",
             SEED + ": 'potentially get stuck forever in the conversion path'",
             graph=True, pair="launched_and_running"),
    Property("direct_map_absent_for_private", "always",
             "with NO_DIRECT_MAP, no private page (KVM or TE) is in the host direct map",
             SEED + ": 'direct map removal/restoration' as part of conversion",
             on_state=_direct_map_absent, pair="no_direct_map_private_page"),
    Property("conversion_spares_unconverted", "always",
             "a conversion changes nothing of the pages in its range that already have the "
             "requested attribute, nor of pages outside its range: not their contents, not the "
             "trusted entity's state of them, not what the guest can read",
             "Suzuki K Poulose, v8 review <114e2488-97ed-4740-a8e8-1edd991f26c5@arm.com> (mixed-range "
             "conversions and the invalidation filter); post-v8 __kvm_gmem_set_attributes and "
             "kvm_gmem_make_shared (virt/kvm/guest_memfd.c)",
             on_transition=_conversion_spares_unconverted, pair="conversion_meets_converted_page"),
    Property("freed_pages_not_te_owned", "always",
             "a page the host frees (punch hole, truncate, release) is owned by no trusted entity "
             "(CCA: a delegated granule; SNP: an assigned RMP entry)",
             "kvm_gmem_punch_hole -> kvm_gmem_free_folio -> kvm_arch_gmem_reclaim "
             "(virt/kvm/guest_memfd.c); SNP sev_gmem_invalidate (arch/x86/kvm/svm/sev.c); CCA "
             "realm_unmap_private_range (arch/arm64/kvm/rmi.c, v15)",
             on_transition=_effect_absent(S.FREED_TE_OWNED), pair="te_page_freed"),
]

SOMETIMES = [
    Property("a_private_page_exists", "sometimes", "some page is KVM-private", "",
             on_state=_some(lambda p: p.private)),
    Property("a_page_is_pinned", "sometimes", "some page has an extra reference", "",
             on_state=_some(lambda p: p.pins > 0)),
    Property("a_page_is_te_private", "sometimes", "the TE holds some page", "",
             on_state=_some(lambda p: p.te != TE_NONE)),
    Property("populate_succeeds", "sometimes", "some page gets measured", "",
             on_state=_some(lambda p: p.measured)),
    Property("private_page_holds_data", "sometimes", "a KVM-private page holds initialized data", "",
             on_state=_some(lambda p: p.private and p.uptodate)),
    Property("loaded_image_measured", "sometimes", "a page userspace loaded gets measured", "",
             on_state=_loaded_and_measured),
    Property("a_call_fails", "sometimes", "some call fails", "", on_transition=_a_call_failed),
    Property("launched_and_running", "sometimes", "the VM is launched and running", "",
             on_state=launched_and_running),
    Property("no_direct_map_private_page", "sometimes",
             "a NO_DIRECT_MAP file holds an allocated private page", "",
             on_state=lambda cfg, s: "NO_DIRECT_MAP" in s.gmem_flags
             and any(p.private and p.allocated for p in s.pages)),
    Property("conversion_meets_converted_page", "sometimes",
             "a conversion succeeds while some page already has the requested attribute", "",
             on_transition=_conversion_meets_converted_page),
    Property("te_page_freed", "sometimes", "a punch hole frees a page the TE held", "",
             on_transition=_te_page_freed),
]

# Decided on the product of the model and a reference VMM (gmemlab.explore.recovery),
# not by the explorer: a column of the comparison, not of explore's verdicts.
VMM_RECOVERS = Property(
    "vmm_recovers", "always",
    "a VMM that sees only what its calls return always gets the VM launched",
    SEED + ": quoting Ackerley Tng, 'It doesn't look like there's room for this "
    "information to be plumbed out through the platform-specific ioctls'",
    graph=True, pair="launched_and_running")

PROPERTIES = {p.name: p for p in ALWAYS + SOMETIMES + [VMM_RECOVERS]}
INVARIANT_NAMES = [p.name for p in ALWAYS]


def violations(cfg: Config, t: Transition) -> list[str]:
    """The always-properties this transition breaks (state ones judged on t.post), in order."""
    return [p.name for p in ALWAYS
            if (p.on_state is not None and not p.on_state(cfg, t.post))
            or (p.on_transition is not None and not p.on_transition(cfg, t))]
