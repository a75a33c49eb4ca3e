"""Diff: the pure functions on hand-made tables, ``diff_runs`` on real captures, the
``sgdscope diff`` command (run ids and bundles), and the Diff page in Streamlit's AppTest.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profilers import bundle, cli
from profilers.diff import (OPS_COLUMNS, category_delta, diff_runs, findings_diff, ops_diff, ops_summary,
                            step_distributions)
from profilers.model import SCHEMAS
from profilers.store import RunStore
from tests.bundle_fixtures import profiled_run, synthetic_run

ROOT = Path(__file__).resolve().parent.parent


def steps_table(wall_ms: list[float], window: int = 0) -> pd.DataFrame:
    n = len(wall_ms)
    return pd.DataFrame({"step": np.arange(n), "epoch": 0, "start_us": np.arange(n) * 1e4,
                         "wall_us": np.array(wall_ms) * 1e3, "warmup": [i == 0 for i in range(n)],
                         "derived": False, "in_profile_window": [0 < i <= window for i in range(n)],
                         "loss": 1.0})


def breakdown_table(per_step: dict[str, float], steps: list[int]) -> pd.DataFrame:
    return pd.DataFrame([{"step": s, "category": c, "ms": v} for s in steps for c, v in per_step.items()])


def ops_table(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["op_name", "op_type", "occurrences", "total_self_us"])
    return df.assign(host_or_device="Host", category="", avg_self_us=df["total_self_us"] / df["occurrences"],
                     eager=False)[list(SCHEMAS["ops"])]


# -- pure functions ---------------------------------------------------------------------------------
def test_category_delta_from_breakdowns() -> None:
    a_steps, b_steps = steps_table([99, 10, 10, 10]), steps_table([99, 4, 4, 4])
    a_bd = breakdown_table({"forward": 2.0, "framework_overhead": 8.0}, [1, 2, 3])
    b_bd = breakdown_table({"forward": 2.0, "framework_overhead": 1.0, "compile_trace": 1.0}, [1, 2, 3])
    table, source = category_delta(a_steps, b_steps, a_bd, b_bd)
    assert source == "breakdown"
    rows = table.set_index("category")
    assert list(rows.index) == ["forward", "framework_overhead", "compile_trace", "total"]
    assert rows.loc["framework_overhead", "a_ms"] == pytest.approx(8.0)
    assert rows.loc["framework_overhead", "b_ms"] == pytest.approx(1.0)
    assert rows.loc["framework_overhead", "delta_ms"] == pytest.approx(-7.0)
    assert rows.loc["compile_trace", "a_ms"] == 0.0 and np.isnan(rows.loc["compile_trace", "delta_pct"])
    assert rows.loc["total", "a_ms"] == pytest.approx(10.0) and rows.loc["total", "b_ms"] == pytest.approx(4.0)
    assert rows.loc["total", "delta_pct"] == pytest.approx(-60.0)
    # Categories add up to the median step on each side (the breakdown is scaled to it).
    cats = rows.drop(index="total")
    assert cats["a_ms"].sum() == pytest.approx(10.0) and cats["b_ms"].sum() == pytest.approx(4.0)


def test_category_delta_without_a_breakdown_uses_step_ms() -> None:
    a_bd = breakdown_table({"forward": 3.0}, [1, 2])
    table, source = category_delta(steps_table([50, 3, 3]), steps_table([50, 6, 6]), a_bd, None)
    assert source == "step_ms"
    assert table["category"].tolist() == ["total"]
    assert table.loc[0, "delta_ms"] == pytest.approx(3.0) and table.loc[0, "delta_pct"] == pytest.approx(100.0)


def test_ops_diff_uses_hta_categories_per_captured_step() -> None:
    a = ops_table([("MatMul", "MatMul", 10, 100.0), ("add", "AddV2", 4, 8.0), ("relu", "Relu", 2, 2.0),
                   ("mul", "Mul", 6, 6.0)])
    b = ops_table([("MatMul", "MatMul", 20, 150.0), ("add", "AddV2", 16, 30.0), ("sub", "Sub", 4, 4.0),
                   ("mul", "Mul", 4, 4.0)])
    # A captured 2 steps, B 4: MatMul runs 5 times per step in both.
    table, unit = ops_diff(a, b, steps_table([1] * 5, window=2), steps_table([1] * 6, window=4))
    assert unit == "per_step" and list(table.columns) == OPS_COLUMNS
    status = dict(zip(table["op_name"], table["status"]))
    assert status == {"MatMul": "unchanged", "add": "increased", "relu": "removed", "sub": "added", "mul": "decreased"}
    assert table["status"].tolist() == ["added", "removed", "increased", "decreased", "unchanged"]
    mm = table.set_index("op_name").loc["MatMul"]
    assert mm["a_count_per_step"] == 5 and mm["b_count_per_step"] == 5
    assert mm["a_self_us_per_step"] == pytest.approx(50.0) and mm["b_self_us_per_step"] == pytest.approx(37.5)
    assert mm["delta_self_us_per_step"] == pytest.approx(-12.5)
    assert ops_summary(table) == {"added": 1, "removed": 1, "increased": 1, "decreased": 1, "unchanged": 1}


def test_ops_diff_without_windows_compares_whole_captures() -> None:
    a = ops_table([("MatMul", "MatMul", 10, 100.0)])
    b = ops_table([("MatMul", "MatMul", 10, 120.0)])
    table, unit = ops_diff(a, b, steps_table([1, 1]), steps_table([1, 1]))
    assert unit == "per_capture" and table["status"].tolist() == ["unchanged"]
    assert table.loc[0, "delta_self_us_per_step"] == pytest.approx(20.0)


def test_findings_diff() -> None:
    a = [{"rule": "eager_execution", "severity": "high", "share": 0.7},
         {"rule": "input_bound", "severity": "moderate", "share": 0.2}]
    b = [{"rule": "input_bound", "severity": "low", "share": 0.1},
         {"rule": "retracing", "severity": "high", "share": 0.3}]
    table = findings_diff(a, b)
    assert table[["rule", "status"]].values.tolist() == [
        ["retracing", "appeared"], ["eager_execution", "disappeared"], ["input_bound", "persisted"]]
    persisted = table.set_index("rule").loc["input_bound"]
    assert (persisted["a_severity"], persisted["b_severity"]) == ("moderate", "low")


def test_step_distributions_keep_measured_steps_only() -> None:
    df = step_distributions(steps_table([100, 1, 2]), steps_table([100, 3]), ("A", "B"))
    assert df.groupby("run")["wall_ms"].apply(list).to_dict() == {"A": [1.0, 2.0], "B": [3.0]}


# -- real captures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, str, str]:
    store = RunStore(tmp_path_factory.mktemp("diff") / "home")
    a = profiled_run(store, "tf_eager", findings=[{"rule": "eager_execution", "severity": "high", "share": 0.8}])
    b = profiled_run(store, "tf_function")
    return store, a.run_id, b.run_id


def test_diff_runs_on_real_captures(captured: tuple[RunStore, str, str]) -> None:
    store, a_id, b_id = captured
    a, b = store.load(a_id), store.load(b_id)
    d = diff_runs(a, b)
    assert d.category_source == "breakdown"
    cats = d.categories.set_index("category")
    for side, run in (("a_ms", a), ("b_ms", b)):
        median = run.manifest["results"]["step_ms"]["median"]
        assert cats.loc["total", side] == pytest.approx(median)
        assert cats.drop(index="total")[side].sum() == pytest.approx(median, rel=1e-6)
    assert not d.ops.empty and set(d.ops["status"]) <= {"added", "removed", "increased", "decreased", "unchanged"}
    status = dict(d.findings[["rule", "status"]].values.tolist())
    # A's planted finding is gone in B; B's own stored findings (analysed at store time) appear.
    assert status.pop("eager_execution") == "disappeared"
    assert status == {f["rule"]: "appeared" for f in b.findings}
    doc = d.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["ops"]["summary"] == ops_summary(d.ops)


def test_cli_diff_run_ids_and_bundles(captured: tuple[RunStore, str, str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    store, a_id, b_id = captured
    home = str(store.home)
    assert cli.main(["diff", a_id, b_id, "--home", home, "--json"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    out = bundle.export_bundle([store.load(a_id), store.load(b_id)], tmp_path / "ab.zip")
    assert cli.main(["diff", f"{out}#{a_id}", f"{out}#{b_id}", "--home", str(tmp_path / "none"), "--json"]) == 0
    by_bundle = json.loads(capsys.readouterr().out)
    assert by_bundle["categories"] == by_id["categories"]
    assert by_bundle["ops"] == by_id["ops"] and by_bundle["findings"] == by_id["findings"]
    assert cli.main(["diff", a_id, b_id, "--home", home]) == 0
    text = capsys.readouterr().out
    assert "framework_overhead" in text and "findings:" in text and "disappeared  eager_execution" in text
    assert cli.main(["diff", a_id, "20260101-000000-x-y-abcdef", "--home", home]) == 3


def test_cli_diff_without_breakdown_or_ops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore(tmp_path / "h")
    a, b = synthetic_run(store, "numpy"), synthetic_run(store, "python", step_ms=8.0, seed=5)
    (store.home / b.run_id / "tables" / "breakdown.csv").unlink()
    assert cli.main(["diff", a.run_id, b.run_id, "--home", str(store.home), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["categories"]["source"] == "step_ms"
    assert [r["category"] for r in doc["categories"]["rows"]] == ["total"]
    assert any("no breakdown table in B" in n for n in doc["notes"])
    assert any("neither run has an ops table" in n for n in doc["notes"])


# -- the Diff page ------------------------------------------------------------------------------------------
def _page(home: Path):  # type: ignore[no-untyped-def]
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "dashboard" / "pages" / "diff.py"), default_timeout=60)


def _charts(at) -> int:  # type: ignore[no-untyped-def]
    return len(at.get("vega_lite_chart"))


def test_diff_page_shows_two_stored_runs(captured: tuple[RunStore, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    store, a_id, b_id = captured
    monkeypatch.setenv("SGDSCOPE_HOME", str(store.home))
    at = _page(store.home).run()
    assert not at.exception, at.exception
    assert not at.error
    labels = [m.label for m in at.metric]
    assert any(lbl.startswith("A median step") for lbl in labels) and "B vs A" in labels
    assert _charts(at) == 3, "category delta, distributions overlay, op changes"
    assert [b.label for b in at.get("download_button")] == ["Download these runs as a bundle"]
    # Same run on both sides: nothing changed.
    at.selectbox(key="diff-run-A").set_value(b_id).run()
    at.selectbox(key="diff-run-B").set_value(b_id).run()
    assert not at.exception
    assert any("unchanged" in m.value and "**added** 0" in m.value for m in at.markdown)


def test_diff_page_with_an_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGDSCOPE_HOME", str(tmp_path / "empty"))
    at = _page(tmp_path).run()
    assert not at.exception and not at.error
    assert any("Pick a run" in i.value for i in at.info)
    assert _charts(at) == 0


def _export_script(home: str, run_ids: list[str]) -> None:
    from dashboard.export_button import export_button
    from profilers.store import RunStore

    export_button(RunStore(home), run_ids, key="export")


def test_export_button_for_stored_and_missing_runs(captured: tuple[RunStore, str, str]) -> None:
    from streamlit.testing.v1 import AppTest

    store, a_id, b_id = captured
    at = AppTest.from_function(_export_script, args=(str(store.home), [a_id, b_id]), default_timeout=60).run()
    assert not at.exception and not at.error
    assert [b.label for b in at.get("download_button")] == ["Download bundle (.zip)"]
    missing = AppTest.from_function(_export_script, args=(str(store.home), ["20260101-000000-x-y-abcdef"]),
                                    default_timeout=60).run()
    assert not missing.exception
    assert missing.error and "No run 20260101-000000-x-y-abcdef" in missing.error[0].value
    assert not missing.get("download_button")
