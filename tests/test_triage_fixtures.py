"""Triage rules over the real capture fixtures of tests/data (tiny linreg runs captured on
this kind of machine, with their golden breakdowns): the verdicts a user would get for
stored workload runs. Reads traces through xprof (no TensorFlow)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from profilers import triage
from profilers.cli_triage import trace_facts
from profilers.model import RunProfile, read_table_csv

DATA = Path(__file__).resolve().parent / "data"


def load(name: str, tmp_path: Path) -> RunProfile:
    run_dir = tmp_path / name
    shutil.copytree(DATA / name, run_dir)  # xprof writes its cache beside the xplane
    profile = RunProfile.read(run_dir)
    profile.tables["breakdown"] = read_table_csv("breakdown", run_dir / "golden" / "breakdown.csv")
    return profile


def verdicts(profile: RunProfile) -> dict[str, dict]:
    findings = triage.evaluate(profile, {"experiment": [], "trace_facts": trace_facts(profile)})
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
    assert trace_facts(profile) == {}  # no capture: no trace facts, not zeros
    got = verdicts(profile)
    assert not set(got) & {"eager_execution", "retracing", "compilation", "gpu_underutilized"}
