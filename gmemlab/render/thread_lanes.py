"""Thread lanes: an interleaved counterexample drawn as one column per thread.

A counterexample of an interleaved exploration (Bounds.interleave, gmemlab.model.threads)
is a flat list of events: a call event begins a thread's call (its outcome is
``{"pending": true}``), and each ``{"op": "run", "thread": T}`` takes T's next step,
the last of which returns the call's outcome. Read as a list, the run steps say nothing
("run() = ok"); read as lanes, each thread's column shows the call it began and, under
it, its steps in time, so the race is where the columns cross.

One row per event, in the order of the counterexample; a row's one non-empty cell sits
in its thread's column (THREADS order, only the threads present). An event without a
thread (create_gmem, the atomic setup) spans the row. The cells:

- a call begun: the call in the form of the flat step list (render.text.call_text);
- a step of it: ``. step k`` (its k-th step since it began), followed by what the
  kernel does in it where the event's "note" says (the explorer's counterexamples do:
  gmemlab.model.threads.step_name), ``. blocked`` (it waited for the invalidate lock
  another thread holds and changed nothing);
- the step that ends it: ``-> outcome`` (render.text.outcome_text), and its note.

A call begun that no step of its own follows in the counterexample is left out (unrun):
the partial-order reduction begins an idle thread's call first (Spec.ample), so the
shortest counterexample may begin a call that plays no part in it. The counterexample
itself keeps it (it replays as it is); the rows keep their numbers in it, and a note
under the lanes says which were left out and why.

The text form is ASCII and at most ``width`` columns (render.text: mailing-list
replies); a cell that does not fit its column wraps inside it. The HTML form is one
self-contained table (no external assets), every text escaped.

>>> evs = [{"op": "create_gmem", "size": 4096, "flags": ("MMAP",), "expect": {"ret": 0}},
...        {"op": "punch_hole", "offset": 0, "size": 4096, "thread": "vmm", "expect": {"pending": True}},
...        {"op": "host_read", "offset": 0, "thread": "io", "expect": {"pending": True}},
...        {"op": "run", "thread": "vmm", "expect": {"pending": True}},
...        {"op": "run", "thread": "io", "expect": {"blocked": True}},
...        {"op": "run", "thread": "vmm", "expect": {"ret": 0}},
...        {"op": "run", "thread": "io", "expect": {"ok": True, "value": 0}}]
>>> print(lanes_text(evs, width=60))
   vmm                          io
   ---------------------------  ---------------------------
1  create_gmem(0x1000, MMAP) = 0
2  punch_hole(0x0, 0x1000)
3                               host_read(0x0)
4  . step 1
5                               . blocked
6  -> 0
7                               -> ok value=0
<BLANKLINE>
. step k: the call's k-th step, and what the kernel does in
it where the trace says (its note); . blocked: it waited for
the lock another thread holds; -> the step that ends the
call, its outcome.
"""

from __future__ import annotations

import html
import textwrap
from typing import NamedTuple

from gmemlab.spec import THREADS

GAP = 2
LEGEND = ("{dot} step k: the call's k-th step, and what the kernel does in it where the trace says "
          "(its note); {dot} blocked: it waited for the lock another "
          "thread holds; {arrow} the step that ends the call, its outcome.")


class Row(NamedTuple):
    """One event of the counterexample as a lane cell."""

    number: int          # 1-based position in the counterexample
    thread: str | None   # its lane (None: an atomic event, the row spans every lane)
    kind: str            # "call", "step", "blocked", "end" or "atomic"
    text: str            # the cell's text


def unrun(events: list) -> list[int]:
    """The 1-based numbers of the calls begun that no step of their own follows (a begin
    answered pending with no later run of its thread): the lanes leave them out."""
    out = []
    for n, ev in enumerate(events, 1):
        t = ev.get("thread")
        if t is None or ev["op"] == "run" or not ev.get("expect", {}).get("pending"):
            continue
        if not any(later.get("thread") == t and later["op"] == "run" for later in events[n:]):
            out.append(n)
    return out


def rows(events: list) -> list[Row]:
    """The cells of the lanes, one per event in order (both forms draw these), but for
    the calls begun and never run (unrun).

    A run's step number counts the runs of its thread since its call began, leaving
    out the blocked ones (a blocked step changes nothing: gmemlab.model.threads)."""
    from gmemlab.render.text import call_text, outcome_text
    out, steps = [], {}
    skip = set(unrun(events))
    for n, ev in enumerate(events, 1):
        thread, expect = ev.get("thread"), ev.get("expect", {})
        if n in skip:
            continue
        if thread is None:
            out.append(Row(n, None, "atomic", f"{call_text(ev)} = {outcome_text(expect)}"))
        elif ev["op"] != "run":
            if expect.get("pending"):
                steps[thread] = 0
            # A begin is pending; any other answer (busy) is said.
            tail = "" if expect.get("pending") or not expect else f" = {_answer(expect)}"
            out.append(Row(n, thread, "call", call_text(ev) + tail))
        elif expect.get("blocked"):
            out.append(Row(n, thread, "blocked", "blocked"))
        elif expect.get("pending"):
            steps[thread] = steps.get(thread, 0) + 1
            note = ev.get("note")
            out.append(Row(n, thread, "step", f"step {steps[thread]}" + (f": {note}" if note else "")))
        elif expect.get("idle") or expect.get("busy"):
            out.append(Row(n, thread, "step", _answer(expect)))
        else:
            steps.pop(thread, None)
            note = ev.get("note")
            out.append(Row(n, thread, "end", outcome_text(expect) + (f" ({note})" if note else "")))
    return out


def unrun_note(events: list) -> str:
    """The note under the lanes on the calls they leave out (unrun); "" if none."""
    from gmemlab.render.text import call_text
    left = unrun(events)
    if not left:
        return ""
    what = [f"{events[n - 1]['thread']}'s {call_text(events[n - 1])} (row {n})" for n in left]
    listed = what[0] if len(what) == 1 else ", ".join(what[:-1]) + " and " + what[-1]
    one = len(left) == 1
    return (f"Left out: {listed}, {'a call' if one else f'{len(left)} calls'} begun, never run: "
            f"no step of {'it' if one else 'theirs'} comes before the counterexample ends (the "
            f"search begins an idle thread's call first).")


def _answer(expect: dict) -> str:
    from gmemlab.render.text import outcome_text
    for k in ("busy", "idle", "blocked", "pending"):
        if expect.get(k):
            return k
    return outcome_text(expect)


def threads_of(events: list) -> list[str]:
    """The threads the lanes draw, in THREADS order (a thread the model does not name
    last): those of some event but a call never run (unrun)."""
    skip = set(unrun(events))
    seen = {ev["thread"] for n, ev in enumerate(events, 1) if ev.get("thread") and n not in skip}
    return [t for t in THREADS if t in seen] + sorted(seen - set(THREADS))


_MARK = {"step": ". ", "blocked": ". ", "end": "-> "}


def lanes_text(events: list, width: int = 72) -> str:
    """The lanes as plain ASCII text of at most ``width`` columns (see the module doc)."""
    lanes = threads_of(events)
    table = rows(events)
    num_w = len(str(len(events))) + 2
    n = max(1, len(lanes))
    col_w = max(8, (width - num_w - GAP * (n - 1)) // n)
    out = [(" " * num_w + (" " * GAP).join(t.ljust(col_w) for t in lanes)).rstrip(),
           (" " * num_w + (" " * GAP).join("-" * col_w for _ in lanes)).rstrip()]
    for r in table:
        if r.thread is None:
            cells = _wrap(r.text, max(8, width - num_w))
            at = 0
        else:
            cells = _wrap(_MARK.get(r.kind, "") + r.text, col_w)
            at = lanes.index(r.thread) * (col_w + GAP)
        for j, line in enumerate(cells):
            head = str(r.number).ljust(num_w) if j == 0 else " " * num_w
            out.append((head + " " * at + line).rstrip())
    out += ["", textwrap.fill(LEGEND.format(dot=".", arrow="->"), width=width, break_on_hyphens=False)]
    note = unrun_note(events)
    if note:
        out.append(textwrap.fill(note, width=width, break_on_hyphens=False))
    return "\n".join(out)


def _wrap(text: str, width: int) -> list[str]:
    """text in lines of at most width, continuation lines indented by two."""
    return textwrap.wrap(text, width=width, subsequent_indent="  ", break_long_words=True,
                         break_on_hyphens=False) or [""]


# Every cell says its alignment inline: a notebook's stylesheet (JupyterLab's, nbconvert's)
# right-aligns table cells, which would push a cell against the next thread's column.
_LEFT = "text-align:left;padding:1px 6px;border-left:1px solid #ddd"
_CELL_STYLE = {
    "call": "font-weight:bold",
    "step": "color:#666",
    "blocked": "color:#8a5a00;background:#fff1b8",
    "end": "background:#e8f0fe",
}
# An event of no thread (the atomic create_gmem before the threads' calls) belongs to no
# lane: a full-width grey row, labelled.
_NO_THREAD = ("text-align:left;padding:1px 6px;font-style:italic;color:#555;background:#f4f4f4;"
              "border-top:1px solid #ddd;border-bottom:1px solid #ddd")


def lanes_html(events: list) -> str:
    """The lanes as an HTML table, one column per thread (see the module doc)."""
    lanes = threads_of(events)
    esc = html.escape
    head = '<th style="text-align:right;padding:2px 6px">#</th>' + "".join(
        f'<th style="text-align:left;padding:2px 6px;border-bottom:1px solid #888">{esc(t)}</th>'
        for t in lanes)
    body = []
    for r in rows(events):
        num = f'<td style="color:#888;text-align:right;padding:1px 6px">{r.number}</td>'
        if r.thread is None:
            body.append(f"<tr>{num}<td colspan=\"{max(1, len(lanes))}\" style=\"{_NO_THREAD}\">"
                        f'<span style="font-size:85%">no thread:</span> <code>{esc(r.text)}</code></td></tr>')
            continue
        mark = {"step": "&middot; ", "blocked": "&middot; ", "end": "&rarr; "}.get(r.kind, "")
        tds = []
        for t in lanes:
            if t != r.thread:
                tds.append(f'<td style="{_LEFT}"></td>')
                continue
            style = _CELL_STYLE.get(r.kind, "")
            tds.append(f'<td style="{_LEFT};{style}">{mark}<code>{esc(r.text)}</code></td>')
        body.append(f"<tr>{num}{''.join(tds)}</tr>")
    legend = esc(LEGEND.format(dot="\u00b7", arrow="\u2192"))
    note = unrun_note(events)
    note = f'<div class="gml-unrun" style="font-size:85%;color:#555">{esc(note)}</div>' if note else ""
    return ('<div class="gml-thread-lanes"><table style="border-collapse:collapse;font-size:90%">'
            f"<tr>{head}</tr>{''.join(body)}</table>"
            f'<div style="font-size:85%;color:#555">{legend}</div>{note}</div>')
