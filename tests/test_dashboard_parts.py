"""The dashboard's pure parts (frames, theme, chart builders) and its structural rules:
``st.cache_*`` only in the loaders module, ``st.navigation`` rather than a legacy
``pages/`` folder, and nothing heavy (or anything at all) done at import time.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard import charts, frames, theme
from profilers.model import CATEGORIES
from tests.fixtures import GPU_REASON, SAMPLERS, breakdown_table, steps_table

ROOT = Path(__file__).resolve().parent.parent


# -- frames ------------------------------------------------------------------------------------
@pytest.mark.parametrize("match, badge", [
    (True, ":green-badge[loss matches numpy]"), (np.bool_(True), ":green-badge[loss matches numpy]"),
    (False, ":red-badge[loss differs from numpy]"), (np.bool_(False), ":red-badge[loss differs from numpy]"),
    (None, ":gray-badge[loss not checked]"), (float("nan"), ":gray-badge[loss not checked]"),
])
def test_correctness_badge_reads_numpy_booleans_too(match, badge):
    assert frames.correctness_badge(match, "numpy") == badge


def test_speedup_text_says_slower_faster_or_why_not():
    assert frames.speedup_text("tf_eager", 24.0, "numpy", 0.05) == "tf_eager: 480× slower than numpy"
    assert frames.speedup_text("tf_xla", 0.025, "numpy", 0.05) == "tf_xla: 2.00× faster than numpy"
    assert frames.speedup_text("numpy", 0.05, "numpy", 0.05) == "numpy: the baseline"
    assert "no ratio" in frames.speedup_text("tf_eager", 24.0, "numpy", None)


def test_speedups_skip_failed_runs_and_need_a_finished_baseline():
    summary = pd.DataFrame({"variant": ["numpy", "tf_eager", "tf_xla"], "status": ["ok", "ok", "failed"],
                            "median_ms": [0.5, 5.0, None]})
    out = frames.speedups(summary, "numpy")
    assert list(out["variant"]) == ["numpy", "tf_eager"]
    assert out.set_index("variant")["ratio"]["tf_eager"] == pytest.approx(10.0)
    summary.loc[0, "status"] = "failed"
    assert list(frames.speedups(summary, "numpy")["ratio"].isna()) == [True]


def test_step_frame_stacks_categories_to_the_wall_time():
    steps = steps_table(2.0)
    bd = breakdown_table(steps, {"forward": 0.5, "backward": 0.25})
    sf = frames.step_frame(steps, bd)
    warm = sf[sf["warmup"]]
    assert set(warm["category"]) == {theme.WARMUP}
    measured = sf[~sf["warmup"]]
    assert set(measured["category"]) == set(CATEGORIES)
    tops = measured.groupby("step")["ms_hi"].max()
    walls = steps.set_index("step")["wall_us"] / 1e3
    assert tops.to_numpy() == pytest.approx(walls[tops.index].to_numpy())
    first = measured[measured["step"] == measured["step"].min()]
    assert list(first["category"]) == list(CATEGORIES)            # stacked in CATEGORIES order
    assert first["ms_lo"].iloc[1:].to_numpy() == pytest.approx(first["ms_hi"].iloc[:-1].to_numpy())
    no_bd = frames.step_frame(steps, bd.iloc[0:0])
    assert set(no_bd.loc[~no_bd["warmup"], "category"]) == {theme.UNATTRIBUTED}


def test_sampler_status_never_reads_unavailable_as_a_value():
    assert frames.sampler_status(SAMPLERS, "gpu") == (False, f"unavailable: {GPU_REASON}")
    assert frames.sampler_status(SAMPLERS, "host") == (True, "available")
    assert frames.sampler_status({}, "gpu") == (None, "not recorded for this run")


def test_environment_rows_name_blas_threads_and_tf_settings():
    env = {"cpu_model": "X", "cpu_logical": 2, "cpu_physical": 1, "affinity_cores": 2,
           "blas": [{"user_api": "blas", "internal_api": "openblas", "version": "0.3", "num_threads": 2,
                     "architecture": "SkylakeX"}], "versions": {"numpy": "2.4"}}
    rows = dict(frames.environment_rows(env))
    assert rows["BLAS"] == "openblas 0.3 · architecture SkylakeX · 2 threads"
    assert "not imported" in rows["TensorFlow"]
    env["tensorflow"] = {"tf_version": "2.21.0", "intra_op_threads": 0, "inter_op_threads": 2,
                         "onednn_enabled": True, "onednn_env": "1"}
    rows = dict(frames.environment_rows(env))
    assert "intra-op 0, inter-op 2" in rows["TensorFlow"] and "TF's default" in rows["TensorFlow"]
    assert rows["oneDNN"] == "on (TF_ENABLE_ONEDNN_OPTS=1)"
    assert frames.environment_rows({})[0][1].startswith("not recorded")


def test_experiments_frame_is_newest_first():
    runs = pd.DataFrame({"experiment_id": ["a", "a", "b"], "workload": ["w", "w", "v"],
                         "variant": ["x", "y", "z"], "status": ["ok", "failed", "ok"],
                         "created_at": ["2026-01-01", "2026-01-01", "2026-02-01"]})
    exps = frames.experiments_frame(runs)
    assert list(exps["experiment_id"]) == ["b", "a"]
    assert exps.set_index("experiment_id").loc["a", "failed"] == 1


# -- theme and charts --------------------------------------------------------------------------
def test_variant_colors_are_fixed_for_known_and_distinct_for_others():
    a = theme.variant_colors(["numpy", "ok", "ok2", "hang", "crash"])
    assert a["numpy"] == theme.VARIANT_COLORS["numpy"]
    assert len(set(a.values())) == 5
    assert theme.variant_colors(["crash", "hang", "ok2", "ok", "numpy"]) == a  # order does not matter
    assert set(theme.CATEGORY_COLORS) >= set(CATEGORIES)


def test_chart_builders_use_the_theme():
    df = pd.DataFrame({"variant": ["numpy", "tf_eager"], "median_ms": [0.05, 24.0],
                       "p10_ms": [0.04, 20.0], "p90_ms": [0.06, 30.0]})
    spec = json.dumps(charts.step_range_chart(df, "variant", "median_ms", "p10_ms", "p90_ms").to_dict())
    assert '"type": "log"' in spec and theme.VARIANT_COLORS["tf_eager"] in spec
    bd = pd.DataFrame({"variant": ["numpy"] * 2, "category": ["forward", "input_wait"], "ms": [1.0, 2.0]})
    spec = charts.breakdown_bars(bd, "variant", "category", "ms").to_dict()
    color = spec["encoding"]["color"]["scale"]
    assert color["domain"] == ["input_wait", "forward"]          # CATEGORIES order, present only
    assert color["range"] == [theme.CATEGORY_COLORS["input_wait"], theme.CATEGORY_COLORS["forward"]]
    assert charts.log_ticks(0.05, 24.0)[0] == pytest.approx(0.01)
    assert charts.log_ticks(0.05, 24.0)[-1] == pytest.approx(100.0)


# -- structure -----------------------------------------------------------------------------------
def dashboard_files() -> list[Path]:
    return sorted((ROOT / "dashboard").rglob("*.py")) + [ROOT / "app.py"]


def test_st_cache_lives_only_in_the_loaders_module():
    users = set()
    for path in dashboard_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("cache_data", "cache_resource", "cache"):
                users.add(path.relative_to(ROOT).as_posix())
    assert users == {"dashboard/loaders.py"}


def test_the_app_uses_st_navigation_not_a_pages_folder():
    assert not (ROOT / "pages").exists()
    app = (ROOT / "app.py").read_text(encoding="utf-8")
    assert "st.navigation(" in app and "set_page_config" in app


def test_importing_the_dashboard_does_nothing_heavy(tmp_path):
    home = tmp_path / "home"
    code = ("import sys\n"
            "import dashboard.loaders, dashboard.charts, dashboard.frames, dashboard.theme, dashboard.nav, "
            "dashboard.ui\n"
            "heavy = sorted(m for m in ('tensorflow', 'pynvml', 'keras', 'workloads') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    env = dict(os.environ, SGDSCOPE_HOME=str(home), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""          # not even the workload registry is imported
    assert not home.exists()                 # no store opened at import
