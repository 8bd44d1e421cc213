"""The proposals for loading launch memory, as differences from the series.

A proposal is data: which attribute populate wants on its destination, whether it
converts, what it answers for a page it cannot convert, and, for a designer's own
variant, any op rule it replaces outright (``ops``). private-first is the series as of
v6-v8 and the baseline; the other two change populate. Everything else (conversion,
faults, accesses) is shared semantics, in gmemlab.model.step.

A designer's variant is a named, cited difference from a built-in proposal:

>>> v = Proposal.derive(POPULATE_CONVERTS, name="populate-converts-ebusy",
...                     claim="populate converts, but refuses a pinned page with EBUSY",
...                     source="a variant for the v8 review", populate_busy_errno="EBUSY")
>>> v.base, v.populate_converts, v.populate_busy_errno
('populate-converts', True, 'EBUSY')
>>> v.differences()
{'populate_busy_errno': ('EAGAIN', 'EBUSY')}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from gmemlab.errors import UsageError


@dataclass(frozen=True, eq=False)
class Proposal:
    name: str
    claim: str
    source: str
    # The KVM attribute populate requires on each destination page (EINVAL otherwise).
    populate_wants_private: bool = True
    # Whether populate converts the page to private itself (unmap from host, refcount
    # check), inheriting conversion's errors.
    populate_converts: bool = False
    # What populate's own conversion answers for a page with unexpected references:
    # conversion's errno (EAGAIN, as KVM_SET_MEMORY_ATTRIBUTES2 answers).
    populate_busy_errno: str = "EAGAIN"
    # Op rules replaced outright: op name -> function(cfg, state, event) -> step.Result.
    # The explorer's table engine has no plan for a replaced rule and calls it state by
    # state (gmemlab.explore.engines); nothing is guessed.
    ops: Mapping[str, Callable] = field(default_factory=lambda: MappingProxyType({}))
    # The built-in proposal this one differs from (None for a built-in).
    base: str | None = None

    @classmethod
    def derive(cls, base: "Proposal", *, name: str, claim: str, source: str, **changes) -> "Proposal":
        """A variant of ``base``: the same rules but for ``changes`` (fields of Proposal,
        or ``ops={op: function}``), under its own name, claim and source."""
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "claim", "source", "base"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(f"unknown proposal field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "ops" in changes:
            from gmemlab.model.step import OPS
            bad = sorted(set(changes["ops"]) - set(OPS))
            if bad:
                raise UsageError(f"unknown op(s) {', '.join(bad)} in ops; known: {', '.join(OPS)}")
            changes["ops"] = MappingProxyType({**base.ops, **changes["ops"]})
        return dataclasses.replace(base, name=name, claim=claim, source=source,
                                   base=base.base or base.name, **changes)

    def differences(self) -> dict:
        """Field -> (built-in value, this value) where this proposal differs from its base."""
        if self.base is None:
            return {}
        b = BUILTINS[self.base]
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("name", "claim", "source", "base", "ops"):
                continue
            if getattr(b, f.name) != getattr(self, f.name):
                out[f.name] = (getattr(b, f.name), getattr(self, f.name))
        for op in sorted(self.ops):
            if b.ops.get(op) is not self.ops[op]:
                out[f"ops.{op}"] = ("built-in", getattr(self.ops[op], "__name__", "replaced"))
        return out


PRIVATE_FIRST = Proposal(
    name="private-first",
    populate_wants_private=True,
    populate_converts=False,
    claim="userspace loads while shared, converts to private, then populates in place; "
          "populate never converts and refuses a destination that is not KVM-private",
    source="Ackerley Tng's flow, agreed by Michael Roth in 'Re: [PATCH RFC v4 10/44] KVM: "
           "guest_memfd: Add support for KVM_SET_MEMORY_ATTRIBUTES2' (2026-04-07); the series v6-v8",
)

POPULATE_CONVERTS = Proposal(
    name="populate-converts",
    populate_wants_private=False,
    populate_converts=True,
    claim="populate takes KVM-shared memory and converts it to private itself",
    source="the proposal from the call, as quoted in 'Re: [PATCH RFC v4 10/44] ...' (2026-04-07): "
           "'populate will first check that the memory is shared, then also set the memory to private'",
)

USERSPACE_CONVERTS = Proposal(
    name="userspace-converts",
    populate_wants_private=False,
    populate_converts=False,
    claim="populate runs on KVM-shared memory without converting; userspace converts "
          "shared->private afterwards",
    source="Michael Roth's alternative in 'Re: [PATCH RFC v4 10/44] ...' (2026-04-07): "
           "'require userspace to subsequently handle the shared->private conversion'",
)

BUILTINS: Mapping[str, Proposal] = MappingProxyType(
    {p.name: p for p in (PRIVATE_FIRST, POPULATE_CONVERTS, USERSPACE_CONVERTS)})
