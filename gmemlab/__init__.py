"""gmemlab: a design-exploration workbook for KVM guest_memfd in-place conversion.

The semantics live in gmemlab.model (one step function); gmemlab.invariants names the
properties; gmemlab.explore and gmemlab.traces call the same step function.
"""

__version__ = "0.1.0"
