"""ipywidgets panels for the live workbook (JupyterLab).

ipywidgets is imported inside the functions: gmemlab works without it, and a missing
install says which extra brings it (``pip install gmemlab[lab]``). A panel explores
each configuration once (gmemlab.render.views caches them), so switching the focus
proposal back and forth is instant; a platform, series, pages or knob change explores
anew and says so while it works. What went wrong is shown in the panel (an error box
with the message), never swallowed: ipywidgets drops an exception raised in a callback.

Every choice comes from the one registry (gmemlab.model.vocab): one checkbox per knob,
labelled as the command line's flag (``huge folios`` for ``--huge-folios``) with the
knob's help as its tooltip; the proposals are the built-ins and the registered variants.
"""

from __future__ import annotations

import html as _html

from gmemlab.model import vocab
from gmemlab.model.vocab import KNOBS, PLATFORMS, SERIES, WIDGET_MAX_PAGES


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("gmemlab's widgets need ipywidgets: pip install gmemlab[lab]") from e
    return ipywidgets


class ComparePanel:
    """Controls for proposal (focus and baseline), platform, series, pages and knobs; the
    comparison matrix and the difference of the two proposals' state graphs below them.

    ``panel.box`` is the widget; the panel shows itself in Jupyter. ``panel.data()`` is
    what the matrix shows now (for tests and the report).
    """

    def __init__(self, platform="snp", series="v8", pages=1, focus="userspace-converts",
                 against="private-first", knobs=None, max_pages=WIDGET_MAX_PAGES, engine="auto"):
        from gmemlab.render.views import knob_dict
        w = _ipywidgets()
        on = knob_dict(knobs)
        self.engine = engine
        style = {"description_width": "initial"}
        names = list(vocab.proposal_names())
        self.focus = w.Dropdown(options=names, value=focus, description="proposal", style=style)
        self.against = w.Dropdown(options=names, value=against, description="against", style=style)
        self.platform = w.Dropdown(options=list(PLATFORMS), value=platform, description="platform", style=style)
        self.series = w.Dropdown(options=list(SERIES), value=series, description="series", style=style)
        # The slider offers what stays interactive (vocab.WIDGET_MAX_PAGES); a notebook
        # started at more pages keeps its size within reach.
        self.pages = w.IntSlider(value=pages, min=1, max=max(min(max_pages, WIDGET_MAX_PAGES), pages),
                                 description="pages", style=style)
        self.knobs = {k.name: w.Checkbox(value=on.get(k.name, False), description=k.label, indent=False,
                                         tooltip=f"{k.flag}: {k.help}" + (f" [{k.status}]" if k.status else ""))
                      for k in KNOBS.values()}
        for name, box in self.knobs.items():
            box.add_class(f"gml-knob-{name}")
        self.status = w.HTML(value="")
        self.status.add_class("gml-status")
        self.error = None   # the last error shown in the panel (an exception), or None
        self.matrix = w.HTML(value="")
        self.graph = w.HTML(value="")
        self.matrix.add_class("gml-matrix-widget")
        self.graph.add_class("gml-graph-widget")
        for control in [self.focus, self.against, self.platform, self.series, self.pages, *self.knobs.values()]:
            control.observe(self._changed, names="value")
        for name, control in [("focus", self.focus), ("against", self.against), ("platform", self.platform),
                              ("series", self.series), ("pages", self.pages)]:
            control.add_class(f"gml-{name}")
        controls = w.VBox([w.HBox([self.focus, self.against]), w.HBox([self.platform, self.series, self.pages]),
                           w.HBox(list(self.knobs.values()))])
        self.box = w.VBox([controls, self.status, self.matrix, self.graph])
        self.box.add_class("gml-compare-panel")
        self.update()

    def config(self) -> dict:
        return {"platform": self.platform.value, "series": self.series.value, "pages": self.pages.value,
                "knobs": {k: c.value for k, c in self.knobs.items() if c.value}}

    def table(self):
        from gmemlab.render.views import comparison
        return comparison(**self.config())

    def update(self) -> None:
        """Explore (once per configuration) and redraw; an error is shown in the panel."""
        from gmemlab.render.html import compare_html
        from gmemlab.render.graphs import difference_view, draw
        from gmemlab.render.views import column
        cfg = self.config()
        self.status.value = (f"<i>exploring {cfg['platform']} {cfg['series']} at {cfg['pages']} page(s)...</i>")
        done = False
        try:
            table = self.table()
            matrix = compare_html(table, self.focus.value, self.against.value, sources="collapsed")
            a = column(table, self.focus.value).exploration
            b = column(table, self.against.value).exploration
            graph = draw(difference_view(a, b), self.engine).html(max_height=520)
            done = True
        except Exception as e:  # shown, not swallowed: ipywidgets would drop it silently
            self.show_error(e)
            return
        finally:
            if not done and self.error is None:   # interrupted: never left at "exploring..."
                self.status.value = '<div class="gml-error">interrupted</div>'
        self.error = None
        self.matrix.value, self.graph.value = matrix, graph
        self.status.value = ""

    def show_error(self, e: BaseException) -> None:
        """An error box in place of the matrix: what was asked, and the message."""
        self.error = e
        cfg = self.config()
        what = (f"{self.focus.value} against {self.against.value}, {cfg['platform']} {cfg['series']}, "
                f"{cfg['pages']} page(s), knobs: {', '.join(cfg['knobs']) or 'none'}")
        self.status.value = ('<div class="gml-error" style="border:1px solid #c00;background:#fee;'
                             'padding:4px 8px;white-space:pre-wrap">'
                             f"<b>could not compare</b> {_html.escape(what)}:<br>"
                             f"<code>{_html.escape(type(e).__name__)}: {_html.escape(str(e))}</code></div>")
        self.matrix.value = ""
        self.graph.value = ""

    def _changed(self, change) -> None:
        self.update()

    def data(self) -> dict:
        from gmemlab.render.views import matrix_data
        if self.error is not None:
            return {"focus": self.focus.value, "against": self.against.value, **self.config(),
                    "error": f"{type(self.error).__name__}: {self.error}"}
        return {"focus": self.focus.value, "against": self.against.value, **self.config(),
                "matrix": matrix_data(self.table())}

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)


def compare_panel(**kwargs) -> ComparePanel:
    """The live comparison panel (see ComparePanel)."""
    return ComparePanel(**kwargs)


def counterexample_panel(xs: dict):
    """A dropdown over {label: Counterexample} showing one at a time."""
    w = _ipywidgets()
    if not xs:
        return w.HTML(value="<p>No invariant breaks here.</p>")
    pick = w.Dropdown(options=list(xs), description="counterexample", style={"description_width": "initial"})
    view = w.HTML(value=xs[pick.value].html())
    pick.observe(lambda change: setattr(view, "value", xs[change["new"]].html()), names="value")
    return w.VBox([pick, view])
