"""The dashboard in a real browser: ``streamlit run app.py`` on a free port, driven by
Playwright with Debian's Chromium (never a browser download of Playwright's own).

Launches a small experiment (toy ok + ok2) on the Launch page, waits for it to finish,
follows the link to Compare and waits for its charts. Screenshots go to
``$SGDSCOPE_SCREENSHOT_DIR`` (or the test's temp dir); their paths are printed.
"""
from __future__ import annotations

import os
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
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 60.0

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
            pass  # not listening yet
        time.sleep(0.3)
    pytest.fail(f"streamlit did not answer within {START_TIMEOUT_S:.0f} s:\n{log.read_text(errors='replace')}")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A dashboard server over an empty temp store; stopped (and waited for) afterwards."""
    port = free_port()
    home = tmp_path / "home"
    log = tmp_path / "streamlit.log"
    env = dict(os.environ, SGDSCOPE_HOME=str(home), SGDSCOPE_WORKLOAD_MODULES="tests.toy_workload",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats",
           "false", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url, home
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


def test_launch_then_compare_in_a_browser(server, shots):
    from playwright.sync_api import expect, sync_playwright

    from profilers.store import RunStore

    url, home = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url)
            page.get_by_role("heading", name="Launch").wait_for(timeout=30_000)

            # Workload: toy (the selectbox is searchable: open it, pick the option).
            page.locator("[data-testid='stSelectbox']").filter(has_text="Workload").click()
            page.get_by_role("option", name="toy").click()
            expect(page.get_by_text("A counter that takes")).to_be_visible(timeout=15_000)
            multiselect = page.locator("[data-testid='stMultiSelect']").filter(has_text="Variants")
            expect(multiselect).to_have_count(1, timeout=15_000)  # the linreg form is gone
            expect(multiselect).to_contain_text("ok2")  # default: the baseline and the next one
            page.get_by_role("button", name="Run").click()

            link = page.get_by_role("link", name="Compare these runs")
            link.wait_for(timeout=90_000)
            expect(page.get_by_text("finished: 2 run(s) stored")).to_be_visible()
            page.screenshot(path=str(shots / "launch_done.png"), full_page=True)

            runs = RunStore(home).list()
            assert sorted(runs["variant"]) == ["ok", "ok2"]
            assert set(runs["status"]) == {"ok"}

            link.click()
            page.get_by_role("heading", name="Compare").wait_for(timeout=30_000)
            page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=30_000)
            expect(page.get_by_text("ok: the baseline")).to_be_visible()
            expect(page.get_by_text("than ok").first).to_be_visible()  # ok2's ratio vs the baseline
            # The breakdown, side by side and in words (the toy's phases: input_wait, forward).
            expect(page.get_by_text("Where a step's time goes")).to_be_visible()
            expect(page.get_by_text("In plain words")).to_be_visible()
            expect(page.get_by_text("ok2:", exact=False).last).to_be_visible()
            page.wait_for_timeout(1500)  # let Vega finish drawing before the picture
            page.screenshot(path=str(shots / "compare.png"), full_page=True)

            page.get_by_text("Run: ok2").click()
            page.get_by_role("heading", name="Run").wait_for(timeout=30_000)
            page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=30_000)
            expect(page.get_by_text("Steps split by category")).to_be_visible()
            expect(page.get_by_text("No TF trace")).to_be_visible()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "run.png"), full_page=True)
        finally:
            browser.close()
    print(f"screenshots: {shots / 'launch_done.png'} {shots / 'compare.png'} {shots / 'run.png'}")
