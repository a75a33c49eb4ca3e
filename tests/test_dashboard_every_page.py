"""Every page of the navigation, in-process (AppTest through app.py) over the synthetic
store of ``tests.fixtures``: no exception, no literal None or nan anywhere in the text a
user reads, the verdict where it belongs, and each chart with data to draw. Plus the
layering the issue asks for: no page opens ``RunStore`` or builds an Altair chart, and
no page file is over 150 lines.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from dashboard import nav
from tests.test_dashboard_pages import charts, page_text, texts

PAGE_DIR = Path(nav.PAGE_DIR)
#: Pages whose top carries the verdict of the (latest) experiment.
VERDICT_PAGES = {"home", "compare", "run"}
NONE_NAN = re.compile(r"(?<![\w.])(None|nan|NaN)(?![\w])")


def all_text(at) -> str:
    return page_text(at) + "\n" + texts(at, "metric") + "\n" + "\n".join(
        str(df.to_dict()) for df in (d.value for d in at.dataframe))


@pytest.mark.parametrize("name", [n for n in nav.PAGES if nav.available(n)])
def test_every_page_reads_clean(filled_store, open_page, name):
    at = open_page(name)
    assert not at.exception, at.exception
    text = page_text(at) + "\n" + "\n".join(str(m.value) for m in at.metric)
    assert not NONE_NAN.search(text), f"{name}: {NONE_NAN.search(text).group(0)!r} in\n{text}"
    for df in (d.value for d in at.dataframe):
        cells = df.astype(str).to_numpy().ravel().tolist()
        assert not [c for c in cells if c in ("None", "nan", "NaN", "<NA>")], f"{name}: a table shows None/nan"
    if name in VERDICT_PAGES:
        assert "Verdict." in texts(at, "info"), f"{name} has no verdict"
    for spec, datasets in charts(at):
        assert any(len(df) for df in datasets), f"{name}: a chart with no data: {spec.get('mark')}"


def test_compare_verdict_names_the_ratio_and_a_measured_fix(filled_store, open_page):
    verdict = texts(open_page("compare"), "info")
    assert "TF eager is" in verdict and "slower than NumPy" in verdict
    assert "Measured best fix: tf.function" in verdict


def test_launch_is_reachable_by_its_own_url():
    assert nav.PAGES["launch"][0] == "launch.py" and list(nav.PAGES)[0] != "launch"


def _page_files() -> list[Path]:
    return sorted(p for p in PAGE_DIR.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", _page_files(), ids=lambda p: p.name)
def test_pages_only_show(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 150, f"{path.name} is {len(source.splitlines())} lines (max 150)"
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            assert module != "altair" and "altair" not in names, f"{path.name} imports altair"
            assert "RunStore" not in names, f"{path.name} imports RunStore"
            assert module not in ("subprocess", "profilers.session") and "subprocess" not in names, \
                f"{path.name} starts processes itself"
            assert not module.startswith("profilers.cli"), f"{path.name} imports a CLI module"
        if isinstance(node, ast.Name) and node.id in ("RunStore", "alt"):
            pytest.fail(f"{path.name} uses {node.id}")
