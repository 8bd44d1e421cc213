"""A real browser on the real workbook.

JupyterLab runs on 127.0.0.1 (a free port, a random token) over a copy of
notebooks/; Debian's headless Chromium, driven by Playwright through its executable
path (Playwright never downloads a browser here), opens 02_compare, runs all cells,
changes the proposal widget and checks that the rendered matrix changes. A second
test opens the exported HTML of 02_compare (no server, no kernel) and checks that its
precomputed toggle switches the matrix.

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


def test_compare_panel_in_jupyterlab(lab, browser, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
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
    assert matrix.get_attribute("data-differs") == "0"
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
    assert 'data-differs="0"' in shown.inner_html()
    toggle.locator(".gml-controls label", has_text="v7").click()
    assert toggle.locator(".gml-pane:visible").get_attribute("data-combo") == "v7/populate-converts"
    page.close()
