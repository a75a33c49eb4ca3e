"""Time from clicking Run on the Launch page to the answer on screen: the step-time
comparison chart (drawn, with its marks) and the final verdict, for a 3-variant linreg
(numpy, tf_eager, tf_function; 100×10; 200 steps).

Two dashboards, each on a fresh store: one with a warm worker (TensorFlow imported before
the click; the script waits until it is ready) and one without (``SGDSCOPE_WARM=0``: the
click starts a supervisor and a worker that imports TensorFlow). Runs alternate between
them, ``--repeats`` times each. Playwright drives Debian's Chromium (never a download).

    .venv/bin/python bench/time_to_first_chart.py [--repeats 2]
    .venv/bin/python bench/record.py time_to_first_chart "Time to the first chart" -- bench/time_to_first_chart.py
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
VARIANTS = "numpy,tf_eager,tf_function"
STEPS = 200
TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dashboard:
    def __init__(self, home: Path, warm: bool) -> None:
        self.home, self.warm, self.port = home, warm, free_port()
        env = dict(os.environ, SGDSCOPE_HOME=str(home), SGDSCOPE_WARM="1" if warm else "0",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.log = open(home.parent / f"streamlit-{'warm' if warm else 'cold'}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(self.port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"streamlit did not start (see {self.log.name})")
                time.sleep(0.3)

    def wait_warm(self, page, timeout_s: float = 120) -> float:
        """Seconds until an unclaimed warm worker reports ready (TF imported); the page is
        reloaded every few seconds, since a page view is what starts one."""
        t0 = time.monotonic()
        while not [p for p in (self.home / "_warm").glob("*/ready") if not (p.parent / "job.json").exists()]:
            if time.monotonic() - t0 > timeout_s:
                raise SystemExit("no warm worker became ready")
            if int(time.monotonic() - t0) % 3 == 2:
                page.reload()
            time.sleep(0.5)
        return time.monotonic() - t0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def quiet(dash: Dashboard, timeout_s: float = 60) -> None:
    """Wait until no experiment of this dashboard is still running (a clean start)."""
    deadline = time.monotonic() + timeout_s
    exps = dash.home / "_experiments"
    while exps.is_dir() and any(not (d / "status.json").exists() for d in exps.iterdir()):
        if time.monotonic() > deadline:
            raise SystemExit("an experiment did not end")
        time.sleep(0.2)


def one_click(browser, dash: Dashboard) -> float:
    """Open Launch, set the 3 variants and 200 steps, click Run, and time until the final
    verdict and a drawn comparison chart are both visible."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{dash.url}/launch?workload=linreg&variants={VARIANTS}")
        page.get_by_role("button", name="Run").wait_for(timeout=60_000)
        steps = page.get_by_label("steps", exact=True)
        steps.fill(str(STEPS))
        steps.press("Tab")
        page.wait_for_timeout(300)
        t0 = time.perf_counter()
        page.get_by_role("button", name="Run").click()
        page.get_by_text("Verdict.", exact=False).wait_for(state="visible", timeout=TIMEOUT_MS)
        chart = page.locator("[data-testid='stVegaLiteChart']").first
        chart.wait_for(state="visible", timeout=TIMEOUT_MS)
        page.wait_for_function(
            "() => document.querySelectorAll(\"[data-testid='stVegaLiteChart'] .mark-symbol path\").length >= 3",
            timeout=TIMEOUT_MS)
        elapsed = time.perf_counter() - t0
        box = chart.bounding_box()
        if box is None or box["y"] + box["height"] > 900:
            print(f"  note: the chart is not wholly in view (box {box})", file=sys.stderr)
        return elapsed
    finally:
        page.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="sgdscope-ttfc-"))
    (tmp / "warm").mkdir()
    (tmp / "cold").mkdir()
    dashes = {"warm": Dashboard(tmp / "warm" / "home", True), "cold": Dashboard(tmp / "cold" / "home", False)}
    times: dict[str, list[float]] = {"warm": [], "cold": []}
    load0 = os.getloadavg()[0]
    ready: list[float] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(args.repeats):
                for mode in ("warm", "cold"):
                    dash = dashes[mode]
                    quiet(dash)
                    if mode == "warm":
                        page = browser.new_page()
                        page.goto(dash.url)  # the first visit starts the warm worker
                        ready.append(dash.wait_warm(page))
                        page.close()
                    times[mode].append(one_click(browser, dash))
                    print(f"  {mode}: {times[mode][-1]:.2f} s", file=sys.stderr)
            browser.close()
    finally:
        for d in dashes.values():
            d.stop()
    cpus = os.cpu_count()
    print(f"Machine: {platform.machine()}, {cpus} logical cores (shared with other jobs), "
          f"Python {platform.python_version()}; load average {load0:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (1-minute; above {cpus} means other jobs queued for the cores).\n")
    print(f"Click Run on Launch (linreg {VARIANTS}, m=100, n=10, steps={STEPS}) until the final verdict "
          "and the step-time chart (its marks drawn) are visible, at 1400×900:\n")
    print("| worker | runs (s) | median (s) |")
    print("|---|---|---|")
    for mode, label in (("warm", "warm (TF imported before the click)"), ("cold", "cold (SGDSCOPE_WARM=0)")):
        print(f"| {label} | {', '.join(f'{t:.2f}' for t in times[mode])} | {statistics.median(times[mode]):.2f} |")
    print(f"\nBefore each warm click, the script waited for a warm worker to be ready: "
          f"{', '.join(f'{t:.1f}' for t in ready)} s (the first is TensorFlow's import after the "
          "dashboard's first page view; later ones were already waiting: a new worker starts when "
          "an experiment ends, so its import never competes with a measurement).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
