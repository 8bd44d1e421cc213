"""Memory-map lanes: what each page looks like after every step of a sequence of calls.

Per page, five lanes over time: the KVM attribute (S shared, P private), the trusted
entity's state (- none, pend(ing), valid), the host page tables that map it, the extra
references (pins) on it, and its contents (* = measured by the launch). A step at which
an invariant starts to fail is marked. The same data renders as HTML for notebooks and
as text of at most 72 columns for email.

>>> from gmemlab.model.state import Config
>>> cfg = Config(platform="snp")
>>> evs = [{"op": "create_gmem", "size": 4096, "flags": ("MMAP", "INIT_SHARED")},
...        {"op": "host_write", "offset": 0, "value": 65}]
>>> print(lanes_text(compute(cfg, evs)))
page 0 @0x0     1      2
  attribute     S      S
  TE            -      -
  host map      -      vmm
  pins          -      -
  contents      -      A
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from gmemlab.model.state import TE_NAMES, Config, Page, VmState, content_name
from gmemlab.traces.walk import walk

LANES = ("attribute", "TE", "host map", "pins", "contents")


@dataclass
class Lanes:
    """A replayed sequence: the states after each step and what broke where."""

    config: Config
    events: list                 # the events as given
    outcomes: list               # the model's outcome of each (gmemlab.traces.walk)
    states: list                 # the state after each event
    broken: list                 # per step: invariants that start to fail there
    first: int = 1               # the number shown for the first step
    notes: dict = field(default_factory=dict)   # step index -> extra marks (e.g. no_stuck_state)
    labels: list | None = None   # what to number the steps by (e.g. trace line numbers)
    unit: str = "step"           # what a number names ("step" or "line")

    @property
    def pages(self) -> int:
        return max((len(s.pages) for s in self.states), default=0)

    def window(self, center: int, before: int = 3, after: int = 1) -> "Lanes":
        """The steps around step index ``center`` (0-based), numbered as in the whole."""
        lo, hi = max(0, center - before), min(len(self.events), center + after + 1)
        return Lanes(self.config, self.events[lo:hi], self.outcomes[lo:hi], self.states[lo:hi],
                     self.broken[lo:hi], self.first + lo,
                     {k - lo: v for k, v in self.notes.items() if lo <= k < hi},
                     None if self.labels is None else self.labels[lo:hi], self.unit)

    def marks(self, k: int) -> list[str]:
        return list(self.broken[k]) + list(self.notes.get(k, ()))

    def offending(self, k: int) -> set[int]:
        """The pages that break a state invariant starting to fail at step k: the
        invariant's own predicate (gmemlab.invariants) fails on the state with every
        other page as a fresh one (Page()); a transition invariant names no page."""
        from gmemlab.invariants import PROPERTIES
        state, out = self.states[k], set()
        for name in self.broken[k]:
            prop = PROPERTIES.get(name)
            if prop is None or prop.on_state is None:
                continue
            blank = (Page(),) * len(state.pages)
            for i, page in enumerate(state.pages):
                alone = state._replace(pages=blank[:i] + (page,) + blank[i + 1:])
                if not prop.on_state(self.config, alone):
                    out.add(i)
        return out

    def number(self, k: int):
        """The number shown for step k (its step number, or its label)."""
        return self.first + k if self.labels is None else self.labels[k]


def compute(cfg: Config, events: list, initial: VmState = VmState(), notes: dict | None = None,
            by_line: bool = False) -> Lanes:
    """Replay events from ``initial`` (gmemlab.traces.walk, page by page: what a trace
    observed, ENOMEM included, is what the lanes show) and keep every state; ``by_line``
    numbers the steps by the events' line in their trace file."""
    events = list(events)
    steps = list(walk(cfg, events, initial, engine="pages"))
    return Lanes(cfg, events, [st.outcome for st in steps], [st.post for st in steps],
                 [list(st.broken) for st in steps], 1, dict(notes or {}),
                 [st.line for st in steps] if by_line else None, "line" if by_line else "step")


def cell(state: VmState, page: int, lane: str) -> str:
    """The full text of one lane of one page in one state ('' before the page exists)."""
    if page >= len(state.pages):
        return ""
    p = state.pages[page]
    if lane == "attribute":
        return "P" if p.private else "S"
    if lane == "TE":
        return "-" if not p.te else TE_NAMES[p.te]
    if lane == "host map":
        return "+".join(p.mapped) or "-"
    if lane == "pins":
        return str(p.pins) if p.pins else "-"
    if lane == "contents":
        if not p.allocated:
            return "-"
        return content_name(p.content) + ("*" if p.measured else "")
    raise KeyError(lane)


_SHORT = {"pending": "pend", "garbage": "garb", "stale*": "stale*"}


def _short(text: str, width: int) -> str:
    text = _SHORT.get(text, text)
    return text if len(text) <= width else text[:width - 1] + "~"


# --- text ---------------------------------------------------------------------------

def lanes_text(lanes: Lanes, width: int = 72) -> str:
    """The lanes as text, at most ``width`` columns (steps wrap into several blocks)."""
    label_w, col_w = 16, 7
    per_block = max(1, (width - label_w - 1) // col_w)
    n = len(lanes.events)
    out: list[str] = []
    for lo in range(0, n, per_block):
        ks = range(lo, min(n, lo + per_block))
        if lo:
            out.append("")
        for page in range(lanes.pages):
            if out and out[-1] != "":
                out.append("")
            heads = "".join((str(lanes.number(k)) + ("!" if lanes.marks(k) else "")).ljust(col_w) for k in ks)
            out.append((f"page {page} @{page * lanes.config.page_size:#x}".ljust(label_w) + heads).rstrip())
            for lane in LANES:
                cells = "".join(_short(cell(lanes.states[k], page, lane), col_w - 1).ljust(col_w) for k in ks)
                out.append(("  " + lane).ljust(label_w) + cells.rstrip())
    marked = [(lanes.number(k), lanes.marks(k)) for k in range(n) if lanes.marks(k)]
    if marked:
        out.append("")
        from gmemlab.render.text import wrap
        for num, names in marked:
            out.append(wrap(f"! {lanes.unit} {num}: {', '.join(names)}", "", width))
    return "\n".join(out)


# --- HTML ---------------------------------------------------------------------------

_LANE_STYLE = {
    ("attribute", "S"): "background:#dff3df",
    ("attribute", "P"): "background:#e6dcf5",
    ("TE", "pending"): "background:#fff1b8",
    ("TE", "valid"): "background:#ffd59e",
}


_FORBIDDEN = "background:#f6c9c9"


def _style(lane: str, text: str, state: VmState, page: int) -> str:
    style = _LANE_STYLE.get((lane, text), "")
    if lane in ("host map", "pins") and text not in ("", "-"):
        p = state.pages[page]
        # the host reaching a private or TE-held page is what the invariants forbid
        style = _FORBIDDEN if (p.private or p.te) else "background:#dbe9ff"
    if lane == "contents" and text.startswith(("stale", "garbage")):
        style = _FORBIDDEN
    return style


def lanes_html(lanes: Lanes, calls: list[str] | None = None) -> str:
    """The lanes as an HTML table: one column per step, five rows per page."""
    from gmemlab.render.text import call_text, outcome_text
    n = len(lanes.events)
    calls = calls or [call_text(ev) for ev in lanes.events]
    th = ['<th style="text-align:left">page</th><th style="text-align:left">' + lanes.unit + "</th>"]
    for k in range(n):
        marks = lanes.marks(k)
        tip = f"{calls[k]} = {outcome_text(lanes.outcomes[k])}"
        if marks:
            tip += "\nbreaks: " + ", ".join(marks)
        style = "background:#b22222;color:#fff" if marks else ""
        op = html.escape(lanes.events[k]["op"])
        th.append(f'<th title="{html.escape(tip)}" style="{style};padding:2px 5px">{lanes.number(k)}'
                  f'<br><span style="font-weight:normal;font-size:80%">{op}</span></th>')
    rows = ["<tr>" + "".join(th) + "</tr>"]
    offending = [lanes.offending(k) if lanes.broken[k] else set() for k in range(n)]
    for page in range(lanes.pages):
        for j, lane in enumerate(LANES):
            tds = []
            if j == 0:
                tds.append(f'<th rowspan="{len(LANES)}" style="vertical-align:top;text-align:left">'
                           f'page {page}<br><span style="font-weight:normal">@{page * lanes.config.page_size:#x}'
                           "</span></th>")
            tds.append(f'<td style="color:#555">{lane}</td>')
            for k in range(n):
                text = cell(lanes.states[k], page, lane)
                border = ";border-left:2px solid #b22222" if lanes.marks(k) else ""
                # the page a state invariant forbids as it is, in red (Lanes.offending)
                style = (_FORBIDDEN if lane in ("attribute", "TE") and page in offending[k]
                         else _style(lane, text, lanes.states[k], page))
                tds.append(f'<td style="{style}{border};'
                           f'text-align:center;padding:1px 5px">{html.escape(text)}</td>')
            top = ' style="border-top:2px solid #888"' if j == 0 else ""
            rows.append(f"<tr{top}>" + "".join(tds) + "</tr>")
    legend = ('<div style="font-size:85%">S shared, P private (KVM attribute); TE: the trusted '
              "entity's state; host map: processes whose page tables map the page; * measured by "
              "the launch; red: what an invariant forbids.</div>")
    marks = "".join(f"<li>{lanes.unit} {lanes.number(k)}: {html.escape(', '.join(lanes.marks(k)))}</li>"
                    for k in range(n) if lanes.marks(k))
    return ('<div class="gml-lanes"><table style="border-collapse:collapse;font-family:monospace;'
            'font-size:90%">' + "".join(rows) + "</table>" + legend
            + (f'<ul style="color:#b22222;font-size:90%">{marks}</ul>' if marks else "") + "</div>")
