"""The dashboard in a real browser: ``streamlit run app.py`` on a free port over a stored
store (``tests.fixtures.populate`` plus a stored sweep), driven by Playwright with
Debian's Chromium (never a browser download of Playwright's own), ONE browser session
for every page of the navigation, each opened by its own URL. For each page: no
exception, no literal None/nan text, the verdict where it belongs, every chart drawn
with marks, nothing wider than the 1400 px window. Then a launch of the toy workload on
Launch, whose verdict appears beside the form.

Screenshots go to ``$SGDSCOPE_SCREENSHOT_DIR`` (or the test's temp dir).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
START_TIMEOUT_S = 60.0
WIDTH = 1400
#: Pages whose top carries the verdict of the stored experiment.
VERDICT_PAGES = {"home", "compare", "run"}
NONE_NAN = re.compile(r"(?<![\w.])(None|nan|NaN)(?![\w])")
#: SVG elements Vega draws for marks (the renderer Streamlit uses is SVG).
MARKS = ".mark-rect path, .mark-symbol path, .mark-line path, .mark-rule line, .mark-area path, .mark-text text"

#: Text that CSS cuts with an ellipsis (Streamlit's labels, metric values) and that does not fit.
CLIPPED_JS = """() => Array.from(document.querySelectorAll("[data-testid='stMain'] *"))
  .filter(e => getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1
               && e.innerText.trim() && e.offsetParent !== null)
  .map(e => e.innerText.trim().slice(0, 60)).slice(0, 8)"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} is absent: install Debian's chromium (`make chromium`)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)  # not listening yet
    pytest.fail(f"streamlit did not answer within {START_TIMEOUT_S:.0f} s:\n{log.read_text(errors='replace')}")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path, object]]:
    """A dashboard over a filled store (no warm TF worker); stopped and waited for afterwards."""
    from profilers.store import RunStore
    from tests.fixtures import populate
    from tests.test_dashboard_sweep_pipeline import store_sweep

    home = tmp_path / "home"
    filled = populate(RunStore(home))
    store_sweep(RunStore(home))
    port, log = free_port(), tmp_path / "streamlit.log"
    env = dict(os.environ, SGDSCOPE_HOME=str(home), SGDSCOPE_WORKLOAD_MODULES="tests.toy_workload",
               SGDSCOPE_WARM="0", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats",
           "false", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url, home, filled
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("SGDSCOPE_SCREENSHOT_DIR") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def settle(page) -> None:
    """Wait until Streamlit has finished running the script and Vega has drawn."""
    page.locator("h1").first.wait_for(timeout=60_000)
    idle = "() => !document.querySelector(\"[data-testid='stStatusWidget']\")"
    for _ in range(2):  # idle twice, a second apart: the script may start a moment after the title
        page.wait_for_function(idle, timeout=60_000)
        page.wait_for_timeout(1000)


def check_page(page, name: str) -> list[str]:
    """What is wrong with the page as drawn (empty when nothing is)."""
    problems = []
    if page.locator("[data-testid='stException']").count():
        problems.append(f"{name}: {page.locator('[data-testid=stException]').first.inner_text()[:300]}")
    text = page.locator("[data-testid='stMain']").inner_text()
    if "Page not found" in text:
        problems.append(f"{name}: Page not found")
    found = NONE_NAN.search(text)
    if found:
        problems.append(f"{name}: {found.group(0)!r} near {text[max(0, found.start() - 80):found.end() + 40]!r}")
    if name == "triage" and page.locator("[data-testid='stVegaLiteChart'] .mark-rect path").count() < 2:
        problems.append("triage: the finding's share bar drew no bars")
    if name in VERDICT_PAGES and not page.get_by_text("Verdict.", exact=False).first.is_visible():
        problems.append(f"{name}: no visible verdict")
    for i, chart in enumerate(page.locator("[data-testid='stVegaLiteChart']").all()):
        if chart.is_visible() and chart.locator(MARKS).count() == 0:
            problems.append(f"{name}: chart {i} has no marks")
    cut = page.evaluate(CLIPPED_JS)
    if cut:
        problems.append(f"{name}: text cut short with an ellipsis: {cut}")
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    if wide > WIDTH:
        problems.append(f"{name}: the page is {wide} px wide in a {WIDTH} px window (clipped or scrolled)")
    return problems


def test_every_page_in_one_browser_session(server, shots):
    from playwright.sync_api import expect, sync_playwright

    from dashboard import nav
    from tests.fixtures import LINREG_EXP

    url, _, filled = server
    names = [n for n in nav.PAGES if nav.available(n)]
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            query = {"triage": f"?run={filled.run_id(LINREG_EXP, 'tf_eager')}"}  # a run with a finding
            for name in names:
                page.goto(url if name == "home" else f"{url}/{name}{query.get(name, '')}")
                settle(page)
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                problems += check_page(page, name)

            # Launch: the toy workload; the verdict appears beside the form, in view.
            page.goto(f"{url}/launch")
            settle(page)
            page.locator("[data-testid='stSelectbox']").filter(has_text="Workload").click()
            page.get_by_role("option", name="toy").click()
            expect(page.get_by_text("A counter that takes")).to_be_visible(timeout=15_000)
            variants = page.locator("[data-testid='stMultiSelect']").filter(has_text="Variants")
            expect(variants.filter(has_text="ok2")).to_be_visible(timeout=15_000)
            # On a busy machine the rerun that draws the toy form may still show linreg's
            # stale one for a moment: wait until it is gone.
            expect(variants).to_have_count(1, timeout=15_000)
            settle(page)  # the rerun that chose toy is over: the click reaches the toy form
            page.get_by_role("button", name="Run").click()
            page.get_by_text("Experiment ", exact=False).first.wait_for(timeout=30_000)
            verdict = page.get_by_text("Verdict.", exact=False).first
            verdict.wait_for(state="visible", timeout=90_000)
            box = verdict.bounding_box()
            assert box is not None and box["y"] < 1000, f"the verdict is below the fold: {box}"
            expect(page.get_by_text("finished: 2 run(s) stored")).to_be_visible()
            settle(page)
            page.screenshot(path=str(shots / "launch_done.png"), full_page=True)
            problems += check_page(page, "launch after Run")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
    print(f"screenshots in {shots}")
