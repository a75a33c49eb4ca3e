"""Triage rules over the real capture fixtures of tests/data (tiny linreg runs captured on
this kind of machine, with their golden breakdowns): the verdicts a user would get for
stored workload runs. Reads traces through xprof (no TensorFlow)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from profilers import analysis, triage
from profilers.model import RunProfile

DATA = Path(__file__).resolve().parent / "data"


def load(name: str, tmp_path: Path) -> RunProfile:
    run_dir = tmp_path / name
    shutil.copytree(DATA / name, run_dir)  # xprof writes its cache beside the xplane
    profile = RunProfile.read(run_dir)
    analysis.derive(profile)  # the one analysis: breakdown and facts, as at store time
    return profile


def verdicts(profile: RunProfile) -> dict[str, dict]:
    findings = triage.evaluate(profile, {"experiment": []})
    for f in findings:
        assert f["severity"] in triage.SEVERITIES and "```" in f["recommendation"]
    return {f["rule"]: f for f in findings}


def test_eager_linreg_capture_is_eager_and_overhead_bound(tmp_path):
    got = verdicts(load("tf_eager", tmp_path))
    assert got["eager_execution"]["severity"] == "high"
    assert got["framework_overhead"]["severity"] == "high"


@pytest.mark.parametrize("name", ["tf_function", "tf_xla", "tf_graph_loop"])
def test_compiled_captures_are_not_called_eager(tmp_path, name):
    got = verdicts(load(name, tmp_path))
    assert "eager_execution" not in got
    assert "retracing" not in got


def test_cold_capture_shows_its_compilation(tmp_path):
    got = verdicts(load("tf_function_cold", tmp_path))
    assert got["compilation"]["severity"] == "high"


def test_numpy_run_gets_no_tensorflow_verdicts(tmp_path):
    profile = load("numpy", tmp_path)
    res = profile.manifest["results"]
    assert res.get("eager_share") is None and "eager_share" in res["unavailable"]  # a reason, not a 0
    got = verdicts(profile)
    assert not set(got) & {"eager_execution", "retracing", "compilation", "gpu_underutilized"}
