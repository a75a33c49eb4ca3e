"""Crossover summary from sweep points (pure), and the grid parser."""
from __future__ import annotations

import pandas as pd
import pytest

from profilers.errors import BadInput
from profilers.sweep import crossover_table, describe_crossover, parse_grid


def points(rows):
    return pd.DataFrame([{"order": o, "label": lab, "size": o + 1.0, "variant": v, "status": "ok",
                          "median_ms": ms, "p10_ms": ms, "p90_ms": ms} for o, lab, v, ms in rows])


def test_tf_overtakes_numpy_at_large_sizes():
    table, summary = crossover_table(points([
        (0, "100×100", "numpy", 0.01), (0, "100×100", "tf_eager", 0.66),
        (1, "100000×1000", "numpy", 10.0), (1, "100000×1000", "tf_eager", 10.2),
        (1, "100000×1000", "tf_function", 9.0)]))
    assert table["tf_eager_over_numpy"].round(2).tolist() == [66.0, 1.02]
    assert summary == {"tf_faster_at": ["100000×1000"], "baseline_faster_at": ["100×100"],
                       "not_measured_at": [], "overtakes_at": "100000×1000"}
    assert table["best_tf"].tolist() == ["tf_eager", "tf_function"]


def test_tf_faster_only_at_small_sizes_never_overtakes():
    _, summary = crossover_table(points([
        (0, "3×2", "numpy", 0.02), (0, "3×2", "tf_graph_loop_xla", 0.004),
        (1, "1e5×100", "numpy", 6.0), (1, "1e5×100", "tf_graph_loop_xla", 13.0)]))
    assert summary["overtakes_at"] is None
    assert describe_crossover(summary) == ("The best TF variant beat numpy at 3×2; numpy was faster at 1e5×100.")


def test_grid_is_zipped_and_checked():
    assert parse_grid(["m=3,100", "n=2,10"]) == [{"m": "3", "n": "2"}, {"m": "100", "n": "10"}]
    with pytest.raises(BadInput, match="same number of values"):
        parse_grid(["m=3,100", "n=2"])


def test_sweep_cli_runs_one_experiment_per_size(tmp_path):
    import json

    from tests.test_runner import cli

    out = cli("sweep", "toy", "--variants", "ok,ok2", "--grid", "steps=4,6", "--json", env_home=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [e["status"] for e in doc["experiments"]] == ["ok", "ok"]
    assert [row["label"] for row in doc["table"]] == ["4", "6"]
    assert all(row["ok"] > 0 and row["ok2"] > 0 for row in doc["table"])


def test_a_size_where_numpy_failed_is_not_a_verdict():
    pts = points([(0, "3×2", "numpy", 0.02), (0, "3×2", "tf_eager", 4.0),
                  (1, "1e5×100", "numpy", 6.0), (1, "1e5×100", "tf_eager", 7.0)])
    pts.loc[(pts["label"] == "1e5×100") & (pts["variant"] == "numpy"), "status"] = "failed"
    _, summary = crossover_table(pts)
    assert summary["baseline_faster_at"] == ["3×2"] and summary["not_measured_at"] == ["1e5×100"]
    assert "not measured (a run failed) at 1e5×100" in describe_crossover(summary)
