"""A real browser on the real workbook.

JupyterLab runs on 127.0.0.1 (a free port, a random token) over a copy of
notebooks/; Debian's headless Chromium, driven by Playwright through its executable
path (Playwright never downloads a browser here), opens 02_compare, runs all cells,
changes the proposal widget and checks that the rendered matrix changes; another
toggles every control of its panel (each dropdown value, every knob on and off, pages
1 -> 2 -> 1) and holds each toggle to a new matrix or an error box within a time bound,
with the progress bar shown for every new exploration. The next test opens the
exported HTML of 02_compare (no server, no kernel) and checks that its
precomputed toggle switches the matrix. The last ones open every page of a report and
its index.html with the network blocked: nothing fetched, no code or parameters shown,
a summary per notebook and links that open.

Skipped, with the reason, only when /usr/bin/chromium is absent outside CI; under
CI=true it must run (.ci/run installs chromium first).
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IN_CI = os.environ.get("CI") == "true"

if not os.path.exists(CHROMIUM) and not IN_CI:
    pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium; `make test` does it as root)",
                allow_module_level=True)


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("playwright is missing: pip install gmemlab[test]")
    return sync_playwright


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if IN_CI:
            raise
        pytest.skip(f"{module} is missing: pip install gmemlab[lab]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    """A fresh headless Chromium (a new, empty user-data-dir), closed afterwards."""
    sync_playwright = _playwright()
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing under CI: .ci/run installs it"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "chromium-profile"), executable_path=CHROMIUM,
                                                   headless=True, args=CHROMIUM_ARGS,
                                                   viewport={"width": 1400, "height": 1000})
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on loopback over a copy of the notebooks; always stopped afterwards."""
    _need("jupyterlab")
    work = tmp_path / "notebooks"
    shutil.copytree(os.path.join(ROOT, "notebooks"), work,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    home = tmp_path / "jupyter"
    # Start the notebook's kernel without asking, and fetch no news (no network here).
    settings = home / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"autoStartDefaultKernel": true, "windowingMode": "none"}')  # every cell stays in the page
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_PLATFORM_DIRS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", "--LabApp.news_url=", "--ServerApp.open_browser=False",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", f"--LabApp.user_settings_dir={home / 'settings'}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}", "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:  # CI runs as root
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url, token
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()


MATRIX = ".gml-compare-panel .gml-matrix-widget .gml-matrix"
KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def _run_all_of_02(lab, browser):
    """02_compare open in JupyterLab, every cell run: the page."""
    url, token = lab
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab/tree/02_compare.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="visible")
    # The kernel starts by itself (autoStartDefaultKernel); "Run All Cells" before its
    # websocket is up runs nothing, so wait for it (the app is exposed for this check).
    page.wait_for_function(KERNEL_READY, timeout=90_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    return page


def test_compare_panel_in_jupyterlab(lab, browser, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    page = _run_all_of_02(lab, browser)

    matrix = page.locator(MATRIX)
    try:
        matrix.wait_for(state="attached", timeout=90_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(tmp_path / "lab.png"), full_page=True)
        raise AssertionError(f"the compare panel never showed its matrix (screenshot: {tmp_path / 'lab.png'})")
    matrix.scroll_into_view_if_needed()
    assert matrix.is_visible()
    assert matrix.get_attribute("data-focus") == "userspace-converts"
    before_text = matrix.inner_text()
    before_differs = matrix.get_attribute("data-differs")
    assert before_differs == "3"  # userspace-converts breaks 3 invariants private-first keeps (snp v8)

    page.locator(".gml-compare-panel .gml-focus select").select_option("populate-converts")
    page.wait_for_selector(f"{MATRIX}[data-focus='populate-converts']", timeout=60_000)
    matrix = page.locator(MATRIX)
    assert matrix.get_attribute("data-differs") == "1"  # vmm_recovers: populate-converts cannot recover
    assert matrix.inner_text() != before_text
    focus_head = page.locator(f"{MATRIX} th.gml-col[data-proposal='populate-converts']")
    assert "(focus)" in focus_head.inner_text()
    page.close()


def test_exported_page_toggles_without_a_kernel(tmp_path, browser):
    _need("papermill")
    from gmemlab.report import report
    out = tmp_path / "report"
    report(str(out), "snp", "v8", 1, notebooks=("02_compare",))
    page = browser.new_page()
    page.goto((out / "02_compare.html").as_uri())
    toggle = page.locator(".gml-toggle")
    shown = toggle.locator(".gml-pane:visible")
    assert shown.count() == 1 and shown.get_attribute("data-combo") == "v8/userspace-converts"
    assert 'data-differs="3"' in shown.inner_html()
    toggle.locator(".gml-controls label", has_text="populate-converts").click()
    shown = toggle.locator(".gml-pane:visible")
    assert shown.count() == 1 and shown.get_attribute("data-combo") == "v8/populate-converts"
    assert 'data-differs="1"' in shown.inner_html()  # vmm_recovers
    toggle.locator(".gml-controls label", has_text="v7").click()
    assert toggle.locator(".gml-pane:visible").get_attribute("data-combo") == "v7/populate-converts"
    page.close()


# --- the exported report, offline -------------------------------------------------------------
# Every page of a small report (all notebooks, 1 page) and its index, opened from file://
# with every other request aborted: nothing may try to leave the machine (no CDN script,
# font or style), no code and no parameters cell may show, and the index must summarise
# each notebook and link to pages that open.

REPORT_NOTEBOOKS = ("01_state_space", "02_compare", "03_counterexamples", "04_conformance", "05_rfc_reply",
                    "06_variants", "07_races")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A report of every notebook (snp v8, 1 page), written once for the module."""
    _need("papermill")
    from gmemlab.report import report
    out = tmp_path_factory.mktemp("report")
    report(str(out), "snp", "v8", 1)
    return out


@pytest.fixture
def offline(browser):
    """The browser with the network blocked: every request that is not file:// (or data:)
    is aborted and recorded, as are failed requests, console errors and page errors."""
    seen = {"blocked": [], "failed": [], "console": [], "pageerror": []}

    def route(r):
        url = r.request.url
        if url.startswith(("file://", "data:")):
            r.continue_()
        else:
            seen["blocked"].append(url)
            r.abort()
    browser.route("**/*", route)
    browser.on("requestfailed", lambda req: seen["failed"].append(f"{req.url}: {req.failure}"))

    def page():
        p = browser.new_page()
        p.on("console", lambda m: m.type == "error" and seen["console"].append(m.text))
        p.on("pageerror", lambda e: seen["pageerror"].append(str(e)))
        return p
    yield page, seen
    assert seen == {"blocked": [], "failed": [], "console": [], "pageerror": []}, seen


def _parameters_lines(name):
    import nbformat
    nb = nbformat.read(os.path.join(ROOT, "notebooks", name + ".ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return [line.strip() for line in cell.source.splitlines() if line.strip()]


@pytest.mark.parametrize("name", REPORT_NOTEBOOKS)
def test_exported_page_is_offline_and_shows_no_code(exported, offline, name):
    new_page, seen = offline
    html = (exported / f"{name}.html").read_text()
    assert "<script src" not in html and "cdnjs" not in html and "cdn.jsdelivr" not in html
    assert "application/vnd.jupyter.widget-state+json" not in html  # the live widgets need a kernel
    page = new_page()
    page.goto((exported / f"{name}.html").as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # a late fetch (a script added on DOMContentLoaded) is recorded too
    assert seen["blocked"] == [] and seen["failed"] == [], seen
    # outputs are there ...
    assert page.locator(".jp-OutputArea-output:visible").count() > 0
    assert page.locator("pre.gml-text:visible").count() > 0
    # ... and no code: no input area, editor, prompt or highlighted source, anywhere
    for sel in (".jp-InputArea", ".jp-Cell-inputWrapper", ".jp-InputArea-editor", ".jp-InputPrompt",
                ".jp-OutputPrompt", ".jp-CodeMirrorEditor", ".cm-editor", ".highlight"):
        assert page.locator(f".jp-CodeCell {sel}").count() == 0, sel
    assert page.locator(".jp-CodeCell").count() > 0 and page.locator(".jp-MarkdownCell").count() > 0
    text = page.locator("body").inner_text()
    assert "from gmemlab" not in text and "import " not in text.replace("important", "")
    # the parameters cell and papermill's injected cell are gone entirely
    assert page.locator(".celltag_parameters, .celltag_injected-parameters").count() == 0
    for line in _parameters_lines(name):
        assert line not in text, line
    assert "# Parameters" not in text and "results_path =" not in text
    assert "Traceback" not in text
    page.close()


def test_exported_index_summarises_and_links(exported, offline):
    new_page, seen = offline
    page = new_page()
    page.goto((exported / "index.html").as_uri())
    entries = page.locator("li.gml-index-entry")
    assert [entries.nth(i).get_attribute("data-notebook") for i in range(entries.count())] == list(REPORT_NOTEBOOKS)
    from gmemlab.report import TITLES
    for name in REPORT_NOTEBOOKS:
        entry = page.locator(f"li.gml-index-entry[data-notebook='{name}']")
        assert TITLES[name] in entry.locator("h2").inner_text()
        summary = entry.locator("pre.gml-summary")
        assert summary.is_visible() and summary.inner_text().strip(), name
    # the key result lines (snp v8, 1 page)
    assert "198 states, 2,910 transitions" in page.locator("li[data-notebook='01_state_space'] pre").inner_text()
    assert "userspace-converts against private-first: breaks 3 invariant(s)" in \
        " ".join(page.locator("li[data-notebook='02_compare'] pre").inner_text().split())
    # every link opens its page (file://, nothing fetched elsewhere)
    hrefs = [a.get_attribute("href") for a in page.locator("a[href]").all()]
    assert sorted(hrefs) == sorted([n + ".html" for n in REPORT_NOTEBOOKS] + ["reply.txt", "reply.html"])
    for href in hrefs:
        assert (exported / href).is_file(), href
        page.locator(f"a[href='{href}']").click()
        page.wait_for_url(f"**/{href}")
        if href.endswith(".html") and href != "reply.html":
            assert page.locator(".jp-Notebook").count() == 1
        else:
            assert page.locator("body").inner_text().strip()
        page.go_back()
        page.wait_for_url("**/index.html")
    page.close()
    assert seen["blocked"] == [] and seen["failed"] == []


# --- every control of the 02 panel (issue 12): a result or an error, never "exploring" forever ---

PANEL = ".gml-compare-panel"
# What the panel shows now: its matrix (the configuration it is of, and whether it is the
# previous one, dimmed), an error box, and whether the progress bar is on screen.
PANEL_STATE = """() => {
  const panel = document.querySelector('.gml-compare-panel');
  const result = panel.querySelector('.gml-matrix-widget .gml-result');
  const matrix = panel.querySelector('.gml-matrix-widget .gml-matrix');
  const error = panel.querySelector('.gml-status .gml-error');
  const bar = panel.querySelector('.gml-progress');
  return {config: result && result.dataset.config, focus: result && result.dataset.focus,
          against: result && result.dataset.against, matrix: matrix && matrix.outerHTML,
          stale: panel.querySelector('.gml-matrix-widget').classList.contains('gml-stale'),
          error: error && error.innerText, busy: !!bar && getComputedStyle(bar).display !== 'none'};
}"""
# Every configuration the progress bar was shown for, in order: a MutationObserver sees
# it even when it is on screen for less than a frame.
WATCH_PROGRESS = """() => {
  window.gmlProgress = [];
  window.gmlProgressAt = [];
  const panel = document.querySelector('.gml-compare-panel');
  const look = () => {
    const bar = panel.querySelector('.gml-progress');
    const label = bar && bar.querySelector('.gml-exploring');
    if (label && getComputedStyle(bar).display !== 'none') {
      const seen = window.gmlProgress;
      if (seen[seen.length - 1] !== label.dataset.config) {
        seen.push(label.dataset.config);
        window.gmlProgressAt.push(performance.now());
      }
    }
  };
  new MutationObserver(look).observe(panel, {subtree: true, childList: true, attributes: true,
                                             characterData: true});
}"""
SETTLED = """([config, focus, against]) => {
  const s = (""" + PANEL_STATE + """)();
  if (s.busy) return false;
  if (s.error) return true;
  return s.config === config && s.focus === focus && s.against === against && !s.stale;
}"""
TOGGLE_SECONDS = 60


def test_every_control_of_the_compare_panel_in_jupyterlab(lab, browser, tmp_path):
    """Each dropdown to each of its values, every knob on and off, pages 1 -> 2 -> 1: within
    TOGGLE_SECONDS the matrix changes to the new configuration or the panel shows an error,
    and an exploration not done before shows the progress bar."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from gmemlab.model.vocab import KNOBS, PLATFORMS, SERIES, proposal_names
    page = _run_all_of_02(lab, browser)
    page.locator(f"{PANEL} .gml-result").wait_for(state="attached", timeout=120_000)
    page.locator(PANEL).scroll_into_view_if_needed()
    page.evaluate(WATCH_PROGRESS)

    want = {"platform": "snp", "series": "v8", "pages": 1, "knobs": [], "focus": "userspace-converts",
            "against": "private-first"}
    explored = {("snp", "v8", 1, ()), *{("snp", s, 1, ()) for s in SERIES}}   # by the notebook's cells
    log = []

    def key():
        on = [k for k in KNOBS if k in want["knobs"]]
        return f"{want['platform']}/{want['series']}/{want['pages']}/{'+'.join(on) or '-'}"

    def toggle(what, act, **change):
        before = page.evaluate(PANEL_STATE)
        want.update(change)
        cfg = (want["platform"], want["series"], want["pages"], tuple(sorted(want["knobs"])))
        fresh = cfg not in explored
        seen_before, at = page.evaluate("() => [window.gmlProgress.length, performance.now()]")
        t0 = time.monotonic()
        act()
        try:
            page.wait_for_function(SETTLED, arg=[key(), want["focus"], want["against"]],
                                   timeout=TOGGLE_SECONDS * 1000, polling=20)
        except PlaywrightTimeout:
            shot = tmp_path / "panel.png"
            page.screenshot(path=str(shot), full_page=True)
            now = {k: v for k, v in page.evaluate(PANEL_STATE).items() if k != "matrix"}
            raise AssertionError(f"{what}: neither the matrix of {key()} nor an error within {TOGGLE_SECONDS} s; "
                                 f"the panel shows {now} (screenshot: {shot})")
        seconds = time.monotonic() - t0
        after = page.evaluate(PANEL_STATE)
        bars, bars_at = page.evaluate("() => [window.gmlProgress, window.gmlProgressAt]")
        bars, bars_at = bars[seen_before:], bars_at[seen_before:]
        explored.add(cfg)
        bar = round((bars_at[bars.index(key())] - at) / 1000, 2) if key() in bars else None
        log.append((what, round(seconds, 2), fresh, bar, after["error"]))
        if after["error"] is None:
            assert after["matrix"] != before["matrix"], f"{what}: the matrix did not change"
        if fresh:
            assert key() in bars, f"{what}: no progress bar for the exploration of {key()} ({bars})"

    def select(control, value):
        return toggle(f"{control}={value}", lambda: page.locator(f"{PANEL} .gml-{control} select").select_option(value),
                      **{control: value})

    # the proposals (explored already: shown at once), each value, then back
    for control in ("focus", "against"):
        start = want[control]
        for value in [v for v in proposal_names() if v != start] + [start]:
            select(control, value)
    # platforms and series: new explorations, then back (explored)
    for value in [p for p in PLATFORMS if p != "snp"]:
        select("platform", value)
    for value in [s for s in SERIES if s != "v8"] + ["v8"]:
        select("series", value)
    select("platform", "snp")
    # every knob on (a new exploration) and off (explored)
    for name in KNOBS:
        box = page.locator(f"{PANEL} .gml-knob-{name} input[type='checkbox']")
        toggle(f"{name} on", box.click, knobs=want["knobs"] + [name])
        toggle(f"{name} off", box.click, knobs=[k for k in want["knobs"] if k != name])
    # pages 1 -> 2 (the slider's handle, by keyboard) -> 1
    handle = page.locator(f"{PANEL} .gml-pages .noUi-handle")

    def key_press(k):
        return lambda: (handle.focus(), page.keyboard.press(k))
    toggle("pages=2", key_press("ArrowRight"), pages=2)
    # two knobs ticked one right after the other, then unticked so: the latest request wins
    # (the first two knobs: huge_folios at 2 pages explores for many seconds)
    first, second = (page.locator(f"{PANEL} .gml-knob-{k} input[type='checkbox']") for k in list(KNOBS)[:2])
    toggle("two knobs on at once", lambda: (first.click(), second.click()), knobs=list(KNOBS)[:2])
    toggle("two knobs off at once", lambda: (first.click(), second.click()), knobs=[])
    toggle("pages=1", key_press("ArrowLeft"), pages=1)

    # (times are printed, not held to a limit: speed goals live in `make bench`)
    report = "\n".join(f"  {w:32} {s:6.2f} s {'new' if f else 'seen'}{f', bar at {b:.2f} s' if b is not None else ''}"
                       f"{' ERROR ' + e if e else ''}" for w, s, f, b, e in log)
    print(f"\n{len(log)} toggles of the 02 panel:\n{report}")
    assert len(log) >= 2 * len(KNOBS) + 2 * (len(proposal_names()) + 1) + 4
    page.close()
