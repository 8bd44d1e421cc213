"""ipywidgets panels for the live workbook (JupyterLab).

ipywidgets is imported inside the functions: gmemlab works without it, and a missing
install says which extra brings it (``pip install gmemlab[lab]``). A panel explores
each configuration once (gmemlab.render.views caches them), so switching the focus
proposal back and forth is instant: a configuration explored already is shown at once,
in the control's own callback (its graph follows from a thread when not drawn yet).

In a Jupyter kernel a platform, series, pages or knob change explores in a worker
thread: a progress bar shows at once (states so far against the estimate of
gmemlab.explore.estimate, proposal by proposal), the previous matrix stays on screen,
dimmed, until the new one is ready, and a newer request supersedes an older one (the
older exploration stops at its next batch; only the latest result is shown). What went
wrong, in the worker or not, is shown in the panel (an error box with the exception's
class and message) and logged, never swallowed: ipywidgets drops an exception raised
in a callback. Outside a kernel (plain Python, the tests) and when the panel is first
drawn (papermill, the report), the panel explores where it is called: the output is the
final matrix, the same bytes every run.

Every choice comes from the one registry (gmemlab.model.vocab): one checkbox per knob,
labelled as the command line's flag (``huge folios`` for ``--huge-folios``) with the
knob's help as its tooltip; the proposals are the built-ins and the registered variants.
"""

from __future__ import annotations

import html as _html
import itertools
import logging
import threading
import time
from dataclasses import dataclass

from gmemlab.model import vocab
from gmemlab.model.vocab import KNOBS, PLATFORMS, SERIES, WIDGET_MAX_PAGES

log = logging.getLogger(__name__)

# The previous result, while a new one is explored; an HTML widget's <style> applies to the page.
_CSS = "<style>.gml-stale{opacity:.4;filter:grayscale(1);transition:opacity .15s}</style>"
PROGRESS_EVERY = 0.1   # seconds between two progress bar updates from the worker


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("gmemlab's widgets need ipywidgets: pip install gmemlab[lab]") from e
    return ipywidgets


def in_kernel() -> bool:
    """Running in a Jupyter kernel (where a worker thread can update the widgets)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets brings IPython
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class _Superseded(Exception):
    """Raised in a worker's progress callback: a newer request wants another configuration."""


@dataclass(eq=False)
class _Request:
    token: int
    key: str       # platform/series/pages/knobs ("-" for none): what an exploration is of
    cfg: dict
    focus: str
    against: str


def config_key(cfg: dict) -> str:
    """'snp/v8/1/-', 'tdx/v7/2/huge_folios+allocation_failures' (knobs in the registry's order)."""
    return f"{cfg['platform']}/{cfg['series']}/{cfg['pages']}/{'+'.join(cfg['knobs']) or '-'}"


class ComparePanel:
    """Controls for proposal (focus and baseline), platform, series, pages and knobs; the
    comparison matrix and the difference of the two proposals' state graphs below them.

    ``panel.box`` is the widget; the panel shows itself in Jupyter. ``panel.data()`` is
    what the matrix shows now (for tests and the report). ``background``: explore in a
    worker thread with a progress bar (default: when running in a Jupyter kernel);
    ``panel.wait()`` waits for the workers.
    """

    def __init__(self, platform="snp", series="v8", pages=1, focus="userspace-converts",
                 against="private-first", knobs=None, max_pages=WIDGET_MAX_PAGES, engine="auto",
                 background=None):
        from gmemlab.render.views import knob_dict
        w = _ipywidgets()
        on = knob_dict(knobs)
        self.engine = engine
        self.background = in_kernel() if background is None else bool(background)
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
        self.bar = w.IntProgress(value=0, min=0, max=1, description="exploring", style=style)
        self.bar.add_class("gml-progress-bar")
        self.bar_label = w.HTML(value="")
        self.bar_label.add_class("gml-progress-label")
        self.progress = w.HBox([self.bar, self.bar_label], layout=w.Layout(display="none"))
        self.progress.add_class("gml-progress")
        self.matrix = w.HTML(value="")
        self.graph = w.HTML(value="")
        self.matrix.add_class("gml-matrix-widget")
        self.graph.add_class("gml-graph-widget")
        self._lock = threading.RLock()
        self._tokens = itertools.count(1)
        self._want: _Request | None = None      # the latest request
        self._worker: tuple | None = None       # (thread, key) of the exploration under way
        self._threads: set = set()              # workers alive (explorations and drawings)
        self._graphs: dict = {}                 # (id(table), focus, against) -> (table, html)
        for control in [self.focus, self.against, self.platform, self.series, self.pages, *self.knobs.values()]:
            control.observe(self._changed, names="value")
        for name, control in [("focus", self.focus), ("against", self.against), ("platform", self.platform),
                              ("series", self.series), ("pages", self.pages)]:
            control.add_class(f"gml-{name}")
        controls = w.VBox([w.HBox([self.focus, self.against]), w.HBox([self.platform, self.series, self.pages]),
                           w.HBox(list(self.knobs.values()))])
        self.box = w.VBox([controls, self.progress, self.status, self.matrix, self.graph, w.HTML(value=_CSS)])
        self.box.add_class("gml-compare-panel")
        self.update(background=False)   # the first drawing is the final one (papermill, the report)

    def config(self) -> dict:
        return {"platform": self.platform.value, "series": self.series.value, "pages": self.pages.value,
                "knobs": {k: c.value for k, c in self.knobs.items() if c.value}}

    def table(self):
        from gmemlab.render.views import comparison
        return comparison(**self.config())

    # --- a request: shown at once, or explored ----------------------------------------------

    def update(self, background: bool | None = None) -> None:
        """Show the matrix for the controls' values: at once when the configuration is
        explored already, else explore it (in a worker thread if ``background``, by
        default the panel's). An error is shown in the panel."""
        from gmemlab.render import views
        background = self.background if background is None else background
        cfg = self.config()
        req = _Request(next(self._tokens), config_key(cfg), cfg, self.focus.value, self.against.value)
        with self._lock:
            self._want = req
        try:
            table = views.cached_comparison(**cfg)
            if table is None and not background:
                table = views.comparison(**cfg)
        except BaseException as e:   # shown, not swallowed: ipywidgets would drop it silently
            self._fail(req, e)
            if not isinstance(e, Exception):
                raise            # an interrupt: shown, and still an interrupt
            return
        if table is None:
            self._explore(req)
        else:
            self._show(req, table, draw_here=not background or cfg["pages"] <= 1)

    def _show(self, req: _Request, table, draw_here: bool = True) -> bool:
        """Put req's matrix (and its graph, if drawn or ``draw_here``) on screen, unless a
        newer request came meanwhile; a graph not drawn yet is drawn by a worker."""
        from gmemlab.render.html import compare_html
        try:
            matrix = (f'<div class="gml-result" data-config="{_html.escape(req.key)}" '
                      f'data-focus="{_html.escape(req.focus)}" data-against="{_html.escape(req.against)}">'
                      + compare_html(table, req.focus, req.against, sources="collapsed") + "</div>")
            with self._lock:
                drawn = self._graphs.get((id(table), req.focus, req.against))
            graph = drawn[1] if drawn else (self._draw(table, req) if draw_here else None)
        except Exception as e:
            self._fail(req, e)
            return False
        with self._lock:
            if req is not self._want:
                return False
            self.error = None
            self.status.value = ""
            self.matrix.value = matrix
            self.matrix.remove_class("gml-stale")
            self.progress.layout.display = "none"
            if graph is not None:
                self.graph.value = graph
                self.graph.remove_class("gml-stale")
            else:
                self.graph.add_class("gml-stale")
                self._start(self._draw_later, req, table)
        return True

    def _draw(self, table, req: _Request) -> str:
        from gmemlab.render.graphs import difference_view, draw
        from gmemlab.render.views import column
        a = column(table, req.focus).exploration
        b = column(table, req.against).exploration
        graph = draw(difference_view(a, b), self.engine).html(max_height=520)
        with self._lock:
            if len(self._graphs) >= 64:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[(id(table), req.focus, req.against)] = (table, graph)   # the table kept: its id stays its own
        return graph

    def _draw_later(self, req: _Request, table) -> None:
        try:
            graph = self._draw(table, req)
        except Exception as e:
            self._fail(req, e)
            return
        with self._lock:
            if req is self._want:
                self.graph.value = graph
                self.graph.remove_class("gml-stale")

    def _explore(self, req: _Request) -> None:
        """The progress bar at once, the previous result dimmed, and a worker exploring
        (unless one explores this configuration already: it will show this request)."""
        from gmemlab.explore.estimate import estimate_states
        cfg = req.cfg
        with self._lock:
            if req is not self._want:
                return
            self.status.value = ""
            self.matrix.add_class("gml-stale")
            self.graph.add_class("gml-stale")
            if self._worker is not None and self._worker[1] == req.key:
                self.progress.layout.display = None
                return
            try:
                estimate = sum(estimate_states(n, cfg["platform"], cfg["series"], cfg["pages"])
                               for n in vocab.proposal_names())
            except Exception:   # an estimate is a nicety: never in the way of the exploration
                log.warning("no state estimate for %s", req.key, exc_info=True)
                estimate = 0
            self.bar.max, self.bar.value = max(estimate, 1), 0
            self.bar_label.value = self._progress_text(req, 0, estimate, 0)
            self.progress.layout.display = None
            self._worker = (self._start(self._work, req, estimate), req.key)

    def _progress_text(self, req: _Request, states: int, estimate: int, done: int) -> str:
        names = vocab.proposal_names()
        cfg = req.cfg
        what = (f"{cfg['platform']} {cfg['series']}, {cfg['pages']} page(s), "
                f"knobs: {', '.join(cfg['knobs']) or 'none'}")
        now = names[min(done, len(names) - 1)]
        return (f'<span class="gml-exploring" data-config="{_html.escape(req.key)}">exploring '
                f"{_html.escape(what)}: proposal {min(done + 1, len(names))} of {len(names)} "
                f"({_html.escape(now)}), {states:,} of ~{estimate:,} states (estimate); the matrix below "
                "is the previous one until then</span>")

    def _work(self, req: _Request, estimate: int) -> None:
        """The worker: explore req's configuration, then show the latest request for it."""
        from gmemlab.render import views
        table = error = None
        try:
            table = views.comparison(**req.cfg, progress=self._reporter(req, estimate))
        except _Superseded:
            pass
        except Exception as e:
            error = e
        with self._lock:
            if self._worker is not None and self._worker[0] is threading.current_thread():
                self._worker = None
            want = self._want
            if want is None or want.key != req.key:
                return                       # superseded: dropped
            if error is not None:
                self._fail(want, error)
                return
            if table is None:                # superseded, then wanted again
                self._explore(want)
                return
        self._show(want, table)              # drawn here, in the worker

    def _reporter(self, req: _Request, estimate: int):
        """The exploration's progress callback: the bar, a few times a second; raises
        _Superseded when a newer request wants another configuration."""
        seen = {"done": 0, "states": 0, "last": 0.0}

        def report(states: int, frontier: int, depth: int, done: bool) -> None:
            with self._lock:
                if self._want is None or self._want.key != req.key:
                    raise _Superseded(req.key)
                if done:
                    seen["done"] += 1
                    seen["states"] += states
                now = time.monotonic()
                if not done and now - seen["last"] < PROGRESS_EVERY:
                    return
                seen["last"] = now
                so_far = seen["states"] + (0 if done else states)
                self.bar.max = max(estimate, so_far + frontier, 1)
                self.bar.value = so_far
                self.bar_label.value = self._progress_text(req, so_far, estimate, seen["done"])
        return report

    def _start(self, target, *args) -> threading.Thread:
        def run():
            try:
                target(*args)
            except Exception:   # a bug of the panel itself: logged, and the panel not left exploring
                log.exception("gmemlab panel: worker failed")
                with self._lock:
                    self.progress.layout.display = "none"
            finally:
                with self._lock:
                    self._threads.discard(t)
        t = threading.Thread(target=run, name="gmemlab-panel", daemon=True)
        with self._lock:
            self._threads.add(t)
        t.start()
        return t

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no worker runs (True), or timeout seconds (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            alive[0].join(left)

    def _fail(self, req: _Request, e: BaseException) -> None:
        """Log the error, and show it in the panel unless a newer request came meanwhile."""
        log.error("gmemlab panel: could not compare %s (%s against %s)", req.key, req.focus, req.against,
                  exc_info=e)
        with self._lock:
            if req is self._want:
                self.show_error(e, req)

    def show_error(self, e: BaseException, req: _Request | None = None) -> None:
        """An error box in place of the matrix: what was asked, and the message."""
        self.error = e
        cfg = req.cfg if req else self.config()
        focus, against = (req.focus, req.against) if req else (self.focus.value, self.against.value)
        what = (f"{focus} against {against}, {cfg['platform']} {cfg['series']}, "
                f"{cfg['pages']} page(s), knobs: {', '.join(cfg['knobs']) or 'none'}")
        self.progress.layout.display = "none"
        self.status.value = ('<div class="gml-error" style="border:1px solid #c00;background:#fee;'
                             'padding:4px 8px;white-space:pre-wrap">'
                             f"<b>could not compare</b> {_html.escape(what)}:<br>"
                             f"<code>{_html.escape(type(e).__name__)}: {_html.escape(str(e))}</code></div>")
        self.matrix.value = ""
        self.graph.value = ""

    def _changed(self, change) -> None:
        self.update()

    def data(self) -> dict:
        """What the panel shows once its workers are done (it waits for them)."""
        from gmemlab.render.views import matrix_data
        self.wait()
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
