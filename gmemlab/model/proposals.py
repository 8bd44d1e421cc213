"""The three proposals for loading launch memory, as differences from the series.

Only populate differs. private-first is the series as of v6-v8 and the baseline; the
other two change which attribute populate wants on its destination and whether it
converts. Everything else (conversion, faults, accesses) is shared semantics.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Proposal:
    name: str
    # The KVM attribute populate requires on each destination page (EINVAL otherwise).
    populate_wants_private: bool
    # Whether populate converts the page to private itself (unmap from host, refcount
    # check), inheriting conversion's errors.
    populate_converts: bool
    claim: str
    source: str


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

PROPOSALS = {p.name: p for p in (PRIVATE_FIRST, POPULATE_CONVERTS, USERSPACE_CONVERTS)}
