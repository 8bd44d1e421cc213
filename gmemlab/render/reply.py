"""The reply to the list: what the results say, the findings, the matrix, cited.

``reply_text`` is the body a reviewer would post: a conclusion derived from the
results (which proposal keeps which invariants, which breaks which), one finding per
broken invariant with the seed's lines it answers quoted and its decisive (shortest)
counterexample with the knobs it needs, the matrix without the rows every proposal
shares, and the sources with lore.kernel.org links. Plain text of at most 72 columns;
a link is never broken, so a line that is nothing but a link may run longer.
``reply_message`` wraps it in an RFC 5322 message for ``git send-email`` or mutt;
``reply_html`` says the same for the exported report. All are deterministic: no
timings, no dates unless given, nothing that depends on the machine.
"""

from __future__ import annotations

import re
import textwrap

from gmemlab.invariants import ALWAYS, PROPERTIES
from gmemlab.render.text import WIDTH, matrix_rows, recovery_lines, steps_text, wrap

LORE = "https://lore.kernel.org/r/"
SUBJECT = "Re: [PATCH RFC v4 10/44] KVM: guest_memfd: Add support for KVM_SET_MEMORY_ATTRIBUTES2"
SEED_WHO = "Michael Roth, 2026-04-07"
_MSGID = re.compile(r",?\s*<([^<>\s]+@[^<>\s]+)>")
_LINK_LINE = re.compile(r"(\[\d+\] )?https?://\S+")


def lore_link(msgid: str) -> str:
    """https://lore.kernel.org/r/ID for a Message-Id, with or without its brackets."""
    return LORE + msgid.strip().strip("<>")


def is_link_line(line: str) -> bool:
    """Whether a line is nothing but a link (perhaps numbered): it is never broken."""
    return _LINK_LINE.fullmatch(line.strip()) is not None


def too_wide(text: str) -> list[str]:
    """The lines wider than 72 columns, a line that is only a link excepted."""
    return [line for line in text.splitlines() if len(line) > WIDTH and not is_link_line(line)]


def seed_quote(source: str) -> str | None:
    """The seed's own words a source quotes ('...' after the seed is named), or None.

    >>> seed_quote(PROPERTIES["te_private_implies_kvm_private"].source)
    'private as tracked by KVM [...] by trusted entity'
    """
    i = source.find("2026-04-07)")
    if i < 0:
        return None
    rest = source[i + len("2026-04-07)"):]
    if not rest.startswith(":"):
        return None
    quotes = re.findall(r"'(.+?)'(?=$|[\s,;)])", rest)
    return " [...] ".join(quotes) or None


def _quote(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent="> ", subsequent_indent="> ",
                         break_on_hyphens=False)


def _and(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


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


# --- what the results say ---------------------------------------------------------------------

def _broken(table) -> dict[str, dict[str, list]]:
    """proposal -> {invariant: shortest counterexample} of what it breaks."""
    out = {}
    for c in table.columns:
        out[c.proposal] = {}
        for p in ALWAYS:
            cx = c.exploration.counterexample(p.name)
            if cx is not None:
                out[c.proposal][p.name] = cx
    return out


def findings(table, proposal: str | None = None, invariant: str | None = None) -> list[dict]:
    """One finding per invariant some proposal breaks (docs/domain.md's order): who
    breaks it, and the decisive counterexample, the shortest (the table's order breaks
    a tie; a proposal named here is preferred where it breaks the invariant). An
    invariant named here comes first."""
    broken = _broken(table)
    out = []
    for p in ALWAYS:
        who = [c.proposal for c in table.columns if p.name in broken[c.proposal]]
        if not who:
            continue
        pref = [w for w in who if w == proposal] or who
        best = min(pref, key=lambda w: len(broken[w][p.name]))   # min keeps the first of a tie
        out.append({"invariant": p.name, "by": who, "proposal": best,
                    "steps": broken[best][p.name],
                    "lengths": {w: len(broken[w][p.name]) for w in who}})
    if invariant is not None:
        out.sort(key=lambda f: f["invariant"] != invariant)
    return out


def knobs_needed(table, proposal: str, invariant: str, _cache: dict | None = None) -> list[str]:
    """The knobs that are on in table and that the counterexample needs: each is turned
    off in turn (greedily, in the registry's order) and kept only if the invariant then
    holds. No knob on: []."""
    from gmemlab.explore import explore
    from gmemlab.model.state import Config
    from gmemlab.model.vocab import KNOBS
    need = [k for k in KNOBS if table.knobs.get(k)]
    if not need:
        return []
    col = next(c for c in table.columns if c.proposal == proposal)
    cache = {} if _cache is None else _cache
    for k in list(need):
        trial = tuple(n for n in need if n != k)
        key = (proposal, trial)
        if key not in cache:
            cfg = Config(proposal=proposal, platform=table.platform, series=table.series,
                         **{n: n in trial for n in KNOBS})
            try:
                cache[key] = explore(cfg, table.bounds, symmetry=col.exploration.symmetry)
            except Exception:  # cannot tell without it: keep the knob
                cache[key] = None
        x = cache[key]
        if x is not None and x.counterexample(invariant) is not None:
            need.remove(k)
    return need


def _config_words(table) -> str:
    from gmemlab.model.vocab import KNOBS
    on = [k for k in KNOBS if table.knobs.get(k)]
    pages = table.bounds.pages
    return (f"{table.platform}, series {table.series}, {pages} page{'s' if pages != 1 else ''}, "
            + ("knobs " + ", ".join(on) if on else "no knobs"))


def conclusion(table) -> str:
    """The paragraph that says what the results say, derived from them alone."""
    broken = _broken(table)
    n = len(ALWAYS)
    keep = [c.proposal for c in table.columns if not broken[c.proposal]]
    parts = [f"On {_config_words(table)}, with every state reachable from a fresh "
             f"guest_memfd explored:"]
    if keep and len(keep) == len(table.columns):
        parts.append(("every proposal" if len(keep) > 1 else keep[0])
                     + f" keeps all {n} invariants checked, so safety does not tell "
                     + ("them apart here." if len(keep) > 1 else "against it here."))
    else:
        if keep:
            parts.append(f"{_and(keep)} keep{'s' if len(keep) == 1 else ''} all {n} "
                         "invariants checked;")
        clauses = []
        for c in table.columns:
            b = broken[c.proposal]
            if b:
                what = _and(f"{name} ({len(cx)} calls)" for name, cx in b.items())
                rest = n - len(b)
                clauses.append(f"{c.proposal} breaks {what}" + (f" and keeps the other {rest}" if rest else ""))
        parts.append("; ".join(clauses) + ".")
    launch = {c.proposal: c.calls_to_launch for c in table.columns if c.calls_to_launch is not None}
    if len(set(launch.values())) > 1:
        fewest = min(launch.values())
        best = [w for w, v in launch.items() if v == fewest]
        others = _and(f"{w} {v}" for w, v in launch.items() if v != fewest)
        parts.append(f"The fewest calls that launch every page in place: {_and(best)}, "
                     f"{fewest} ({others}).")
    parts += _recovery_words(table)
    vac = [p.name for p in ALWAYS if all(p.pair not in c.exploration.witnesses for c in table.columns)
           and not any(p.name in broken[c.proposal] for c in table.columns)]
    if vac:
        parts.append(f"{_and(vac)} {'holds' if len(vac) == 1 else 'hold'} only vacuously "
                     "here: what it speaks of never happens.")
    return wrap(" ".join(parts))


def _recovery_words(table) -> list[str]:
    """The sentences on vmm_recovers: whose reference VMM gets the VM launched whatever
    failed, and on what outcome the others give up, with the causes it stands for."""
    cols = [c for c in table.columns if c.recovery is not None]
    if not cols:
        return []
    ok = [c.proposal for c in cols if c.recovery.holds]
    bad = [c for c in cols if not c.recovery.holds]
    if not bad:
        return [("Every proposal's" if len(ok) > 1 else f"{ok[0]}'s") + " reference VMM, which sees "
                "only what its calls return, gets the VM launched whatever failed on the way."]
    out = []
    if ok:
        out.append(f"A VMM that sees only what its calls return recovers from every failure "
                   f"under {_and(ok)}, but not under {_and(c.proposal for c in bad)}:")
    else:
        out.append("A VMM that sees only what its calls return does not recover under any proposal:")
    clauses = []
    for c in bad:
        why = [g.split(": ", 1)[1] for g in guessing_of(c) if g.startswith(c.recovery.gives_up_on)]
        clauses.append(f"{c.proposal}'s VMM gives up on {c.recovery.gives_up_on}"
                       + (f", which stands for {why[0]}" if why else ""))
    out.append("; ".join(clauses) + ".")
    return out


def guessing_of(col) -> list[str]:
    from gmemlab.explore.recovery import guessing
    return guessing(col.information)


def _recovery_finding_text(table, col) -> list[str]:
    """The finding for a proposal whose reference VMM does not recover: the seed's words,
    the steps (marking what the VMM does not see), the outcomes that leave it guessing."""
    from gmemlab.render.text import actor_steps_text
    r = col.recovery
    out = _quote(seed_quote(PROPERTIES["vmm_recovers"].source)) + [""]
    out.append(wrap(f"Counterexample: under {col.proposal}, a VMM that sees only what its "
                    f"calls return ({', '.join(r.to_json()['policy'])}) cannot get the VM launched: "
                    f"it gives up on {r.gives_up_on} after {len(r.steps)} steps "
                    "([other]: what the VMM does not see):"))
    out.append("")
    out.append(actor_steps_text(r.steps, "  "))
    g = guessing_of(col)
    if g:
        out += ["", wrap("The outcomes that stand for causes needing different recoveries:")]
        out += [wrap(line, "  ") for line in g]
    out += ["", "  gmemlab compare" + f" --platform {table.platform} --series {table.series}"
            + f" --pages {table.bounds.pages} --json"]
    return out


def _reproduce(table, prop: str, knobs: list[str]) -> list[str]:
    from gmemlab.model.vocab import KNOBS, PROPOSALS
    args = [f"--proposal {prop}"] + (["--variants FILE.py"] if prop not in PROPOSALS else [])
    args += [f"--platform {table.platform}", f"--series {table.series}", f"--pages {table.bounds.pages}"]
    args += [KNOBS[k].flag for k in knobs]
    out, line = [], "  gmemlab explore"
    for arg in args:  # an option and its value stay on one line
        if len(line) + 1 + len(arg) + 2 > WIDTH:
            out.append(line + " \\")
            line = "     "
        line += " " + arg
    return out + [line]


def _finding_text(table, f: dict, cache: dict) -> list[str]:
    from gmemlab.model.vocab import KNOBS
    inv, prop, cx = f["invariant"], f["proposal"], f["steps"]
    out = []
    quote = seed_quote(PROPERTIES[inv].source) or seed_quote(_proposal_source(prop))
    if quote:
        out += _quote(quote) + [""]
    on = [k for k in KNOBS if table.knobs.get(k)]
    need = knobs_needed(table, prop, inv, cache)
    flags = [KNOBS[k].flag for k in on]
    if not on:
        needs = "needs no knob"
    elif not need:
        needs = f"needs none of the knobs on ({', '.join(flags)})"
    else:
        needs = "needs " + _and(KNOBS[k].flag for k in need) + ("" if need == on else
                                                               f" (of {', '.join(flags)} on)")
    others = [w for w in f["by"] if w != prop]
    also = ("" if not others else
            "; " + _and(f"{w} breaks it too ({f['lengths'][w]} calls)" for w in others))
    out.append(wrap(f"Counterexample: {prop} breaks {inv} ({PROPERTIES[inv].claim}) in "
                    f"{len(cx)} calls, and {needs}"
                    f"{also}:"))
    out.append("")
    out.append(steps_text(cx, "  "))
    out.append("")
    out += _reproduce(table, prop, need)
    return out


def _proposal_source(name: str) -> str:
    from gmemlab.render.sources import proposal_source
    try:
        return proposal_source(name)
    except Exception:
        return ""


# --- the matrix, without what every proposal shares -----------------------------------------

def matrix_text(table) -> list[str]:
    """The comparison matrix, 72 columns, without the rows identical across proposals
    (with a single proposal, every row), then the error channels that differ."""
    name_w, col_w = 31, 13
    per = (WIDTH - name_w) // col_w
    cols = table.columns
    rows = [r for r in matrix_rows(table) if r[0] != "transitions"]
    differ = [r for r in rows if len(cols) < 2 or len({str(x) for x in r[1]}) > 1]
    same = [r for r in rows if r not in differ]
    out = []

    def row(label, cells):
        return (label.ljust(name_w) + "".join(str(c).ljust(col_w) for c in cells)).rstrip()

    for start in range(0, len(cols), per):
        part = slice(start, start + per)
        if start:
            out.append("")
        heads = [textwrap.wrap(c.proposal, col_w - 1, break_on_hyphens=True) or [""] for c in cols[part]]
        for i in range(max(len(h) for h in heads)):
            out.append(row("", [h[i] if i < len(h) else "" for h in heads]))
        for label, cells in differ:
            out.append(row(label, cells[part]))
    out.append("")
    if any("*" in str(x) for _, cells in differ for x in cells):
        out.append("holds* = holds, but what it speaks of never happens here.")
    if any(str(x).startswith("BROKEN") for _, cells in differ for x in cells):
        out.append("BROKEN n = shortest counterexample has n calls.")
    if same:
        names = [f"{label} ({cells[0]})" if not str(cells[0]).startswith("holds") else label
                 for label, cells in same]
        out.append(wrap("The same for every proposal, so left out: " + ", ".join(names) + "."))
    ops = sorted({op for c in cols for op in c.errors})
    diff_ops = [op for op in ops if len({tuple(c.errors.get(op, ())) for c in cols}) > 1]
    out.append("")
    if not ops:
        out.append("No call fails for any proposal.")
    elif not diff_ops:
        out.append(wrap("Error channels, the same for every proposal: "
                        + "; ".join(f"{op}: {', '.join(cols[0].errors[op])}" for op in ops)
                        + " (@offset: says where it stopped; +done: how many pages it did)."))
    else:
        out.append("Error channels that differ (@offset: says where it stopped;")
        out.append("+done: how many pages it did):")
        for c in cols:
            out.append(f"  {c.proposal}:")
            for op in diff_ops:
                out.append(wrap(f"{op}: {', '.join(c.errors.get(op, ())) or 'never fails'}", "    "))
    return out


# --- sources --------------------------------------------------------------------------------

def _sources(table, proposal: str | None, invariant: str | None) -> list[tuple[str, str]]:
    from gmemlab.render.sources import config_sources, proposal_source
    conf = config_sources(table.platform, table.series, table.knobs)
    out = conf[:1] + [(f"proposal {c.proposal}", proposal_source(c.proposal)) for c in table.columns]
    if invariant:
        out.append((invariant, PROPERTIES[invariant].source))
    return out + conf[1:]


def _cited(table, invariants, in_reply_to: str | None) -> list[str]:
    """The sources, numbered, each Message-Id as a lore link on a line of its own."""
    from gmemlab.render.sources import config_sources, proposal_source
    conf = config_sources(table.platform, table.series, table.knobs)
    items = conf[:1] + [(f"proposal {c.proposal}", proposal_source(c.proposal)) for c in table.columns]
    items += [(inv, PROPERTIES[inv].source) for inv in invariants]
    items += conf[1:]
    out = []
    for k, (what, src) in enumerate(items, 1):
        ids = _MSGID.findall(src)
        if k == 1 and in_reply_to:
            ids = [in_reply_to.strip().strip("<>")] + ids
        text = _MSGID.sub("", src)
        out.append(wrap(f"[{k}] {what}: {text}", "    ").replace("    ", "", 1))
        out += ["    " + lore_link(i) for i in ids]
    return out


def reply_text(table, proposal: str | None = None, invariant: str | None = None,
               in_reply_to: str | None = None) -> str:
    """The body of the reply: plain ASCII, at most 72 columns (a link excepted).

    >>> from gmemlab.explore import Bounds
    >>> from gmemlab.explore.compare import compare
    >>> t = reply_text(compare("snp", "v8", Bounds(pages=1)))
    >>> too_wide(t), t.isascii()
    ([], True)
    """
    from gmemlab.model.vocab import PROPOSALS
    pick_counterexample(table, proposal, invariant)   # a pair that holds is an error
    fs = findings(table, proposal, invariant)
    variants = [c.proposal for c in table.columns if c.proposal not in PROPOSALS]
    out = [conclusion(table), ""]
    if fs or any(c.recovery is not None and not c.recovery.holds for c in table.columns):
        out.append(wrap(f"Quoted lines ('>') are from the question [1] ({SEED_WHO}). "
                        "One finding per broken invariant, each with its shortest "
                        "counterexample as numbered calls and the command that finds it."))
    cache: dict = {}
    for f in fs:
        out.append("")
        out += _finding_text(table, f, cache)
    for c in table.columns:
        if c.recovery is not None and not c.recovery.holds:
            out.append("")
            out += _recovery_finding_text(table, c)
    what = ("The three proposals" if not variants else
            "The proposals (the three built-ins and " + ", ".join(variants) + ")")
    out += ["", wrap(f"{what} side by side, as modelled by gmemlab:"), ""]
    out += matrix_text(table)
    if not fs and all(c.recovery is None or c.recovery.holds for c in table.columns):
        out += ["", wrap("No invariant breaks for any proposal at this size.")]
    out += ["", "Sources:"]
    stuck = ["vmm_recovers"] if any(c.recovery is not None and not c.recovery.holds for c in table.columns) else []
    out += _cited(table, [f["invariant"] for f in fs] + stuck, in_reply_to)
    text = "\n".join(out) + "\n"
    assert not too_wide(text), "reply wider than 72 columns"
    return text


def reply_message(table, proposal: str | None = None, invariant: str | None = None, *,
                  subject: str = SUBJECT, in_reply_to: str | None = None, sender: str | None = None,
                  to: str | None = None, cc: str | None = None, date: str | None = None) -> str:
    """The reply as an RFC 5322 message (text/plain, UTF-8, no base64), ready for
    ``git send-email`` or mutt. No Date or Message-Id unless given: two runs give the
    same bytes.

    >>> from gmemlab.explore import Bounds
    >>> from gmemlab.explore.compare import compare
    >>> m = reply_message(compare("snp", "v8", Bounds(pages=1)), in_reply_to="a@b")
    >>> "In-Reply-To: <a@b>" in m and "Content-Type: text/plain; charset=\\"utf-8\\"" in m
    True
    """
    import email.policy
    from email.message import EmailMessage
    policy = email.policy.SMTP.clone(linesep="\n", max_line_length=78)
    msg = EmailMessage(policy=policy)
    if sender:
        msg["From"] = sender
    if to:
        msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if date:
        msg["Date"] = date
    msg["Subject"] = subject
    if in_reply_to:
        mid = "<" + in_reply_to.strip().strip("<>") + ">"
        msg["In-Reply-To"] = mid
        msg["References"] = mid
    body = reply_text(table, proposal, invariant, in_reply_to)
    msg.set_content(body, subtype="plain", charset="utf-8",
                    cte="7bit" if body.isascii() else "8bit")
    return msg.as_bytes(policy=policy).decode("utf-8")


def reply_html(table, proposal: str | None = None, invariant: str | None = None, engine: str = "auto") -> str:
    """The same reply as HTML: matrix, counterexample steps and lanes, sources."""
    from gmemlab.render.html import compare_html, esc, pre, sources_html, steps_html
    from gmemlab.render.lanes import compute, lanes_html
    pick = pick_counterexample(table, proposal, invariant)
    parts = ['<div class="gml-reply">', "<p>" + esc(conclusion(table).replace("\n", " ")) + "</p>",
             compare_html(table, focus=pick[0] if pick else None, sources=False)]
    if pick is not None:
        prop, inv, cx = pick
        cfg = next(c.exploration.config for c in table.columns if c.proposal == prop)
        parts.append(f"<p><b>Counterexample</b>: <code>{esc(prop)}</code> breaks <code>{esc(inv)}</code> "
                     f"({esc(PROPERTIES[inv].claim)}) in {len(cx)} calls:</p>")
        parts.append(steps_html(cx))
        notes = {len(cx) - 1: [inv]} if inv == "no_stuck_state" else None
        parts.append(lanes_html(compute(cfg, cx, notes=notes)))
    parts.append(recovery_html(table))
    parts.append(sources_html(_sources(table, pick and pick[0], pick and pick[1])))
    parts.append("<details><summary>plain text</summary>" + pre(reply_text(table, proposal, invariant))
                 + "</details></div>")
    return "".join(parts)


def recovery_html(table) -> str:
    """What each proposal's reference VMM recovers from: its verdict, the steps and lanes
    of its counterexample ([other]: what the VMM does not see), and the error information
    of every call that fails (outcome, causes, whether they need different recoveries)."""
    from gmemlab.render.html import esc
    from gmemlab.render.lanes import compute, lanes_html
    from gmemlab.render.text import actor_steps_text, call_text
    cols = [c for c in table.columns if c.recovery is not None]
    if not cols:
        return ""
    parts = ['<div class="gml-recovery-section"><h4>What a VMM can recover from</h4>',
             f"<p>{esc(PROPERTIES['vmm_recovers'].claim)}: the reference VMM of each proposal "
             "sees only what its calls return; an extra reference or a failed allocation "
             "(<code>[other]</code>) may come between its calls and goes away eventually.</p>"]
    for c in cols:
        r = c.recovery
        d = r.to_json()
        verdict = "recovers from every failure" if r.holds else f"gives up on <code>{esc(r.gives_up_on)}</code>"
        parts.append(f'<div class="gml-vmm" data-proposal="{esc(c.proposal)}" data-holds="{str(r.holds).lower()}">'
                     f"<p><b>{esc(c.proposal)}</b> ({esc(', '.join(d['policy']))}): {verdict}.</p>")
        if not r.holds:
            parts.append(f"<pre>{esc(actor_steps_text(r.steps))}</pre>")
            calls = [("" if who == "vmm" else f"[{who}] ") + call_text(ev) for who, ev in r.steps]
            parts.append(lanes_html(compute(r.config, r.counterexample), calls))
        rows = "".join(
            f'<tr data-guessing="{str(row["guessing"]).lower()}"><td><code>{esc(op)}</code></td>'
            f"<td><code>{esc(row['outcome'])}</code></td><td>{esc(', '.join(row['causes']))}</td>"
            f"<td>{esc('; '.join(row['recoveries']))}</td>"
            f"<td>{'<b>guessing</b>' if row['guessing'] else ''}</td></tr>"
            for op, rs in c.information.items() for row in rs)
        parts.append('<table class="gml-errinfo" style="font-size:90%"><tr><th>call</th><th>outcome</th>'
                     f"<th>causes</th><th>recoveries they need</th><th></th></tr>{rows}</table></div>")
    return "".join(parts) + "</div>"
