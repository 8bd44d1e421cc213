"""HTML for notebooks and the exported report: tables, steps, sources, verdicts, toggles.

Everything here returns a string (no IPython needed); ``show`` wraps it for display.
Class names start with ``gml-`` and data attributes carry the values a test or a
browser needs (``data-focus``, ``data-differs``), so nobody has to scrape colours.

>>> pre("a < b").endswith(">a &lt; b</pre>")
True
"""

from __future__ import annotations

import hashlib
import html
import itertools

from gmemlab.invariants import ALWAYS, PROPERTIES

esc = html.escape

HOLDS, VACUOUS, BROKEN = "#dff3df", "#f2f2f2", "#f6c9c9"


class HTML:
    """A string that Jupyter shows as HTML (no IPython import needed)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_html_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def show(text: str) -> HTML:
    return HTML(text)


def pre(text: str) -> str:
    """Plain text, as it would go into an email."""
    return ('<pre class="gml-text" style="font-family:\'DejaVu Sans Mono\',monospace;white-space:pre;'
            f'line-height:1.3">{esc(text, quote=False)}</pre>')


def sources_html(items: list[tuple[str, str]], title: str = "Sources", collapsed: bool = False) -> str:
    """A list of (what, where it comes from); ``collapsed`` folds it under its title."""
    lis = "".join(f"<li><b>{esc(what)}</b>: {esc(src)}</li>" for what, src in items if src)
    if collapsed:
        return (f'<details class="gml-sources" style="font-size:90%"><summary><b>{esc(title)}</b></summary>'
                f"<ul>{lis}</ul></details>")
    return f'<div class="gml-sources" style="font-size:90%"><b>{esc(title)}</b><ul>{lis}</ul></div>'


# --- the comparison matrix ----------------------------------------------------------------

# One source of the matrix's rows and cells (text, HTML and the reply show the same).
from gmemlab.render.text import cell_text, matrix_rows, recovery_lines  # noqa: E402,F401


def compare_html(table, focus: str | None = None, against: str | None = None,
                 sources: bool | str = True) -> str:
    """The comparison matrix; the ``focus`` column stands out and its cells that differ
    from the ``against`` column are marked. ``sources``: True (listed), "collapsed"
    (folded under a summary) or False (the caller cites them)."""
    from gmemlab.render.sources import config_sources, proposal_claim, proposal_source
    names = [c.proposal for c in table.columns]
    fi = names.index(focus) if focus in names else None
    ai = names.index(against) if against in names else None
    rows = matrix_rows(table)
    differs = 0
    head = ['<th style="text-align:left">proposal</th>']
    for k, name in enumerate(names):
        style = "background:#1f5fbf;color:#fff" if k == fi else ("background:#ddd" if k == ai else "")
        role = " (focus)" if k == fi else (" (against)" if k == ai else "")
        head.append(f'<th class="gml-col" data-proposal="{esc(name)}" title="{esc(proposal_claim(name))}" '
                    f'style="{style};padding:2px 8px">{esc(name)}{role}</th>')
    body = []
    for label, cells in rows:
        prop = PROPERTIES.get(label)
        tip = f' title="{esc(prop.claim)} (source: {esc(prop.source)})"' if prop else ""
        tds = [f'<td{tip} style="text-align:left;font-family:monospace">{esc(label)}</td>']
        for k, text in enumerate(cells):
            bg = BROKEN if text.startswith("BROKEN") else (VACUOUS if text == "holds*" else
                                                         (HOLDS if text == "holds" else ""))
            mark, extra = "", ""
            if k == fi and ai is not None and k != ai and prop and text.split()[0] != cells[ai].split()[0]:
                mark, extra = " &#8800;", ";outline:2px solid #1f5fbf"
                differs += 1
            tds.append(f'<td class="gml-cell" data-row="{esc(label)}" data-proposal="{esc(names[k])}" '
                       f'style="background:{bg or "transparent"}{extra};text-align:center;padding:1px 8px">'
                       f"{esc(text)}{mark}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    errs = []
    for c in table.columns:
        chans = "; ".join(f"{op}: {', '.join(m)}" for op, m in c.errors.items()) or "none"
        errs.append(f"<li><b>{esc(c.proposal)}</b>: {esc(chans)}</li>")
    knobs = ", ".join(sorted(k for k, v in table.knobs.items() if v)) or "none"
    caption = (f"{esc(table.platform)}, series {esc(table.series)}, {table.bounds.pages} page(s); "
               f"knobs: {esc(knobs)}")
    if fi is not None and ai is not None and fi != ai:
        caption += (f". Focus <b>{esc(names[fi])}</b> against <b>{esc(names[ai])}</b>: "
                    f"{differs} of {sum(1 for label, _ in rows if label in PROPERTIES)} invariants differ")
    srcs = [(f"proposal {n}", proposal_source(n)) for n in names]
    srcs += config_sources(table.platform, table.series, table.knobs)
    return (f'<div class="gml-matrix" data-focus="{esc(focus or "")}" data-against="{esc(against or "")}" '
            f'data-differs="{differs}" data-platform="{esc(table.platform)}" data-series="{esc(table.series)}" '
            f'data-pages="{table.bounds.pages}">'
            f'<div class="gml-caption" style="margin:2px 0">{caption}</div>'
            '<table style="border-collapse:collapse">'
            f'<tr>{"".join(head)}</tr>{"".join(body)}</table>'
            '<div style="font-size:85%">holds* = holds, but what it speaks of never happens here; '
            "BROKEN n = the shortest counterexample has n calls (hover a row for the claim and "
            "its source).</div>"
            + recovery_html(table) +
            f'<div style="font-size:85%">error channels (errno@offset: says where it stopped; '
            f'+done: how many pages it did)<ul>{"".join(errs)}</ul></div>'
            + (sources_html(srcs, collapsed=sources == "collapsed") if sources else "") + "</div>")


def recovery_html(table) -> str:
    """Where each reference VMM gives up, and the outcomes that leave it guessing."""
    lines = recovery_lines(table)
    if not lines:
        return ""
    return f'<pre class="gml-recovery" style="font-size:85%;white-space:pre-wrap">{esc(chr(10).join(lines))}</pre>'


# --- steps and verdicts -------------------------------------------------------------------

def steps_html(events: list[dict], numbers: list | None = None) -> str:
    """Numbered selftest-like calls with the model's outcome (``numbers``: e.g. trace lines).
    Steps of an interleaving (events with a "thread") are drawn as lanes, one column per
    thread (render.thread_lanes)."""
    from gmemlab.render.text import call_text, outcome_text
    if numbers is None and any(ev.get("thread") for ev in events):
        from gmemlab.render.thread_lanes import lanes_html
        return lanes_html(events)
    nums = numbers or list(range(1, len(events) + 1))
    lis = "".join(f'<li value="{n}"><code>{esc(call_text(ev))}</code> = '
                  f"<code>{esc(outcome_text(ev.get('expect', {})))}</code></li>" for n, ev in zip(nums, events))
    return f'<ol class="gml-steps">{lis}</ol>'


def verdict_of(report) -> str:
    """'conforms', 'violates' (conforms but breaks an invariant) or 'diverges'."""
    if not report.conforms:
        return "diverges"
    return "violates" if report.violations else "conforms"


VERDICT_COLOR = {"conforms": HOLDS, "violates": "#ffe2bf", "diverges": BROKEN}


def verdicts_html(rows: list[dict]) -> str:
    """One row per trace: {"trace", "verdict", "expected", "events", "divergence", "violations"}."""
    head = "".join(f"<th style='text-align:left;padding:1px 6px'>{h}</th>" for h in
                   ("trace", "events", "verdict", "manifest", "first divergence", "invariants broken"))
    body = []
    for r in rows:
        d = r["divergence"]
        div = "" if d is None else f"line {d['line']} {d['op']}"
        inv = ", ".join(sorted({v["invariant"] for v in r["violations"]}))
        exp = r.get("expected") or ""
        same = "" if not exp else (" &#10003;" if exp == r["verdict"] else " &#10007;")
        body.append(f'<tr class="gml-verdict" data-trace="{esc(r["trace"])}" data-verdict="{r["verdict"]}">'
                    f'<td style="font-family:monospace;text-align:left" title="{esc(r.get("description", ""))}">'
                    f'{esc(r["trace"])}</td>'
                    f'<td style="text-align:right">{r["events"]}</td>'
                    f'<td style="background:{VERDICT_COLOR[r["verdict"]]};text-align:left">{r["verdict"]}</td>'
                    f"<td style='text-align:left'>{esc(exp)}{same}</td><td style='text-align:left'>{esc(div)}</td>"
                    f"<td style='text-align:left'>{esc(inv)}</td></tr>")
    return f'<table style="border-collapse:collapse"><tr>{head}</tr>{"".join(body)}</table>'


def counts_html(title: str, counts: dict, missing: list | None = None) -> str:
    """A small two-column table of counts, and what was never seen."""
    body = "".join(f"<tr><td style='font-family:monospace'>{esc(str(k))}</td>"
                   f"<td style='text-align:right'>{v}</td></tr>" for k, v in counts.items())
    miss = ""
    if missing:
        miss = f"<div>never seen: <code>{esc(', '.join(map(str, missing)))}</code></div>"
    return f"<div><b>{esc(title)}</b><table>{body}</table>{miss}</div>"


# --- a toggle that needs no kernel and no script -------------------------------------------

def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(text))


def toggle_html(dims: list[tuple[str, list[str]]], panes: dict[tuple, str], default: tuple,
                title: str = "") -> str:
    """Precomputed panes switched by radio buttons and CSS alone.

    ``dims`` names the choices (e.g. [("series", ["v7", "v8"]), ("focus", [...])]); ``panes``
    maps each combination (a tuple, one value per dimension) to its HTML. The exported
    page then still toggles without a kernel and without JavaScript: radio inputs that
    precede the panes as siblings select them with ``:checked ~`` rules.
    """
    uid = "gmt-" + hashlib.sha1(repr((dims, sorted(panes), default, title)).encode()).hexdigest()[:10]
    ids = {(d, v): f"{uid}-{k}-{_slug(v)}" for k, (d, vals) in enumerate(dims) for v in vals}
    css = [f"#{uid} .gml-pane{{display:none}}",
           f"#{uid} input.gml-radio{{position:absolute;opacity:0;pointer-events:none}}",
           f"#{uid} .gml-controls label{{cursor:pointer;border:1px solid #999;border-radius:3px;"
           "padding:1px 6px;margin:1px;display:inline-block}"]
    for combo in itertools.product(*[vals for _, vals in dims]):
        sel = " ~ ".join(f"#{ids[(d, v)]}:checked" for (d, _), v in zip(dims, combo))
        css.append(f"#{uid} {sel} ~ .gml-panes .gml-pane-{_slug('-'.join(combo))}{{display:block}}")
    for (d, vals) in dims:
        for v in vals:
            css.append(f"#{uid} #{ids[(d, v)]}:checked ~ .gml-controls label[for={ids[(d, v)]}]"
                       "{background:#1f5fbf;color:#fff;border-color:#1f5fbf}")
    inputs, controls = [], []
    for k, (d, vals) in enumerate(dims):
        labels = []
        for v in vals:
            checked = " checked" if v == default[k] else ""
            inputs.append(f'<input type="radio" class="gml-radio" name="{uid}-{k}" id="{ids[(d, v)]}" '
                          f'data-dim="{esc(d)}" value="{esc(v)}"{checked}>')
            labels.append(f'<label for="{ids[(d, v)]}">{esc(v)}</label>')
        controls.append(f"<div><b>{esc(d)}</b>: {' '.join(labels)}</div>")
    body = "".join(f'<div class="gml-pane gml-pane-{_slug("-".join(combo))}" data-combo="{esc("/".join(combo))}">'
                   f"{panes[combo]}</div>" for combo in itertools.product(*[vals for _, vals in dims])
                   if combo in panes)
    return (f'<div class="gml-toggle" id="{uid}" style="position:relative"><style>{"".join(css)}</style>'
            + (f"<div><b>{esc(title)}</b></div>" if title else "")
            + "".join(inputs) + f'<div class="gml-controls">{"".join(controls)}</div>'
            + f'<div class="gml-panes">{body}</div></div>')
