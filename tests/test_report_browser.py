"""``report.html``: self-contained (no external script, style or link) and, opened in
Chromium through Playwright with every non-file request aborted, its charts render.

The browser tests are marked ``browser`` and use Debian's /usr/bin/chromium (never a
browser download of Playwright's own); they skip when it is not installed.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from profilers import bundle
from profilers.report import build_charts, render_report
from profilers.store import RunStore
from tests.bundle_fixtures import profiled_run, synthetic_run

CHROMIUM = Path("/usr/bin/chromium")
FINDING = {"rule": "framework_overhead", "severity": "high", "share": 0.6,
           "evidence": {"overhead_ms": 1.2, "note": "<script>alert('x')</script>"},
           "recommendation": "Wrap the step in tf.function.\nThen re-run.",
           "counterfactual": {"text": "tf_function would save 4 ms per step"}}


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A bundle of a profiled capture and a synthetic NumPy run; its report.html, unzipped."""
    tmp = tmp_path_factory.mktemp("report")
    store = RunStore(tmp / "home")
    runs = [profiled_run(store, "tf_eager", findings=[FINDING]), synthetic_run(store, "numpy")]
    out = bundle.export_bundle(runs, tmp / "b.zip")
    html = tmp / "unzipped" / "report.html"
    html.parent.mkdir()
    html.write_bytes(zipfile.ZipFile(out).read("report.html"))
    return html, len(build_charts(runs))


def test_report_is_self_contained(report_file: tuple[Path, int]) -> None:
    path, n_charts = report_file
    text = path.read_text(encoding="utf-8")
    assert n_charts == 4, "steps, distribution, breakdown and top ops"
    assert not re.search(r"<script[^>]+src=", text), "no external script"
    assert not re.search(r"<link\b", text), "no external stylesheet or font"
    assert "cdn.jsdelivr" not in text and "unpkg.com" not in text
    assert "window.vegaEmbed" in text, "vega-embed is inlined"
    assert "default-src 'none'" in text, "the page's CSP forbids loading anything"
    assert text.count("class='vega-chart'") == n_charts
    # Findings are shown, escaped.
    assert "framework_overhead" in text and "Wrap the step in tf.function." in text
    assert "<script>alert" not in text and "&lt;script&gt;alert" in text


def test_report_without_steps_says_so(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "h")
    run = synthetic_run(store, "numpy")
    run.tables = {}
    text = render_report([run])
    assert "No measured steps to chart." in text and "class='vega-chart'" not in text


@pytest.mark.browser
def test_report_charts_render_offline_in_chromium(report_file: tuple[Path, int]) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make chromium)")
    from playwright.sync_api import sync_playwright

    path, n_charts = report_file
    blocked: list[str] = []
    errors: list[str] = []

    def route(r):  # type: ignore[no-untyped-def]
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(path.as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.vega-chart[data-rendered=true], .vega-chart[data-error]').length"
                f" === {n_charts}", timeout=30_000)
            failed = page.eval_on_selector_all(".vega-chart[data-error]", "els => els.map(e => e.dataset.error)")
            marks = page.eval_on_selector_all(
                ".vega-chart", "els => els.map(e => e.querySelectorAll('svg .role-mark > *').length)")
            axes = page.eval_on_selector_all(".vega-chart", "els => els.map(e => e.querySelectorAll('svg .role-axis').length)")
        finally:
            browser.close()
    assert failed == []
    assert len(marks) == n_charts and all(m > 0 for m in marks), marks
    assert all(a > 0 for a in axes), axes
    assert blocked == [], f"the page tried the network: {blocked}"
    assert errors == []
