"""One analysis, one truth: every view of one profiled experiment shows the same median
step, the same ms per category and the same findings, and its numbers hold up.

One real experiment (linreg numpy, tf_eager, tf_function; --profile) is read through
``run --json``, ``show --json``, ``analyze --json``, ``diff`` against itself, the offline
report.html of its bundle, and the Compare, Run and Triage pages (AppTest).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from profilers import analysis, invariants
from profilers.cli import main as cli_main
from profilers.store import RunStore

VARIANTS = ("numpy", "tf_eager", "tf_function")


def cli_json(home: Path, *args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main([*args, "--home", str(home), "--json"])
    assert code == 0, out.getvalue()[-2000:]
    return json.loads(out.getvalue())


def close(a: dict | None, b: dict | None, rel: float = 1e-6) -> bool:
    assert a is not None and b is not None
    return set(a) == set(b) and all(v == pytest.approx(b[k], rel=rel, abs=1e-9) for k, v in a.items())


def rules(findings: list[dict]) -> list[str]:
    return [f["rule"] for f in findings]


@pytest.mark.tf
def test_every_view_shows_the_same_numbers_and_they_hold_up(tmp_path, dash_home, open_page):
    home = dash_home  # the CLI writes where the pages read
    doc = cli_json(home, "run", "linreg", "--variants", ",".join(VARIANTS), "--param", "m=100",
                   "--param", "n=10", "--param", "steps=80", "--profile")
    assert doc["status"] == "ok", doc
    runs = {r["variant"]: r for r in doc["runs"]}
    assert set(runs) == set(VARIANTS)
    store = RunStore(home)
    for variant, r in runs.items():
        stored = store.load(r["run_id"])
        # Findings are there right after `run`, without an `analyze`, and every invariant holds.
        assert stored.manifest["analysis"]["version"] == analysis.ANALYSIS_VERSION
        assert invariants.check(stored) == [], (variant, invariants.check(stored))
        assert stored.manifest["analysis"]["warnings"] == []
        assert rules(stored.findings) == rules(r["findings"])
        bms = r["breakdown_ms"]
        assert sum(bms.values()) == pytest.approx(r["step_ms"]["median"], rel=0.05)
        shown = cli_json(home, "show", r["run_id"])
        analyzed = cli_json(home, "analyze", r["run_id"])
        for view in (shown["summary"], analyzed):
            median = view["step_ms"]["median"] if "step_ms" in view else view["steps"]["median_ms"]
            assert median == pytest.approx(r["step_ms"]["median"], rel=1e-3)
            assert close(view["breakdown_ms"], bms)
        assert rules(shown["findings"]) == rules(analyzed["findings"]) == rules(r["findings"])
        assert analyzed["findings"] == json.loads(json.dumps(stored.findings))
        same = cli_json(home, "diff", r["run_id"], r["run_id"])
        assert same["categories"]["source"] == "breakdown"
        cats = {row["category"]: row for row in same["categories"]["rows"]}
        assert cats["total"]["a_ms"] == pytest.approx(r["step_ms"]["median"], rel=1e-9)
        for c, ms in bms.items():
            if ms:
                assert cats[c]["a_ms"] == pytest.approx(ms, rel=1e-9) and cats[c]["delta_ms"] == 0
        assert {f["rule"]: f["status"] for f in same["findings"]} == {f: "persisted" for f in rules(r["findings"])}
    # The eager run is the slow one, for the reason the trace shows, with a measured fix.
    eager = store.load(runs["tf_eager"]["run_id"])
    top = eager.findings[0]
    assert top["counterfactual"]["measured"] and top["counterfactual"]["speedup"] > 1

    # report.html of the bundle: the same findings, and never None or nan.
    bundle = tmp_path / "exp.zip"
    cli_json(home, "export", *(r["run_id"] for r in runs.values()), "--out", str(bundle))
    with zipfile.ZipFile(bundle) as zf:
        html = zf.read("report.html").decode("utf-8")
    visible = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    assert not re.search(r"\bNone\b|\bnan\b", visible)
    for r in runs.values():
        for f in r["findings"]:
            assert f["rule"] in visible

    # One run exported alone and imported into an empty store analyses exactly as at home,
    # also when derived again there (its baseline and its experiment context travel with it).
    one = tmp_path / "one.zip"
    cli_json(home, "export", runs["tf_eager"]["run_id"], "--out", str(one))
    with zipfile.ZipFile(one) as zf:
        assert any(n.startswith(f"runs/{runs['numpy']['run_id']}/") for n in zf.namelist())  # the baseline
    other = tmp_path / "other"
    cli_json(other, "import", str(one))
    home_doc = cli_json(home, "analyze", runs["tf_eager"]["run_id"])
    for extra in ((), ("--recompute",)):
        there = cli_json(other, "analyze", runs["tf_eager"]["run_id"], *extra)
        assert there["findings"] == home_doc["findings"]
        assert there["steps"] == home_doc["steps"]
        assert close(there["breakdown_ms"], home_doc["breakdown_ms"], rel=1e-9)

    # The pages read the same stored analysis.
    from tests.test_dashboard_pages import charts, page_text

    compare = open_page("compare", exp=doc["experiment_id"])
    stacked = [frames[0] for _, frames in charts(compare) if frames and {"category", "ms", "variant"} <=
               set(frames[0].columns)]
    assert stacked, "Compare draws the breakdown"
    for variant, r in runs.items():
        got = stacked[0][stacked[0]["variant"] == variant].set_index("category")["ms"].to_dict()
        assert close({k: v for k, v in got.items() if v}, {k: v for k, v in r["breakdown_ms"].items() if v})
    for name, query in (("run", {"run": runs["tf_eager"]["run_id"]}), ("triage", {})):
        at = open_page(name, **query)
        if name == "triage":
            box = next(b for b in at.selectbox if b.label == "Run")
            box.set_value(runs["tf_eager"]["run_id"]).run()
            assert not at.exception
        text = page_text(at)
        assert not re.search(r"\bNone\b|\bnan\b", text)
        if name == "triage":
            for f in runs["tf_eager"]["findings"]:
                assert f["rule"] in text
