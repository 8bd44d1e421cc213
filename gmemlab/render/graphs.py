"""Drawing state graphs: Graphviz's ``dot`` when it is installed, pure Python otherwise.

The graphs come from gmemlab.explore.graph (full_graph, quotient, difference); this
module only draws them. Both drawings start from one neutral description (boxes,
arrows, colours, tooltips), so they say the same thing: the DOT text goes to Debian's
``dot -Tsvg``; without it (or with ``engine="python"``) a small layered layout writes the
SVG itself. Output is deterministic: the same graph gives the same bytes.

Colours: a state in which some invariant fails is red; in a difference, what only the
first proposal reaches is blue, what only the second reaches is orange and dashed; an
initial state has a thick border.

>>> from gmemlab.explore import Bounds, explore
>>> from gmemlab.model.state import Config
>>> x = explore(Config(proposal="private-first", platform="sw_protected"), Bounds(pages=1))
>>> v = draw(quotient_view(x), engine="python")
>>> v.engine, v.svg.startswith("<svg")
('python', True)
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from gmemlab.model.state import TE_NAMES

# --- projections for quotient views ---------------------------------------------------


def attribute_x_te(s) -> tuple:
    """Per page: KVM attribute and TE state (the default of gmemlab.explore.graph)."""
    from gmemlab.explore.graph import attribute_x_te as key
    return key(s)


def host_view(s) -> tuple:
    """Per page: KVM attribute, and whether the host maps (h) or pins (p) it."""
    pages = tuple(("P" if p.private else "S") + ("h" if p.mapped else "") + ("p" if p.pins else "")
                  for p in s.pages)
    return pages, s.finalized


def launch_view(s) -> tuple:
    """Per page: TE state and whether the launch measured it (m)."""
    pages = tuple(("P" if p.private else "S") + "/" + TE_NAMES[p.te] + ("/m" if p.measured else "")
                  for p in s.pages)
    return pages, s.finalized


PROJECTIONS = {
    "attribute x TE": attribute_x_te,
    "attribute x host access": host_view,
    "launch progress": launch_view,
}


# --- a neutral description ------------------------------------------------------------

RED, RED_LINE = "#f6c9c9", "#b22222"
CHOSEN, CHOSEN_LINE = "#fff1a8", "#8a6d00"   # the state a neighbourhood view is centred on
SIDE_FILL = {"a": "#d6e6ff", "b": "#ffe2bf", "both": "#f2f2f2", None: "#f2f2f2"}
SIDE_LINE = {"a": "#1f5fbf", "b": "#c06000", "both": "#555555", None: "#555555"}
FONT = "DejaVu Sans Mono"


@dataclass
class Box:
    id: str
    lines: list
    fill: str
    line: str
    bold: bool
    tooltip: str
    rank: int | None = None      # the row it belongs in (clusters by level); None: by distance


@dataclass
class Arrow:
    src: str
    dst: str
    label: str
    line: str
    dashed: bool
    tooltip: str
    both: bool = False           # one arrow for the calls both ways between two boxes


@dataclass
class Drawing:
    """What to draw: boxes and arrows, with a title and the names of a difference's sides."""

    title: str
    boxes: list = field(default_factory=list)
    arrows: list = field(default_factory=list)
    names: tuple = ()            # difference: (first proposal, second proposal)
    kind: str = "graph"          # "full", "quotient", "difference", "path", "neighbourhood", ...
    svg_title: bool = True       # False: the title is in the HTML caption only (it wraps there)
    grid: bool = False           # dot too places the boxes in the fallback's rows (bounded width)


def _node_lines(data: dict, count: bool) -> list[str]:
    lines = [part.strip() for part in str(data.get("label", "")).split(" | ")]
    if count and data.get("count", 1) > 1:
        lines.append(f"x{data['count']} states")
    return lines


# Above this many arrows their labels make a drawing unreadable: tooltips only.
MAX_LABELLED_ARROWS = 40


def _describe(g, title: str, kind: str, names: tuple = (), edge_labels: bool = True,
              both_ways: bool = False) -> Drawing:
    d = Drawing(title=title, names=names, kind=kind)
    ids = {}
    for k, (n, data) in enumerate(g.nodes(data=True)):
        ids[n] = f"n{k}"
        side = data.get("side")
        broken = list(data.get("invariants", ()))
        tip = data.get("label", "")
        if broken:
            tip += "\nbreaks: " + ", ".join(broken)
        if side in ("a", "b") and names:
            tip += f"\nonly {names[0 if side == 'a' else 1]}"
        if data.get("tooltip"):
            tip += "\n" + data["tooltip"]
        fill, line = (RED, RED_LINE) if broken else (SIDE_FILL[side], SIDE_LINE[side])
        if data.get("chosen"):
            fill, line = CHOSEN, CHOSEN_LINE
        d.boxes.append(Box(ids[n], _node_lines(data, kind not in ("full", "path", "neighbourhood")),
                           fill, line, bool(data.get("initial") or data.get("chosen")), tip, data.get("rank")))
    merged: dict[tuple, dict] = {}
    for u, v, data in g.edges(data=True):
        e = merged.setdefault((ids[u], ids[v]), {"ops": [], "outcomes": [], "side": data.get("side"), "count": 0})
        e["count"] += data.get("count", 1)
        for op in data.get("ops", ()):
            if op not in e["ops"]:
                e["ops"].append(op)
        for o in data.get("outcomes", ()):
            if o not in e["outcomes"]:
                e["outcomes"].append(o)
    back: dict[tuple, str] = {}
    if both_ways:  # u -> v and v -> u (same side): one arrow with two heads
        for (u, v), e in list(merged.items()):
            r = merged.get((v, u))
            if r is not None and (v, u) not in back and (u, v) not in back and u != v and r["side"] == e["side"]:
                back[(u, v)] = ", ".join(r["ops"]) + f" ({r['count']:,})"
                e["ops"] = e["ops"] + [op for op in r["ops"] if op not in e["ops"]]
                e["count"] += r["count"]
                del merged[(v, u)]
    edge_labels = edge_labels and len(merged) <= MAX_LABELLED_ARROWS
    for (u, v), e in merged.items():
        tip = ", ".join(e["ops"]) + (" -> " + ", ".join(e["outcomes"]) if e["outcomes"] else "")
        if e["count"] > 1:
            tip += f" ({e['count']:,} transitions)"
        if (u, v) in back:
            tip = f"both ways; back: {back[(u, v)]}; all: " + tip
        ops = e["ops"] if len(e["ops"]) <= 2 else e["ops"][:1] + [f"+{len(e['ops']) - 1} more"]
        label = "\n".join(ops) if edge_labels else ""
        d.arrows.append(Arrow(u, v, label, SIDE_LINE[e["side"]], e["side"] == "b", tip, (u, v) in back))
    return d


def full_view(x, max_nodes: int = 400) -> Drawing:
    """Every state of an exploration (refuses more than max_nodes: use a quotient)."""
    from gmemlab.explore.graph import full_graph
    g = full_graph(x, max_nodes=max_nodes)
    cfg = x.config
    return _describe(g, f"{cfg.label()}, {x.bounds.pages} page(s): all {len(x.states)} states",
                     "full", edge_labels=False)


def quotient_view(x, projection: str = "attribute x TE") -> Drawing:
    """States folded by one of PROJECTIONS; an arrow where some call crosses between folds
    (gmemlab.render.bounded: clustered by level above bounded.MAX_BOXES folds)."""
    from gmemlab.render import bounded
    d = bounded.quotient_view(x, projection)
    d.svg_title, d.grid = True, False
    return d


def difference_view(a, b, projection: str = "attribute x TE") -> Drawing:
    """Two explorations' quotients overlaid: blue only in a, orange only in b (clustered
    by level above gmemlab.render.bounded.MAX_BOXES folds)."""
    from gmemlab.render import bounded
    d = bounded.difference_view(a, b, projection)
    d.svg_title, d.grid = True, False
    return d


# --- DOT ------------------------------------------------------------------------------

def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_source(d: Drawing) -> str:
    """The drawing as Graphviz DOT text.

    >>> print(dot_source(Drawing("t", [Box("n0", ["S"], "#fff", "#000", True, "S")], [])), end="")
    digraph gmemlab {
      graph [rankdir=TB, label="t", labelloc=t, fontname="DejaVu Sans Mono", fontsize=10, nodesep=0.25, ranksep=0.45];
      node [shape=box, style="rounded,filled", fontname="DejaVu Sans Mono", fontsize=9, margin="0.08,0.04"];
      edge [fontname="DejaVu Sans Mono", fontsize=8, arrowsize=0.6];
      n0 [label="S", fillcolor="#fff", color="#000", penwidth=2.5, tooltip="S"];
    }
    """
    label = f"label={_q(d.title)}, labelloc=t, " if d.svg_title else ""
    out = ["digraph gmemlab {",
           f"  graph [rankdir=TB, {label}fontname={_q(FONT)}, fontsize=10, "
           "nodesep=0.25, ranksep=0.45];",
           f"  node [shape=box, style=\"rounded,filled\", fontname={_q(FONT)}, fontsize=9, margin=\"0.08,0.04\"];",
           f"  edge [fontname={_q(FONT)}, fontsize=8, arrowsize=0.6];"]
    for b in d.boxes:
        out.append(f"  {b.id} [label={_q(chr(10).join(b.lines))}, fillcolor={_q(b.fill)}, color={_q(b.line)}, "
                   f"penwidth={2.5 if b.bold else 1}, tooltip={_q(b.tooltip)}];")
    grid = rows(d) if d.grid and len(d.boxes) > 1 else None
    if grid:  # each row a rank, kept in order by an invisible chain; arrows do not rank
        out[1] = out[1].replace("graph [", "graph [concentrate=true, ")
        for k, row in enumerate(grid):
            out.append(f"  {{rank=same; {'; '.join(row)};}}")
            if k:
                out.append(f"  {grid[k - 1][0]} -> {row[0]} [style=invis, weight=100];")
    for a in d.arrows:
        attrs = [f"color={_q(a.line)}", f"tooltip={_q(a.tooltip)}"]
        if grid:
            attrs.append("constraint=false")
        if a.both:
            attrs.append("dir=both")
        if a.label:
            attrs.insert(0, f"label={_q(a.label)}")
            attrs.append(f"fontcolor={_q(a.line)}")
        if a.dashed:
            attrs.append("style=dashed")
        out.append(f"  {a.src} -> {a.dst} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def dot_binary() -> str | None:
    """The ``dot`` program, unless GMEMLAB_NO_DOT is set (tests use it to force the fallback)."""
    if os.environ.get("GMEMLAB_NO_DOT"):
        return None
    return shutil.which("dot")


_COMMENT = re.compile(r"<!--.*?-->\s*", re.S)


def run_dot(source: str, binary: str, timeout: float = 120) -> str:
    """SVG from ``dot -Tsvg``, without the XML prolog and comments (they name the version)."""
    r = subprocess.run([binary, "-Tsvg"], input=source.encode(), capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"dot failed: {r.stderr.decode(errors='replace').strip()}")
    svg = r.stdout.decode()
    svg = _COMMENT.sub("", svg[svg.index("<svg"):])
    return svg.strip() + "\n"


# --- the pure-Python fallback -----------------------------------------------------------

CHAR_W, LINE_H, PAD, GAP_X, GAP_Y = 6.2, 12.0, 6.0, 14.0, 46.0
# A layer wider than this (in SVG units, 1 pt each) wraps onto several rows: about 900 px.
MAX_ROW_W = 600.0


def _layers(d: Drawing) -> dict[str, int]:
    """Breadth-first depth from the initial boxes (then from any box left over)."""
    succ: dict[str, list[str]] = {b.id: [] for b in d.boxes}
    for a in d.arrows:
        succ[a.src].append(a.dst)
    layer: dict[str, int] = {}
    starts = [b.id for b in d.boxes if b.bold] or [d.boxes[0].id]
    for start_group in [starts] + [[b.id] for b in d.boxes]:
        todo = [s for s in start_group if s not in layer]
        base = 0 if not layer else max(layer.values()) + 1
        for s in todo:
            layer[s] = base
        while todo:
            nxt = []
            for u in todo:
                for v in succ[u]:
                    if v not in layer:
                        layer[v] = layer[u] + 1
                        nxt.append(v)
            todo = nxt
    return layer


def _size(b: Box) -> tuple[float, float]:
    return max(len(t) for t in b.lines) * CHAR_W + 2 * PAD, len(b.lines) * LINE_H + 2 * PAD


def rows(d: Drawing) -> list[list[str]]:
    """The rows of boxes drawn, top to bottom: a layer each (by distance from the initial
    boxes, ordered by their predecessors; or each box's rank, in the order given), a layer
    wider than MAX_ROW_W wrapping."""
    ranked = all(b.rank is not None for b in d.boxes)
    layer = {b.id: b.rank for b in d.boxes} if ranked else _layers(d)
    preds: dict[str, list[str]] = {b.id: [] for b in d.boxes}
    for a in d.arrows:
        preds[a.dst].append(a.src)
    rows: dict[int, list[str]] = {}
    order = {b.id: k for k, b in enumerate(d.boxes)}
    for b in d.boxes:
        rows.setdefault(layer[b.id], []).append(b.id)
    pos_in_row: dict[str, float] = {}
    for r in sorted(rows):
        if ranked:
            continue

        def bary(n, r=r):
            ps = [pos_in_row[p] for p in preds[n] if p in pos_in_row and layer[p] < r]
            return (sum(ps) / len(ps) if ps else float("inf"), order[n])
        rows[r].sort(key=bary)
        for k, n in enumerate(rows[r]):
            pos_in_row[n] = k / max(1, len(rows[r]) - 1)
    sizes = {b.id: _size(b) for b in d.boxes}
    lines: list[list[str]] = []
    for r in sorted(rows):
        line: list[str] = []
        for n in rows[r]:
            if line and sum(sizes[m][0] + GAP_X for m in line) + sizes[n][0] > MAX_ROW_W:
                lines.append(line)
                line = []
            line.append(n)
        lines.append(line)
    return lines


def layout(d: Drawing) -> tuple[dict[str, tuple[float, float, float, float]], float, float]:
    """Box positions (x, y, w, h) in a layered drawing, and the total width and height."""
    lines = rows(d)
    sizes = {b.id: _size(b) for b in d.boxes}
    widths = [sum(sizes[n][0] for n in ns) + GAP_X * (len(ns) - 1) for ns in lines]
    total_w = max(widths) + 2 * GAP_X
    boxes: dict[str, tuple[float, float, float, float]] = {}
    y = 28.0 if d.svg_title else 8.0
    for ns, row_w in zip(lines, widths):
        x = (total_w - row_w) / 2
        h = max(sizes[n][1] for n in ns)
        for n in ns:
            w, hn = sizes[n]
            boxes[n] = (x, y + (h - hn) / 2, w, hn)
            x += w + GAP_X
        y += h + GAP_Y
    return boxes, total_w, y - GAP_Y + 16


def _f(v: float) -> str:
    return f"{v:.1f}"


def _text(x: float, y: float, s: str, size: int = 10, color: str = "#000", anchor: str = "middle") -> str:
    return (f'<text x="{_f(x)}" y="{_f(y)}" font-family="{FONT}, monospace" font-size="{size}" '
            f'fill="{color}" text-anchor="{anchor}">{html.escape(s)}</text>')


def fallback_svg(d: Drawing) -> str:
    """An SVG of the drawing without Graphviz: layers by distance from the initial states
    (a wide layer wraps), as wide as what it draws (no label falls outside)."""
    if not d.boxes:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="30"></svg>\n'
    boxes, width, height = layout(d)
    if d.svg_title:
        width = max(width, len(d.title) * CHAR_W * 1.1 + 2 * GAP_X)
    colors = sorted({a.line for a in d.arrows})
    label_w = CHAR_W * 8 / 9        # an edge label's character (8 pt beside 9 pt)
    right = width
    edges = []
    for a in d.arrows:
        x1, y1, w1, h1 = boxes[a.src]
        x2, y2, w2, h2 = boxes[a.dst]
        sx, sy = x1 + w1 / 2, y1 + h1
        tx, ty = x2 + w2 / 2, y2
        if y2 <= y1:  # same row or back up: leave from the side, bow outwards
            sx, sy = x1 + w1, y1 + h1 / 2
            tx, ty = x2 + w2, y2 + h2 / 2
            bend = min(80.0, 30 + abs(sy - ty) / 4)
            path = f"M{_f(sx)},{_f(sy)} C{_f(sx + bend)},{_f(sy)} {_f(tx + bend)},{_f(ty)} {_f(tx)},{_f(ty)}"
            mx, my = max(sx, tx) + bend * 0.75, (sy + ty) / 2
            right = max(right, max(sx, tx) + bend + 4)
        else:
            path = f"M{_f(sx)},{_f(sy)} L{_f(tx)},{_f(ty)}"
            mx, my = (sx + tx) / 2, (sy + ty) / 2
        labels = a.label.split("\n") if a.label else []
        if labels:
            right = max(right, mx + 3 + max(len(t) for t in labels) * label_w + 4)
        edges.append((a, path, mx, my, labels))
    width = right
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(width)}pt" height="{_f(height)}pt" '
           f'viewBox="0 0 {_f(width)} {_f(height)}">', "<defs>"]
    for k, c in enumerate(colors):
        out.append(f'<marker id="gml-arrow-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
                   f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>')
    out.append("</defs>")
    out.append(f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>')
    if d.svg_title:
        out.append(_text(width / 2, 16, d.title, 11))
    for a, path, mx, my, labels in edges:
        dash = ' stroke-dasharray="5,3"' if a.dashed else ""
        out.append(f'<g class="edge"><title>{html.escape(a.tooltip)}</title>'
                   f'<path d="{path}" fill="none" stroke="{a.line}" stroke-width="1"{dash} '
                   + (f'marker-start="url(#gml-arrow-{colors.index(a.line)})" ' if a.both else "")
                   + f'marker-end="url(#gml-arrow-{colors.index(a.line)})"/>')
        for k, line in enumerate(labels):
            out.append(_text(mx + 3, my + k * 9, line, 8, a.line, "start"))
        out.append("</g>")
    for b in d.boxes:
        x, y, w, h = boxes[b.id]
        out.append(f'<g class="node"><title>{html.escape(b.tooltip)}</title>'
                   f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" rx="5" fill="{b.fill}" '
                   f'stroke="{b.line}" stroke-width="{2.5 if b.bold else 1}"/>')
        for k, line in enumerate(b.lines):
            out.append(_text(x + w / 2, y + PAD + LINE_H * (k + 1) - 3, line, 9))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- the view a notebook shows ----------------------------------------------------------

@dataclass
class GraphView:
    """A drawn graph: DOT text, SVG, and which engine drew it. Shows itself in Jupyter."""

    drawing: Drawing
    dot: str
    svg: str
    engine: str

    @property
    def nodes(self) -> int:
        return len(self.drawing.boxes)

    @property
    def edges(self) -> int:
        return len(self.drawing.arrows)

    def legend_html(self) -> str:
        d = self.drawing
        items = [f'<span style="background:{RED};border:1px solid {RED_LINE};padding:0 4px">'
                 "an invariant fails here</span>",
                 '<span style="border:2.5px solid #555;padding:0 4px">initial state</span>']
        clustered = d.kind == "cluster" or "clustered into" in d.title
        if d.kind in ("quotient", "difference") and not clustered:
            items.append("<span>a box: one line per page (page 0 first), [fin] launch finalized</span>")
        elif clustered:
            items.append("<span>a box: a level (finalized, pages private, pages marked), with its folds "
                         "and states</span>")
        if any(a.both for a in d.arrows):
            items.append("<span>&#8596; a two-headed arrow: calls both ways</span>")
        if d.kind == "neighbourhood":
            items.append(f'<span style="background:{CHOSEN};border:2.5px solid {CHOSEN_LINE};padding:0 4px">'
                         "the chosen state</span>")
        if d.kind == "difference" and d.names:
            items = [f'<span style="background:{SIDE_FILL["a"]};border:1px solid {SIDE_LINE["a"]};'
                     f'padding:0 4px">only {html.escape(d.names[0])}</span>',
                     f'<span style="background:{SIDE_FILL["b"]};border:1px dashed {SIDE_LINE["b"]};'
                     f'padding:0 4px">only {html.escape(d.names[1])}</span>',
                     f'<span style="background:{SIDE_FILL["both"]};border:1px solid #555;padding:0 4px">'
                     "both</span>"] + items
        return '<div class="gml-legend" style="font-size:85%;margin:2px 0">' + " ".join(items) + "</div>"

    def html(self, max_height: int | None = 640, css_class: str = "gml-graph") -> str:
        """A figure: legend, the SVG at its natural size (never scaled down, so a label
        stays as large as drawn; a wide one scrolls in its box) and a caption."""
        caption = (f"{html.escape(self.drawing.title)} ({self.nodes} nodes, {self.edges} arrows; "
                   f"drawn by {'Graphviz dot' if self.engine == 'dot' else 'the pure-Python fallback'})")
        limit = f"max-height:{max_height}px;" if max_height else ""
        return (f'<figure class="{css_class}" data-engine="{self.engine}" data-kind="{self.drawing.kind}" '
                'style="margin:4px 0">'
                + self.legend_html()
                + f'<div class="gml-svg" style="overflow:auto;{limit}max-width:100%;border:1px solid #ddd">'
                # JupyterLab (and nbconvert's lab template) fit an SVG to the output's
                # width (max-width:100%), which shrank labels to 4 px: not these
                + self.svg.replace("<svg", '<svg style="max-width:none"', 1) + "</div>"
                + f'<figcaption style="font-size:85%">{caption}</figcaption></figure>')

    def _repr_html_(self) -> str:
        return self.html()


def draw(d: Drawing, engine: str = "auto") -> GraphView:
    """Draw with ``dot`` ("auto" uses it when installed), or the fallback ("python")."""
    if engine not in ("auto", "dot", "python"):
        raise ValueError(f"unknown engine {engine!r}; known: auto, dot, python")
    binary = dot_binary() if engine != "python" else None
    if engine == "dot" and binary is None:
        raise RuntimeError("Graphviz's dot is not installed (Debian: apt-get install graphviz)")
    src = dot_source(d)
    if binary is not None:
        try:
            return GraphView(d, src, run_dot(src, binary), "dot")
        except RuntimeError:
            if "concentrate=true" not in src:
                raise
            src = src.replace("concentrate=true, ", "")   # dot's edge merging can fail: without it
            return GraphView(d, src, run_dot(src, binary), "dot")
    return GraphView(d, src, fallback_svg(d), "python")
