"""What notebooks/06_variants shows: a designer's variant next to the built-in proposals.

A variant (gmemlab.model.proposals.Proposal.derive, registered with
gmemlab.model.vocab.register or loaded with ``--variants``) is compared with the
built-ins on one configuration: states, invariants, error channels, and what differs
from the built-in it derives from.

>>> from gmemlab.explore import Bounds
>>> from gmemlab.explore.compare import compare
>>> from gmemlab.model import vocab
>>> from gmemlab.model.proposals import POPULATE_CONVERTS, Proposal
>>> v = vocab.register(Proposal.derive(POPULATE_CONVERTS, name="doctest-ebusy", claim="c", source="s",
...                                    populate_busy_errno="EBUSY"))
>>> d = variant_data(compare("tdx", "v8", Bounds(pages=1), proposals=vocab.proposal_names()), "doctest-ebusy")
>>> d["base"], d["differences"], d["against_base"]["error_channels"]["populate"]
('populate-converts', {'populate_busy_errno': ['EAGAIN', 'EBUSY']}, [['EAGAIN', 'EINVAL'], ['EBUSY', 'EINVAL']])
>>> vocab.unregister("doctest-ebusy")
"""

from __future__ import annotations

from gmemlab.invariants import INVARIANT_NAMES
from gmemlab.model import vocab
from gmemlab.render.html import esc


def _column(table, name: str):
    for c in table.columns:
        if c.proposal == name:
            return c
    raise ValueError(f"{name!r} is not in the comparison; it has: {', '.join(c.proposal for c in table.columns)}")


def _row(c) -> dict:
    x = c.exploration
    return {"states": len(x.states), "transitions": x.transitions,
            "broken": [n for n in INVARIANT_NAMES if not x.holds(n)],
            "calls_to_launch": c.calls_to_launch,
            "error_channels": {op: list(marks) for op, marks in c.errors.items()}}


def variant_data(table, name: str) -> dict:
    """The variant ``name`` and every other proposal of the comparison, and what the
    variant changes against the built-in it derives from."""
    p = vocab.proposal(name)
    rows = {c.proposal: _row(c) for c in table.columns}
    mine = rows[name]
    out = {"variant": name, "base": p.base, "claim": p.claim, "source": p.source,
           "differences": {k: list(v) for k, v in p.differences().items()},
           "platform": table.platform, "series": table.series, "pages": table.bounds.pages,
           "proposals": rows, "against_base": None}
    if p.base is not None and p.base in rows:
        base = rows[p.base]
        ops = sorted(set(base["error_channels"]) | set(mine["error_channels"]))
        out["against_base"] = {
            "states": [base["states"], mine["states"]],
            "broken": [base["broken"], mine["broken"]],
            "error_channels": {op: [base["error_channels"].get(op, []), mine["error_channels"].get(op, [])]
                               for op in ops
                               if base["error_channels"].get(op, []) != mine["error_channels"].get(op, [])}}
    return out


def variant_html(name: str) -> str:
    """The variant: its claim and source, and the fields it changes."""
    p = vocab.proposal(name)
    diffs = "".join(f"<tr><td style='font-family:monospace'>{esc(k)}</td><td>{esc(str(a))}</td>"
                    f"<td><b>{esc(str(b))}</b></td></tr>" for k, (a, b) in p.differences().items())
    return (f'<div class="gml-variant" data-proposal="{esc(name)}" data-base="{esc(p.base or "")}">'
            f"<p><b>{esc(name)}</b>, a variant of <b>{esc(p.base or '(built in)')}</b>: {esc(p.claim)}<br>"
            f"<span style='font-size:85%'>source: {esc(p.source)}</span></p>"
            + (f"<table><tr><th>field</th><th>{esc(p.base or '')}</th><th>{esc(name)}</th></tr>{diffs}</table>"
               if diffs else "<p>(no field differs from its base)</p>") + "</div>")


def variant_summary(d: dict) -> str:
    """A few lines of text: the variant against every proposal, then against its base."""
    from gmemlab.render.text import wrap
    lines = [f"{d['platform']}, series {d['series']}, {d['pages']} page(s):"]
    for name, r in d["proposals"].items():
        lines.append(wrap(f"{name}: {r['states']:,} states; breaks "
                          + (", ".join(r["broken"]) or "nothing") + "; populate errors: "
                          + (", ".join(r["error_channels"].get("populate", [])) or "none"), "  "))
    ab = d["against_base"]
    if ab is not None:
        same = []
        if ab["states"][0] == ab["states"][1]:
            same.append("the same states")
        if ab["broken"][0] == ab["broken"][1]:
            same.append("the same invariants")
        chans = "; ".join(f"{op}: {', '.join(b) or 'none'} where {d['base']} has {', '.join(a) or 'none'}"
                          for op, (a, b) in ab["error_channels"].items())
        lines.append(wrap(f"{d['variant']} against {d['base']}: "
                          + (", ".join(same) or "different states and invariants")
                          + ("; error channels differ: " + chans if chans else "; the same error channels")
                          + ".", ""))
    return "\n".join(lines)
