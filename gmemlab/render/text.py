"""Plain text for terminals and mailing-list replies: ASCII, at most 72 columns."""

from __future__ import annotations

import json
import textwrap

from gmemlab.invariants import PROPERTIES
from gmemlab.outcome import outcome_text, value_text as _value

WIDTH = 72


def wrap(text: str, indent: str = "", width: int = WIDTH) -> str:
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=True, break_on_hyphens=False)


def _j(obj) -> str:
    return json.dumps(obj, separators=(", ", ": "))


def check_report_text(report, header: dict) -> str:
    """The human form of check-trace's verdict."""
    cfg = report.config
    lines = [f"{report.path}: {report.events} events, replayed as {cfg.label()}"]
    d = report.divergence
    if d is None:
        lines.append("conforms: every observed outcome matches the model")
    else:
        lines.append(f"diverges at line {d['line']} ({d['op']}):")
        lines.append(f"  expected  {_j(d['expected'])}")
        lines.append(f"  predicted {_j(d['predicted'])}")
    if report.violations:
        lines.append("invariants violated:")
        for v in report.violations:
            claim = PROPERTIES[v["invariant"]].claim
            lines.append(textwrap.fill(f"line {v['line']}: {v['invariant']}: {claim}", width=WIDTH,
                                       initial_indent="  ", subsequent_indent="    ",
                                       break_on_hyphens=False))
    else:
        lines.append("invariants: none violated")
    lines.append("verdict: " + ("ok" if report.ok else "FAIL"))
    return "\n".join(lines) + "\n"


# --- explore and compare ----------------------------------------------------------------

def _hex(n: int) -> str:
    return f"{n:#x}"


def call_text(ev: dict) -> str:
    """An event as a selftest-like call, e.g. ``set_attributes(0x0, 0x2000, private)``."""
    op = ev["op"]
    args: list[str] = []
    if op == "create_gmem":
        args = [_hex(ev["size"]), "|".join(ev.get("flags", ())) or "0"]
    elif op == "set_attributes":
        args = [_hex(ev["offset"]), _hex(ev["size"]), ev["attributes"]]
        if ev.get("flags"):
            args.append("|".join(ev["flags"]))
    elif op in ("pin", "unpin", "gup_fast", "punch_hole", "guest_accept"):
        args = [_hex(ev["offset"]), _hex(ev["size"])]
    elif op == "populate":
        args = [_hex(ev["offset"]), _hex(ev["size"]),
                "src=NULL" if ev.get("src") is None else
                "src=unknown" if ev.get("src") == "unknown" else f"src=buffer({_value(ev['value'])})"]
    elif op in ("host_write", "host_read"):
        args = [_hex(ev["offset"])] + ([_value(ev["value"])] if op == "host_write" else [])
    elif op in ("guest_read", "guest_write"):
        args = [_hex(ev["offset"]), "private" if ev["private"] else "shared"]
        if op == "guest_write":
            args.append(_value(ev["value"]))
    elif op == "map_gpa_range":
        args = [_hex(ev["offset"]), _hex(ev["size"]), "private" if ev["private"] else "shared"]
    elif op == "replace_memslot":
        args = [_hex(ev["offset"]), _hex(ev["size"])]
        if ev.get("new_gmem") is not None:
            args.append("new_gmem=" + ("|".join(ev["new_gmem"]) or "0"))
    proc = ev.get("process", "vmm")
    who = "" if proc == "vmm" or not op.startswith(("host", "pin", "unpin", "gup")) else f"[{proc}] "
    return f"{who}{op}({', '.join(args)})"


def steps_text(events: list[dict], indent: str = "  ") -> str:
    """Numbered steps, each a call and its outcome, at most 72 columns. Steps of an
    interleaving (events with a "thread": Bounds.interleave) are drawn as lanes, one
    column per thread (render.thread_lanes): as a flat list their runs say nothing."""
    if any(ev.get("thread") for ev in events):
        from gmemlab.render.thread_lanes import lanes_text
        return "\n".join((indent + line).rstrip()
                         for line in lanes_text(events, WIDTH - len(indent)).split("\n"))
    lines = []
    for n, ev in enumerate(events, 1):
        lines.append(wrap(f"{n}. {call_text(ev)} = {outcome_text(ev.get('expect', {}))}",
                          indent).replace("\n" + indent, "\n" + indent + "   "))
    return "\n".join(lines)


def actor_steps_text(steps: list, indent: str = "  ") -> str:
    """Numbered (actor, event) steps: a step of another actor than the VMM is marked
    with its name in brackets."""
    lines = []
    for n, (who, ev) in enumerate(steps, 1):
        mark = "" if who == "vmm" else f"[{who}] "
        fail = f" [{ev['fail']} inside]" if ev.get("fail") else ""
        lines.append(wrap(f"{n}. {mark}{call_text(ev)}{fail} = {outcome_text(ev.get('expect', {}))}",
                          indent).replace("\n" + indent, "\n" + indent + "   "))
    return "\n".join(lines)


def explore_text(x) -> str:
    from gmemlab.invariants import ALWAYS, PROPERTIES
    cfg, b = x.config, x.bounds
    out = [f"{cfg.label()}, {b.pages} page(s), symmetry {'on' if x.symmetry else 'off'}",
           f"{len(x.states):,} states, {x.transitions:,} transitions, {x.seconds:.2f} s"]
    if getattr(x, "incomplete", False):
        out.append("INCOMPLETE: stopped at --max-states; only the invariants found broken are listed")
    for p in ALWAYS:
        cx = x.counterexample(p.name)
        if cx is None and getattr(x, "incomplete", False):
            continue
        if cx is None:
            out.append(f"  holds   {p.name}")
            if p.pair not in x.witnesses:   # what would show it is not vacuous never happens
                out.append(wrap(f"(vacuously: never reached: {PROPERTIES[p.pair].claim})", " " * 10))
        else:
            out.append(f"  BROKEN  {p.name}: {len(cx)} steps")
            out.append(steps_text(cx, "      "))
    return "\n".join(out) + "\n"


def cell_text(inv: dict) -> str:
    """'holds', 'holds*' (vacuous) or 'BROKEN n' for one invariant of one column."""
    if inv["holds"]:
        return "holds*" if inv["vacuous"] else "holds"
    return f"BROKEN {inv['counterexample_length']}"


GUESSING_ROW = "failures it cannot attribute"


def matrix_rows(table) -> list[tuple[str, list[str]]]:
    """The comparison matrix as (row name, one cell per proposal), the one source of its
    rows for text, HTML and the reply: sizes, calls to launch, the huge-folio metric
    (with its knob), every invariant, vmm_recovers, and how many failing outcomes leave
    the reference VMM guessing between causes that need different recoveries."""
    from gmemlab.invariants import ALWAYS
    cols = [c.to_json() for c in table.columns]
    rows = [("states", [f"{c['states']:,}" for c in cols]),
            ("transitions", [f"{c['transitions']:,}" for c in cols]),
            ("calls to launch", ["-" if c["calls_to_launch"] is None else str(c["calls_to_launch"])
                                 for c in cols])]
    if any(c["huge_folio_kept"] is not None for c in cols):
        rows.append(("huge folio kept at launch", ["-" if c["huge_folio_kept"] is None else
                                                   ("yes" if c["huge_folio_kept"] else "no") for c in cols]))
        # The TE's own entries for it (Platform.te_huge_at_launch): kept in guest_memfd
        # and mapped huge by the TE are separate questions.
        rows.append(("TE maps it huge at launch", ["-" if c["te_maps_huge_at_launch"] is None else
                                                   ("yes" if c["te_maps_huge_at_launch"] else "no")
                                                   for c in cols]))
    rows += [(p.name, [cell_text(c["invariants"][p.name]) for c in cols]) for p in ALWAYS]
    if all("vmm_recovers" in c["invariants"] for c in cols):
        rows.append(("vmm_recovers", [cell_text(c["invariants"]["vmm_recovers"]) for c in cols]))
        rows.append((GUESSING_ROW, [str(len(c["guessing"])) if c["guessing"] else "none" for c in cols]))
    return rows


def recovery_lines(table) -> list[str]:
    """Under the matrix: where each reference VMM gives up, and which failing outcomes
    share causes that need different recoveries."""
    out = []
    for c in table.columns:
        d = c.to_json()
        r = d["vmm_recovers"]
        if r is None:
            continue
        what = ("recovers from every failure" if r["holds"] else
                f"gives up on {r['gives_up_on']} ({r['counterexample_length']} steps)")
        out.append(wrap(f"{c.proposal}: the reference VMM ({', '.join(r['policy'])}) {what}.", "  "))
        for g in d["guessing"]:
            out.append(wrap(f"guessing: {g}", "    "))
    if not out:
        return []
    return ["What the reference VMM recovers from (it sees only what its calls", "return):"] + out


def compare_text(table) -> str:
    """The comparison matrix, 72 columns: one column per proposal, three side by side
    (a fourth proposal, a registered variant, starts a second block of the matrix)."""
    from gmemlab.model.vocab import KNOBS
    name_w, col_w = 31, 13
    per = (WIDTH - name_w) // col_w
    on = [k for k in KNOBS if table.knobs.get(k)]
    folio = getattr(table.bounds, "folio_pages", 0)
    geometry = f" ({folio}-page folios)" if folio and table.knobs.get("huge_folios") else ""
    out = [wrap(f"{table.platform}, series {table.series}, {table.bounds.pages} page(s); knobs: "
                + (", ".join(on) or "none") + geometry), ""]

    def row(label, cells):
        return (label.ljust(name_w) + "".join(str(c).ljust(col_w) for c in cells)).rstrip()

    rows = matrix_rows(table)
    for start in range(0, len(table.columns), per):
        if start:
            out.append("")
        out += matrix_block(table.columns, rows, slice(start, start + per), row, col_w)
    out.append("")
    out.append("holds* = holds, but what it speaks of never happens here;")
    out.append("BROKEN n = shortest counterexample has n calls.")
    rec = recovery_lines(table)
    if rec:
        out += [""] + rec
    out.append("")
    out.append("error channels (errno@offset: says where it stopped; +done:")
    out.append("says how many pages it did):")
    for c in table.columns:
        out.append(f"  {c.proposal}:")
        for op, marks in c.errors.items():
            out.append(wrap(f"{op}: {', '.join(marks)}", "    "))
    return "\n".join(out) + "\n"


def matrix_block(cols, rows, part: slice, row, col_w: int) -> list[str]:
    """The columns ``part`` of the matrix: the proposal names over as many lines as they
    need (broken after a hyphen), then the rows."""
    heads = [textwrap.wrap(c.proposal, col_w - 1, break_on_hyphens=True) or [""] for c in cols[part]]
    out = [row("", [h[i] if i < len(h) else "" for h in heads]) for i in range(max(len(h) for h in heads))]
    return out + [row(label, cells[part]) for label, cells in rows]
