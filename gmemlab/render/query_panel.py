"""An ipywidgets control for the counterexample queries of notebook 03.

The pattern of gmemlab.render.widgets.counterexample_panel: dropdowns for the question
(proposal, invariant, ends_with, through, how many distinct, differ_from) over one HTML
view that gmemlab.render.query_views fills. Explorations are cached by views, and at the
workbook's sizes a query answers at once, so the view is recomputed in the control's
own callback. ipywidgets is imported inside the function (gmemlab works without it).
"""

from __future__ import annotations

from gmemlab.explore.queries import OPS, PREDICATES
from gmemlab.invariants import ALWAYS
from gmemlab.render import html as H
from gmemlab.render import query_views


def query_panel(proposals, platform: str = "snp", series: str = "v8", pages: int = 1, knobs=None):
    """A VBox: the question's controls, then the answers as query_views renders them.
    An answer that cannot be given (a predicate that needs symmetry off) shows as a
    message in the view."""
    from gmemlab.render.widgets import _ipywidgets
    w = _ipywidgets()
    style = {"description_width": "initial"}
    proposals = list(proposals)

    def dropdown(label, options, value=""):
        return w.Dropdown(options=options, value=value, description=label, style=style)

    controls = {
        "proposal": dropdown("proposal", proposals, proposals[0]),
        "invariant": dropdown("invariant", [("each broken", "")] + [(p.name, p.name) for p in ALWAYS
                                                                     if not p.graph]),
        "ends_with": dropdown("ends with", [("any call", "")] + [(op, op) for op in OPS]),
        "through": dropdown("through", [("any path", "")] + [(name, name) for name in PREDICATES]),
        "distinct": w.IntSlider(value=1, min=1, max=6, description="distinct", style=style),
        "differ_from": dropdown("differs from", [("-", "")] + [(p, p) for p in proposals]),
    }
    view = w.HTML()

    def update(_=None):
        q = {k: c.value for k, c in controls.items()}
        differ = q["differ_from"] if q["differ_from"] != q["proposal"] else ""
        try:
            found = query_views.answers([q["proposal"]], platform, series, pages, knobs, q["invariant"],
                                        q["ends_with"], q["through"], q["distinct"], differ)
            view.value = query_views.answers_html(found)
        except Exception as e:   # shown, not swallowed: ipywidgets drops a callback's exception
            view.value = f"<p class='gml-error'><b>{type(e).__name__}</b>: {H.esc(str(e))}</p>"

    for c in controls.values():
        c.observe(update, names="value")
    update()
    return w.VBox([w.HBox(list(controls.values())[:3]), w.HBox(list(controls.values())[3:]), view])
