"""The picture test: every graph view, at 1, 2 and 3 pages, is readable in a real browser.

Each view's static HTML (what the notebook and the exported report show) goes into one
page per (engine, pages), about as wide as a notebook's output area; Debian's headless
Chromium (Playwright through its executable path, as tests/test_browser.py) loads it and
JavaScript in the page measures: every label's font size on screen (its computed size
times the scale of its SVG on screen, getScreenCTM) is at least 10 px, and no label or
box lies outside its SVG's viewBox, nor an SVG outside the page unless a scroll container
(overflow auto) holds it. Both engines: Graphviz ``dot`` when installed (under CI it
must be) and the pure-Python fallback.

snp v8, userspace-converts (the biggest graphs of the three proposals), against
private-first for the difference.
"""

import os
import shutil

import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, IN_CI, _need, _playwright

from gmemlab.render import bounded, views
from gmemlab.render.graphs import draw

PAGES = (1, 2, 3)
MIN_PX = 10.0
VIEWPORT = {"width": 1100, "height": 900}
BODY = 1000   # px: about a notebook output area in a 1100 px window

ENGINES = ["python"] + (["dot"] if shutil.which("dot") or IN_CI else [])


def _views(x, y, engine):
    """name -> the view's HTML, as the notebooks show it."""
    out = {"full": views.full_graph_html(x, engine)}
    for name in bounded.PROJECTIONS:
        out[f"quotient {name}"] = views.quotient_html(x, name, engine)
    out["difference"] = draw(bounded.difference_view(x, y), engine).html(max_height=None)
    out["path launch"] = views.path_html(x, None, engine)
    broken = [n for n in views.invariant_names() if not x.holds(n) and n != "no_stuck_state"]
    out["path counterexample"] = views.path_html(x, broken[0], engine)
    out["neighbourhood"] = views.neighbourhood_html(x, None, 1, engine)
    out["small multiples"] = views.page_views_html(x, "launch progress", engine)
    return out


def _page(sections: dict) -> str:
    body = "".join(f'<section data-view="{name}"><h3>{name}</h3>{html}</section>'
                   for name, html in sections.items())
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{margin:0;font-family:sans-serif}'
            # JupyterLab's rule (.jp-RenderedHTMLCommon svg), which fits an SVG to the output
            'svg{max-width:100%;height:auto}'
            f'main{{max-width:{BODY}px;margin:0 auto;padding:0 8px}}</style></head>'
            f"<body><main>{body}</main></body></html>")


# Per view: labels under MIN_PX, labels or boxes outside their SVG, SVGs outside the page.
MEASURE = """([minPx, sel]) => {
  const bad = [];
  const vw = document.documentElement.clientWidth;
  const out = (r, box) => r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 ||
                          r.bottom > box.bottom + 1;
  const where = (el) => (el.textContent || el.tagName).trim().slice(0, 40);
  const counts = {};
  let k = 0;
  for (const sec of document.querySelectorAll(sel)) {
    const view = sec.dataset.view || `output ${k++}`;
    const svgs = sec.querySelectorAll('svg');
    counts[view] = {svgs: svgs.length, texts: 0, boxes: 0, minPx: 1e9};
    for (const svg of svgs) {
      const sr = svg.getBoundingClientRect();
      if (sr.width === 0 || sr.height === 0) { bad.push(`${view}: an SVG is not shown`); continue; }
      let scroller = null, hidden = null;
      for (let el = svg.parentElement; el && el !== document.body; el = el.parentElement) {
        const ox = getComputedStyle(el).overflowX;
        if (ox === 'auto' || ox === 'scroll') { scroller = el; break; }
        if (ox === 'hidden' || ox === 'clip') { hidden = el; break; }
      }
      if (sr.left < -0.5 || sr.right > vw + 0.5) {
        if (!scroller) bad.push(`${view}: SVG ${Math.round(sr.left)}..${Math.round(sr.right)} px outside the ${vw} px page`);
        else {
          const cr = scroller.getBoundingClientRect();
          if (cr.left < -0.5 || cr.right > vw + 0.5) bad.push(`${view}: its scroll box is outside the page`);
          if (scroller.scrollWidth + 1 < sr.width) bad.push(`${view}: the scroll box does not reach the SVG's end`);
        }
      }
      if (hidden) {
        const hr = hidden.getBoundingClientRect();
        if (sr.right > hr.right + 1 || sr.left < hr.left - 1) bad.push(`${view}: SVG cut by overflow:hidden`);
      }
      for (const t of svg.querySelectorAll('text')) {
        if (!t.textContent.trim()) continue;
        counts[view].texts++;
        const m = t.getScreenCTM();
        const px = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
        const r = t.getBoundingClientRect();
        counts[view].minPx = Math.min(counts[view].minPx, px);
        if (px < minPx - 1e-6) bad.push(`${view}: label "${where(t)}" is ${px.toFixed(2)} px`);
        if (r.height < minPx - 1e-6) bad.push(`${view}: label "${where(t)}" is ${r.height.toFixed(2)} px high`);
        if (out(r, sr)) bad.push(`${view}: label "${where(t)}" outside its SVG`);
      }
      for (const b of svg.querySelectorAll('g.node rect, g.node path, g.node polygon, g.node ellipse')) {
        counts[view].boxes++;
        if (out(b.getBoundingClientRect(), sr)) bad.push(`${view}: box "${where(b.parentElement)}" outside its SVG`);
      }
    }
  }
  return {bad, counts};
}"""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One headless Chromium for the module (a fresh profile), network refused."""
    sync_playwright = _playwright()
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing under CI: .ci/run installs it"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM,
                                                   headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT)
        ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file://", "data:", "about:"))
                  else r.abort())
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("pages", PAGES)
def test_every_view_is_readable(chromium, tmp_path, engine, pages):
    if engine == "dot":
        assert shutil.which("dot"), "Graphviz's dot is missing under CI: .ci/system-deps.sh installs it"
    x = views.exploration("userspace-converts", "snp", "v8", pages)
    y = views.exploration("private-first", "snp", "v8", pages)
    sections = _views(x, y, engine)
    if pages == 1:  # a space small enough to draw one box per state (sw_protected: 34 states)
        small = views.exploration("private-first", "sw_protected", "v8", 1)
        sections["full, every state"] = views.full_graph_html(small, engine)
        assert 'data-kind="full"' in sections["full, every state"]
    for name, html in sections.items():
        assert f'data-engine="{engine}"' in html, name
    path = tmp_path / f"views-{engine}-{pages}.html"
    path.write_text(_page(sections))
    page = chromium.new_page()
    page.goto(path.as_uri(), wait_until="load")
    found = page.evaluate(MEASURE, [MIN_PX, "section[data-view]"])
    page.close()
    for name in sections:
        c = found["counts"][name]
        assert c["svgs"] >= 1 and c["texts"] > 0 and c["boxes"] > 0, (name, c)
    assert found["bad"] == [], "\n".join(found["bad"][:40])


def test_the_measure_catches_what_users_saw(chromium, tmp_path):
    """The old failures, drawn by hand: a big SVG scaled to fit (4 px labels), a label past
    its viewBox, and an SVG wider than the page with no scroll box."""
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="{w}pt" height="60pt" viewBox="0 0 {w} 60" style="{style}">'
           '<g class="node"><rect x="{x}" y="5" width="80" height="30"/></g>'
           '<text x="{x}" y="30" font-size="9">{label}</text></svg>')
    sections = {"scaled": svg.format(w=3000, x=10, label="tiny", style="max-width:100%;height:auto"),
                "clipped": svg.format(w=300, x=280, label="cut off at the edge", style=""),
                "wide": svg.format(w=1500, x=10, label="off the page", style="max-width:none")}
    path = tmp_path / "bad.html"
    path.write_text(_page(sections))
    page = chromium.new_page()
    page.goto(path.as_uri(), wait_until="load")
    bad = page.evaluate(MEASURE, [MIN_PX, "section[data-view]"])["bad"]
    page.close()
    assert any(b.startswith("scaled: label") and " px" in b for b in bad), bad
    assert any(b.startswith("clipped: label") and "outside its SVG" in b for b in bad), bad
    assert any(b.startswith("clipped: box") for b in bad), bad
    assert any(b.startswith("wide: SVG") and "outside the" in b for b in bad), bad


def test_the_exported_notebook_is_readable_at_two_pages(chromium, tmp_path):
    """Notebook 01 as `gmemlab report` exports it (2 pages, what `make report` uses): the
    same measure over every output of the page, as nbconvert's lab template lays it out."""
    _need("papermill")
    from gmemlab.report import report
    out = tmp_path / "report"
    report(str(out), "snp", "v8", 2, notebooks=("01_state_space",))
    page = chromium.new_page()
    page.goto((out / "01_state_space.html").as_uri(), wait_until="load")
    found = page.evaluate(MEASURE, [MIN_PX, ".jp-OutputArea-output"])
    page.close()
    drawn = [c for c in found["counts"].values() if c["svgs"]]
    assert len(drawn) >= 7 and all(c["texts"] and c["boxes"] for c in drawn), found["counts"]
    assert found["bad"] == [], "\n".join(found["bad"][:40])
