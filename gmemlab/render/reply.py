"""The reply to the list: the comparison matrix and one counterexample, cited.

``reply_text`` is plain ASCII of at most 72 columns (what a mailing list takes);
``reply_html`` says the same for the exported report. Both are deterministic: no
timings, no dates, nothing that depends on the machine.
"""

from __future__ import annotations

from gmemlab.invariants import ALWAYS, PROPERTIES
from gmemlab.render.text import WIDTH, compare_text, steps_text, wrap


def pick_counterexample(table, proposal: str | None = None, invariant: str | None = None):
    """(proposal, invariant, events) of the counterexample to show, or None if none breaks.

    By default: the first proposal (in the table's order) that breaks something, and its
    first broken invariant (in docs/domain.md's order). Naming a pair that holds is an error.
    """
    cols = [c for c in table.columns if proposal in (None, c.proposal)]
    if proposal is not None and not cols:
        raise ValueError(f"unknown proposal {proposal!r}; known: "
                         + ", ".join(c.proposal for c in table.columns))
    for c in cols:
        for p in ALWAYS:
            if invariant not in (None, p.name):
                continue
            cx = c.exploration.counterexample(p.name)
            if cx is not None:
                return c.proposal, p.name, cx
    if invariant is not None and proposal is not None:
        raise ValueError(f"{invariant} holds for {proposal} here: nothing to show")
    return None


def _sources(table, proposal: str | None, invariant: str | None) -> list[tuple[str, str]]:
    from gmemlab.render.sources import config_sources, proposal_source
    conf = config_sources(table.platform, table.series, table.knobs)
    out = conf[:1] + [(f"proposal {c.proposal}", proposal_source(c.proposal)) for c in table.columns]
    if invariant:
        out.append((invariant, PROPERTIES[invariant].source))
    return out + conf[1:]


def reply_text(table, proposal: str | None = None, invariant: str | None = None) -> str:
    """The plain-text block for a reply: ASCII, at most 72 columns.

    >>> from gmemlab.explore import Bounds
    >>> from gmemlab.explore.compare import compare
    >>> t = reply_text(compare("snp", "v8", Bounds(pages=1)))
    >>> max(len(line) for line in t.splitlines()) <= 72, t.isascii()
    (True, True)
    """
    from gmemlab.model.vocab import KNOBS, PROPOSALS
    variants = [c.proposal for c in table.columns if c.proposal not in PROPOSALS]
    what = ("The three proposals" if not variants else
            "The proposals (the three built-ins and " + ", ".join(variants) + ")")
    out = [wrap(f"{what} for loading launch memory, as modelled by "
                "gmemlab (every state reachable from a fresh guest_memfd):"), ""]
    out.append(compare_text(table).rstrip("\n"))
    pick = pick_counterexample(table, proposal, invariant)
    out.append("")
    if pick is None:
        out.append(wrap("No invariant breaks for any proposal at this size."))
        inv = None
    else:
        prop, inv, cx = pick
        claim = PROPERTIES[inv].claim
        out.append(wrap(f"Counterexample: {prop} breaks {inv} ({claim}) in {len(cx)} calls:"))
        out.append("")
        out.append(steps_text(cx, "  "))
        out.append("")
        out.append("Reproduce:")
        args = [f"--proposal {prop}"] + (["--variants FILE.py"] if prop not in PROPOSALS else [])
        args += [f"--platform {table.platform}", f"--series {table.series}", f"--pages {table.bounds.pages}"]
        args += [k.flag for k in KNOBS.values() if table.knobs.get(k.name)]
        line = "  gmemlab explore"
        for arg in args:  # an option and its value stay on one line
            if len(line) + 1 + len(arg) + 2 > WIDTH:
                out.append(line + " \\")
                line = "     "
            line += " " + arg
        out.append(line)
    out.append("")
    out.append("Sources:")
    for k, (what, src) in enumerate(_sources(table, pick and pick[0], inv), 1):
        out.append(wrap(f"[{k}] {what}: {src}", "    ").replace("    ", "  ", 1))
    text = "\n".join(out) + "\n"
    assert all(len(line) <= WIDTH for line in text.splitlines()), "reply wider than 72 columns"
    return text


def reply_html(table, proposal: str | None = None, invariant: str | None = None, engine: str = "auto") -> str:
    """The same reply as HTML: matrix, counterexample steps and lanes, sources."""
    from gmemlab.render.html import compare_html, esc, pre, sources_html, steps_html
    from gmemlab.render.lanes import compute, lanes_html
    pick = pick_counterexample(table, proposal, invariant)
    parts = ['<div class="gml-reply">', compare_html(table, focus=pick[0] if pick else None, sources=False)]
    if pick is not None:
        prop, inv, cx = pick
        cfg = next(c.exploration.config for c in table.columns if c.proposal == prop)
        parts.append(f"<p><b>Counterexample</b>: <code>{esc(prop)}</code> breaks <code>{esc(inv)}</code> "
                     f"({esc(PROPERTIES[inv].claim)}) in {len(cx)} calls:</p>")
        parts.append(steps_html(cx))
        notes = {len(cx) - 1: [inv]} if inv == "no_stuck_state" else None
        parts.append(lanes_html(compute(cfg, cx, notes=notes)))
    parts.append(sources_html(_sources(table, pick and pick[0], pick and pick[1])))
    parts.append("<details><summary>plain text</summary>" + pre(reply_text(table, proposal, invariant))
                 + "</details></div>")
    return "".join(parts)
