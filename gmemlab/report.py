"""``gmemlab report``: run the workbook headless and write what a reader or a reply needs.

Each notebook of notebooks/ runs under papermill (in its own kernel, two at a time) with
the report's platform, series and pages, then nbconvert turns it into a self-contained
HTML page: outputs only (no code, no prompts, no parameters cells), no script, style or
font from the network, and no widget state (the live widgets need a kernel); the
comparison notebook also renders every series x proposal combination in advance, so the
exported page toggles without a kernel. index.html links every page under the key
result lines of its notebook (what its Summary section prints). The reply to
the list is written as reply.txt (ASCII, at most 72 columns) and reply.html.

Every file is written atomically; the text files are deterministic (no timings, no
dates, no paths of the machine). Needs the "lab" extra: ``pip install gmemlab[lab]``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from gmemlab.errors import UsageError
from gmemlab.fsutil import atomic_write

NOTEBOOKS = ("01_state_space", "02_compare", "03_counterexamples", "04_conformance", "05_rfc_reply",
             "06_variants", "07_races")
# Longest first, so that two workers finish together.
RUN_ORDER = ("02_compare", "03_counterexamples", "05_rfc_reply", "07_races", "06_variants",
             "04_conformance", "01_state_space")
# Notebooks whose configuration comes from each trace's header, not from the report.
PER_TRACE = ("04_conformance",)
TITLES = {
    "01_state_space": "The state space of one proposal",
    "02_compare": "The proposals side by side",
    "03_counterexamples": "Counterexamples",
    "04_conformance": "Trace conformance",
    "05_rfc_reply": "The reply to the list",
    "06_variants": "A proposal of your own",
    "07_races": "Races: calls interleaved",
}


def notebooks_dir() -> str:
    """notebooks/ of the source tree (the report runs from a checkout)."""
    d = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
    if not os.path.isdir(d):
        raise UsageError(f"no notebooks/ beside the gmemlab package ({d}): run the report from a checkout")
    return d


def _need_lab():
    try:
        import nbconvert  # noqa: F401
        import nbformat  # noqa: F401
        import papermill  # noqa: F401
    except ImportError as e:
        raise UsageError(f"gmemlab report needs the lab extra ({e.name} is missing): "
                         "pip install gmemlab[lab]") from None


def declared_parameters(path: str) -> set[str]:
    """The names the notebook's `parameters` cell defines."""
    import papermill
    return set(papermill.inspect_notebook(path))


# A kernel can die before it answers its first request through no fault of the notebook:
# jupyter_client picks the kernel's five TCP ports by binding port 0 and letting go
# (LocalPortCache.find_available_port, jupyter_client/connect.py: a cache that keeps two
# kernels of one process apart, not two processes), and another process starting at that
# moment (the second notebook of a two-at-a-time run) can take one; the kernel then exits
# with EADDRINUSE. Nothing of the notebook has run, so it
# starts again with fresh ports, at most KERNEL_STARTS times in all.
KERNEL_DIED = "Kernel died before replying to kernel_info"
KERNEL_STARTS = 3


def execute(name: str, params: dict, out_path: str, nbdir: str | None = None, timeout: int = 1800) -> None:
    """Run one notebook under papermill in a fresh process; only the parameters it declares.

    A failing cell raises UsageError naming the notebook and papermill's last words.
    """
    nbdir = nbdir or notebooks_dir()
    src = os.path.join(nbdir, name + ".ipynb")
    known = declared_parameters(src)
    params = {k: v for k, v in params.items() if k in known}
    cmd = [sys.executable, "-m", "papermill", src, out_path, "--cwd", nbdir, "--no-progress-bar",
           "--execution-timeout", str(timeout), "-y", json.dumps(params, sort_keys=True)]
    for attempt in range(1, KERNEL_STARTS + 1):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            return
        said = (r.stderr or r.stdout).strip()
        if KERNEL_DIED not in said:
            break
    tail = "\n".join(said.splitlines()[-15:])
    again = f" (its kernel died at start {attempt} times)" if KERNEL_DIED in said else ""
    raise UsageError(f"notebook {name} failed{again}:\n{tail}")


def clean(nb) -> None:
    """Drop what differs from run to run (timings, temporary paths) before export."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", ()):
            cell.source = "\n".join(line for line in cell.source.splitlines()
                                    if not line.startswith("results_path"))
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    for i, cell in enumerate(nb.cells):   # nbformat's cell ids are random
        if "id" in cell:
            cell["id"] = f"cell-{i}"


_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_MODEL_ID = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{32}(?![0-9a-fA-F])")   # also in IPY_MODEL_<id>


def stable_ids(html: str, model_ids) -> str:
    """The same page for the same notebook: the random uuid4s nbconvert gives each widget
    output's div, and the widget model ids ipywidgets makes up, renumbered in order of
    first appearance (a model id is renamed only where it is one of ``model_ids``)."""
    names: dict[str, str] = {}

    def uuid_(m):
        return names.setdefault(m.group(0), f"00000000-0000-4000-8000-{len(names):012x}")
    known = set(model_ids)

    def model(m):
        t = m.group(0)
        return names.setdefault(t, f"{len(names):032x}") if t in known else t
    return _MODEL_ID.sub(model, _UUID.sub(uuid_, html))


# The "lab" template, offline: no require.js, no MathJax, no mermaid, no widget manager
# (each a <script src> on a CDN), and a widget's view renders as nothing; the notebooks
# print a static rendering of what their widgets show (02: the precomputed toggle).
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_widget_view -%}{%- endblock data_widget_view -%}
"""
# Cells a reader of the report does not need: papermill's parameters and the values it injected.
HIDDEN_TAGS = ("parameters", "injected-parameters")


def exporter():
    """nbconvert's HTML exporter for the report: the lab look, no code, no prompts, no
    parameters cells, and no file fetched from the network (the page is self-contained)."""
    import jinja2
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = set(HIDDEN_TAGS)
    c.HTMLExporter.preprocessors = ["nbconvert.preprocessors.TagRemovePreprocessor"]
    return HTMLExporter(config=c, template_name="lab", template_file="gmemlab-offline.html.j2",
                        extra_loaders=[jinja2.DictLoader({"gmemlab-offline.html.j2": _OFFLINE_TEMPLATE})],
                        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                        mathjax_url="", require_js_url="", jupyter_widgets_base_url="", widget_renderer_url="",
                        mermaid_js_url="", embed_images=True)


def to_html(nb) -> str:
    """The executed notebook as one self-contained HTML page (JupyterLab look, outputs
    only: no code, no parameters, no widget state, no script or style from the network)."""
    import copy
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)   # the live widgets need a kernel; their static rendering stays
    body, _ = exporter().from_notebook_node(nb)
    return stable_ids(body, ())


_PRE = re.compile(r'<pre class="gml-text"[^>]*>(.*?)</pre>', re.S)


def summary(nb) -> str:
    """The key result lines of an executed notebook: what the code cells under its
    "## Summary" heading print (the plain text of their ``pre``), or "" if none."""
    import html as html_
    lines, inside = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            inside = cell.source.lstrip().startswith("## Summary")
            continue
        if not inside:
            continue
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            found = [html_.unescape(t) for t in _PRE.findall(data.get("text/html", ""))]
            if not found and o.get("output_type") == "stream" and o.get("name") == "stdout":
                found = [o.get("text", "")]
            lines.extend(t.strip("\n") for t in found if t.strip())
    return "\n".join(lines)


def _index(out_names: list[str], config: dict, summaries: dict | None = None) -> str:
    """index.html: the configuration, then per notebook a link to its page, its title and
    its summary (the key result lines), then the reply."""
    from gmemlab import __version__
    from gmemlab.render.html import esc
    summaries = summaries or {}
    items = "".join(
        f'<li class="gml-index-entry" data-notebook="{esc(n)}"><h2><a href="{esc(n)}.html">{esc(TITLES.get(n, n))}</a>'
        f' <small>{esc(n)}</small></h2>'
        + (f'<pre class="gml-summary">{esc(summaries[n], quote=False)}</pre>' if summaries.get(n) else "")
        + "</li>" for n in out_names)
    cfg = ", ".join(f"{k} {esc(str(v))}" for k, v in config.items())
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gmemlab report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
            "ul.gml-index{list-style:none;padding:0}h2{font-size:1.15em;margin:1.2em 0 .3em}"
            "h2 small{color:#666;font-weight:normal}pre.gml-summary{background:#f6f6f6;padding:.5em;"
            "font-family:'DejaVu Sans Mono',monospace;white-space:pre-wrap;margin:0}</style></head>"
            f"<body><h1>gmemlab report</h1><p>{cfg}; gmemlab {esc(__version__)}</p>"
            f'<h2 id="summary">Summary</h2><ul class="gml-index">{items}</ul>'
            + ('<h2 id="reply">The reply</h2><ul>'
               '<li><a href="reply.txt">reply.txt</a>: the plain-text reply (72 columns)</li>'
               '<li><a href="reply.html">reply.html</a>: the same reply as HTML</li></ul>'
               if "05_rfc_reply" in out_names else "")
            + "</body></html>\n")


def notebook_params(name: str, platform: str, series: str, pages: int, variants, results_path: str) -> dict:
    """The parameters the report gives notebook ``name`` (execute() passes those it declares).

    07_races explores a list of platforms at its own size: it gets the report's platform
    as its one platform, and keeps its race_pages (more pages with threads take minutes a
    run); its page says the platform, series and pages it ran.
    """
    params = {"results_path": results_path}
    if name not in PER_TRACE:  # traces name their own platform and series
        params.update(platform=platform, series=series, pages=pages)
    if name == "07_races":
        params["platforms"] = [platform]
    params["variants"] = variants  # passed only to the notebooks that declare it
    params["interactive"] = False  # a live widget needs a kernel: the page shows the static views
    return params


def report(out: str = "reports", platform: str = "snp", series: str = "v8", pages: int = 2,
           notebooks: tuple = NOTEBOOKS, jobs: int = 2, log=None, variants: tuple = ()) -> list[str]:
    """Run the notebooks, write their HTML, reply.txt, reply.html and index.html into out.

    ``variants``: files of proposal variants (``--variants``), loaded here first (a broken
    file is an InputError naming file:line) and then by every notebook that declares a
    ``variants`` parameter. Returns the paths written, in a stable order.
    """
    from gmemlab.model.vocab import PLATFORMS, SERIES, WIDGET_MAX_PAGES, load_variants
    if platform not in PLATFORMS:
        raise UsageError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    if series not in SERIES:
        raise UsageError(f"unknown series {series!r}; known: {', '.join(SERIES)}")
    if not 1 <= pages <= WIDGET_MAX_PAGES:
        raise UsageError(f"--pages must be 1..{WIDGET_MAX_PAGES} for the report, got {pages}")
    variants = [os.path.abspath(v) for v in variants]  # the notebooks run in notebooks/
    for v in variants:
        load_variants(v)
    unknown = [n for n in notebooks if n not in NOTEBOOKS]
    if unknown:
        raise UsageError(f"unknown notebook(s) {', '.join(unknown)}; known: {', '.join(NOTEBOOKS)}")
    _need_lab()
    import nbformat
    nbdir = notebooks_dir()
    say = log or (lambda msg: None)
    os.makedirs(out, exist_ok=True)
    written: list[str] = []
    summaries: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gmemlab-report-") as tmp:
        def run(name: str) -> str:
            say(f"running {name}")
            params = notebook_params(name, platform, series, pages, variants,
                                     os.path.join(tmp, name + ".json"))
            path = os.path.join(tmp, name + ".ipynb")
            execute(name, params, path, nbdir)
            return name
        order = [n for n in RUN_ORDER if n in notebooks]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for _ in pool.map(run, order):
                pass
        for name in [n for n in NOTEBOOKS if n in notebooks]:
            nb = nbformat.read(os.path.join(tmp, name + ".ipynb"), as_version=4)
            clean(nb)
            summaries[name] = summary(nb)
            path = os.path.join(out, name + ".html")
            atomic_write(path, to_html(nb))
            written.append(path)
            say(f"wrote {path}")
        if "05_rfc_reply" in notebooks:
            with open(os.path.join(tmp, "05_rfc_reply.json")) as f:
                reply = json.load(f)
            text, html = reply["text"], reply["html"]
            for name, data in (("reply.txt", text),
                               ("reply.html", "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
                                              f"<title>gmemlab reply</title></head><body>{html}</body></html>\n")):
                atomic_write(os.path.join(out, name), data)
                written.append(os.path.join(out, name))
        atomic_write(os.path.join(out, "index.html"),
                     _index([n for n in NOTEBOOKS if n in notebooks],
                            {"platform": platform, "series": series, "pages": pages}, summaries))
        written.append(os.path.join(out, "index.html"))
    return written


def strip_notebooks(nbdir: str | None = None) -> list[str]:
    """Clear outputs and execution counts of notebooks/*.ipynb in place (cell ids, tags
    and the pairing metadata stay; papermill's injected cell goes), ready to commit; returns the
    notebooks it changed. `make strip` runs it after syncing each pair with jupytext."""
    import nbformat
    nbdir = nbdir or notebooks_dir()
    changed = []
    for name in sorted(os.listdir(nbdir)):
        if not name.endswith(".ipynb"):
            continue
        path = os.path.join(nbdir, name)
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("jupytext", "kernelspec")}
        # papermill's cell of injected parameters is not part of the notebook
        nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", ())]
        for cell in nb.cells:
            cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags" and v}
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        after = nbformat.writes(nb)
        if after != before:
            atomic_write(path, after + ("" if after.endswith("\n") else "\n"))
            changed.append(path)
    return changed
