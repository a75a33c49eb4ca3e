"""analysis.finalize over the committed real captures: every run gets a breakdown that adds
up to its median step, TF runs get op statistics, and a corrupt trace never loses the run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from profilers import analysis
from profilers.model import CATEGORIES, RunProfile

DATA = Path(__file__).resolve().parent / "data"
SCENARIOS = sorted(p.name for p in DATA.iterdir() if (p / "manifest.json").is_file())


def load_fixture(tmp_path: Path, name: str) -> RunProfile:
    run_dir = tmp_path / name
    shutil.copytree(DATA / name, run_dir, ignore=shutil.ignore_patterns("golden", "cache"))
    profile = RunProfile.read(run_dir)
    profile.manifest["results"] = {"step_ms": analysis.step_stats(profile.table("steps"))}
    return profile


@pytest.mark.parametrize("name", SCENARIOS)
def test_breakdown_adds_up_to_the_median_step(tmp_path, name):
    profile = load_fixture(tmp_path, name)
    analysis.finalize(profile)
    res = profile.manifest["results"]
    assert "breakdown_error" not in res, res.get("breakdown_error")
    assert set(res["breakdown_ms"]) == set(CATEGORIES)
    assert sum(res["breakdown_ms"].values()) == pytest.approx(res["step_ms"]["median"], rel=0.05)
    assert all(v >= 0 for v in res["breakdown_ms"].values())
    expected_source = "trace" if profile.manifest["capture"].get("xplane") else "phases"
    assert res["breakdown_source"] == expected_source
    if expected_source == "trace":
        assert not profile.table("ops").empty
        assert res["ops_per_step"] > 0


def test_eager_step_is_mostly_framework_overhead(tmp_path):
    res = load_fixture(tmp_path, "tf_eager")
    analysis.finalize(res)
    bd = res.manifest["results"]["breakdown_ms"]
    assert max(bd, key=bd.get) == "framework_overhead"
    assert res.manifest["results"]["overhead_us_per_op"] > 0


def test_corrupt_trace_falls_back_to_phases_and_says_why(tmp_path):
    profile = load_fixture(tmp_path, "tf_function")
    profile.xplane_path().write_bytes(b"\x00not an xplane\xff" * 10)
    analysis.finalize(profile)
    res = profile.manifest["results"]
    assert res["breakdown_source"] == "phases"
    assert "TraceUnavailable" in res["breakdown_error"]
    assert sum(res["breakdown_ms"].values()) == pytest.approx(res["step_ms"]["median"], rel=0.05)


def test_input_wait_share_counts_measured_steps_only():
    steps = pd.DataFrame({"step": [0, 1, 2], "wall_us": [1000.0, 100.0, 100.0],
                          "warmup": [True, False, False]})
    phases = pd.DataFrame({"step": [0, 1, 2], "phase": ["input_wait"] * 3, "dur_us": [900.0, 50.0, 25.0]})
    assert analysis.input_wait_share(steps, phases) == pytest.approx(75 / 200)


def test_scaled_breakdown_keeps_shares():
    bd = pd.DataFrame({"step": [1, 1, 2, 2], "category": ["forward", "framework_overhead"] * 2,
                       "ms": [1.0, 3.0, 1.0, 3.0]})
    out = analysis.scaled_breakdown(bd, step_median_ms=2.0)
    assert out["breakdown_ms"]["forward"] == pytest.approx(0.5)
    assert out["breakdown_ms"]["framework_overhead"] == pytest.approx(1.5)
    assert out["window_ms"]["forward"] == pytest.approx(1.0)


def test_gpu_seen_but_no_gpu_events_warns_with_the_cupti_fix(tmp_path):
    profile = load_fixture(tmp_path, "tf_function")
    profile.manifest["environment"] = {"tensorflow": {"gpus": ["/physical_device:GPU:0"]}}
    analysis.finalize(profile)
    (warning,) = profile.manifest["capture"]["warnings"]
    assert warning["kind"] == "cupti_empty_gpu_trace" and "NVreg_RestrictProfilingToAdminUsers" in warning["message"]
    assert warning["evidence"]["trace_processes"] == ["/host:CPU"]


def test_no_gpu_means_no_cupti_warning():
    events = pd.DataFrame({"process": ["/host:CPU"]})
    assert analysis.gpu_trace_warning({"tensorflow": {"gpus": []}}, events) is None
    gpu_events = pd.DataFrame({"process": ["/host:CPU", "/device:GPU:0"]})
    assert analysis.gpu_trace_warning({"tensorflow": {"gpus": ["GPU:0"]}}, gpu_events) is None
