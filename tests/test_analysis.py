"""analysis.analyse over the committed real captures: every run gets a breakdown that adds
up to its median step, TF runs get op statistics, every invariant holds, and a corrupt
trace never loses the run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from profilers import analysis, invariants
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
    analysis.analyse(profile)
    res = profile.manifest["results"]
    assert "breakdown_error" not in res, res.get("breakdown_error")
    assert set(res["breakdown_ms"]) == set(CATEGORIES)
    assert sum(res["breakdown_ms"].values()) == pytest.approx(res["step_ms"]["median"], rel=0.05)
    assert all(v >= 0 for v in res["breakdown_ms"].values())
    expected_source = "trace" if profile.manifest["capture"].get("xplane") else "phases"
    assert res["breakdown_source"] == analysis.SOURCE_TEXT[expected_source]
    if expected_source == "trace":
        assert not profile.table("ops").empty
        assert res["ops_per_step"] > 0


def test_eager_step_is_mostly_framework_overhead(tmp_path):
    res = load_fixture(tmp_path, "tf_eager")
    analysis.analyse(res)
    bd = res.manifest["results"]["breakdown_ms"]
    assert max(bd, key=bd.get) == "framework_overhead"
    r = res.manifest["results"]
    assert r["overhead_us_per_dispatch"] > 0
    # One formula over one window: dispatches x cost per dispatch is the overhead itself.
    assert r["overhead_us_per_dispatch"] * r["dispatches_per_step"] / 1e3 == \
        pytest.approx(bd["framework_overhead"], rel=1e-9)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_invariant_holds_on_every_fixture(tmp_path, name):
    profile = load_fixture(tmp_path, name)
    analysis.analyse(profile)
    assert invariants.check(profile) == []
    assert profile.manifest["analysis"]["warnings"] == []
    assert profile.manifest["analysis"]["version"] == analysis.ANALYSIS_VERSION
    res = profile.manifest["results"]
    for key in ("ops_per_step", "dispatches_per_step", "overhead_us_per_dispatch", "eager_share"):
        assert res.get(key) is not None or key in res["unavailable"], key  # a value, or why not


def test_the_checker_catches_impossible_numbers():
    res = {"step_ms": {"median": 0.25}, "breakdown_ms": {"framework_overhead": 2.0, "forward": 0.1},
           "dispatches_per_step": 14.0, "overhead_us_per_dispatch": 270.0,
           "gflops": {"compute": 75.0}, "gemm_peak_gflops": 6.58}
    names = {v["invariant"] for v in invariants.check_results(res)}
    assert {"breakdown_sums_to_step", "per_step_within_step", "dispatches_times_cost_within_step",
            "gflops_within_peak"} <= names
    findings = [
        {"rule": "small_problem", "evidence": {"overhead_ms_per_step": 0.29},
         "counterfactual": {"measured": True, "variant": "tf_xla", "speedup": 1.1}},
        {"rule": "framework_overhead", "evidence": {}, "fix_traits": ["whole_loop"]},
        {"rule": "eager_execution", "evidence": {}, "counterfactual": {"measured": True, "variant": "tf_function",
                                                                         "speedup": 66.8}},
    ]
    exp = [{"variant": "tf_xla", "status": "ok", "median_ms": 0.3}, {"variant": "tf_function", "status": "ok",
                                                                      "median_ms": 0.1}]
    got = {v["invariant"] for v in invariants.check_findings(
        findings, {"step_ms": {"median": 0.25}}, "tf_graph_loop", invariants.traits("tf_graph_loop"), exp)}
    assert got == {"evidence_within_step", "counterfactual_is_faster", "recommendation_not_already_done",
                   "findings_ranked_by_gain"}


def test_the_users_python_must_fit_outside_the_steps_ops():
    bms = {"forward": 4.0, "backward": 4.0, "framework_overhead": 2.0}
    res = {"step_ms": {"median": 10.0}, "breakdown_ms": bms, "user_python_ms_per_step": 2.0,
           "user_python_share": 0.2}
    assert invariants.check_results(res) == []
    res.update(user_python_ms_per_step=6.0, user_python_share=0.6)  # 6 ms of Python beside 8 ms of ops
    assert {v["invariant"] for v in invariants.check_results(res)} == {"user_python_outside_ops"}


def test_contention_is_carved_out_of_framework_overhead_only():
    bd = pd.DataFrame({"step": [1, 1, 1, 2, 2, 2], "category": ["forward", "framework_overhead", "cpu_contention"] * 2,
                       "ms": [1.0, 0.5, 0.0, 3.0, 1.0, 0.0]})
    out = analysis.carve_contention(bd, 0.4)
    wide = out.pivot(index="step", columns="category", values="ms")
    # step 1: 40% of 1.5 ms = 0.6 ms, but only 0.5 ms of overhead to take it from.
    assert wide.loc[1, "cpu_contention"] == pytest.approx(0.5) and wide.loc[1, "framework_overhead"] == 0.0
    assert wide.loc[2, "cpu_contention"] == pytest.approx(1.0) and wide.loc[2, "forward"] == 3.0
    assert out.groupby("step")["ms"].sum().tolist() == pytest.approx([1.5, 4.0])


def test_achieved_gflops_above_the_peak_is_never_shown(tmp_path):
    profile = load_fixture(tmp_path, "numpy")
    profile.manifest["flops_per_step"] = {"forward": 1e9, "backward": 1e9}
    profile.manifest.setdefault("environment", {})["gemm_peak"] = {"gflops": 5.0, "dtype": "float32"}
    analysis.analyse(profile)
    res = profile.manifest["results"]
    assert res.get("gflops") is None and "above" in res["unavailable"]["gflops"]
    assert invariants.check(profile) == []


def test_corrupt_trace_falls_back_to_phases_and_says_why(tmp_path):
    profile = load_fixture(tmp_path, "tf_function")
    profile.xplane_path().write_bytes(b"\x00not an xplane\xff" * 10)
    analysis.analyse(profile)
    res = profile.manifest["results"]
    assert res["breakdown_source"] == analysis.SOURCE_TEXT["phases"]
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
    analysis.analyse(profile)
    (warning,) = profile.manifest["capture"]["warnings"]
    assert warning["kind"] == "cupti_empty_gpu_trace" and "NVreg_RestrictProfilingToAdminUsers" in warning["message"]
    assert warning["evidence"]["trace_processes"] == ["/host:CPU"]


def test_no_gpu_means_no_cupti_warning():
    events = pd.DataFrame({"process": ["/host:CPU"]})
    assert analysis.gpu_trace_warning({"tensorflow": {"gpus": []}}, events) is None
    gpu_events = pd.DataFrame({"process": ["/host:CPU", "/device:GPU:0"]})
    assert analysis.gpu_trace_warning({"tensorflow": {"gpus": ["GPU:0"]}}, gpu_events) is None


def test_an_analysis_that_fails_keeps_the_measured_run_and_says_why(tmp_path, monkeypatch):
    from profilers import stored_analysis

    profile = load_fixture(tmp_path, "numpy")

    def broken(profile):
        raise ValueError("boom in the analysis")

    monkeypatch.setattr(analysis, "derive", broken)
    stored_analysis.analyse_before_commit(profile, None)
    (warning,) = profile.manifest["analysis"]["warnings"]
    assert warning["invariant"] == "analysis_failed" and "boom in the analysis" in warning["message"]
    assert profile.findings == [] and not profile.table("steps").empty  # the measurements stay


def test_judging_again_keeps_what_a_whatif_rerun_measured(tmp_path):
    profile = load_fixture(tmp_path, "tf_eager")
    analysis.analyse(profile)
    rule = profile.findings[-1]["rule"]
    cf = {"variant": "run_eagerly_false", "speedup": 3.0, "interval": [2.0, 4.5], "verdict": "faster",
          "measured": True, "source": "whatif", "text": "measured by what-if"}
    profile.findings[-1]["counterfactual"] = cf
    analysis.judge(profile, {"experiment": []})
    kept = {f["rule"]: f.get("counterfactual") for f in profile.findings}
    assert kept[rule] == cf
    assert profile.findings[0]["rule"] == rule  # a measured gain ranks first
    assert invariants.check(profile) == []
    cf_bad = dict(cf, interval=[0.8, 4.5])  # "faster" with an interval that includes 1
    profile.findings[0]["counterfactual"] = cf_bad
    assert {v["invariant"] for v in invariants.check(profile)} == {"counterfactual_is_faster"}


def test_user_python_share_is_pooled_over_the_kept_steps_and_needs_coverage():
    """Stack samples in measured steps, weighted by the time each stands for: warm-up and
    left-out (outlier) steps do not count; samples that cover too little of the steps'
    time give no share, with the reason."""
    from profilers.model import validate_table

    steps = validate_table("steps", pd.DataFrame({
        "step": [0, 1, 2, 3], "epoch": 0, "start_us": [0.0, 10_000.0, 20_000.0, 30_000.0],
        "wall_us": 10_000.0, "warmup": [True, False, False, False], "derived": False,
        "in_profile_window": True, "loss": float("nan")}))

    def derive(rows: list[tuple[float, float, str, str]], left_out: list[int]) -> tuple[dict, dict]:
        frame = pd.DataFrame(rows, columns=["ts_us", "weight_us", "kind", "where"])
        frame["code"] = frame["where"].map(lambda w: {"log (t.py:9)": "log(x)", "loop (t.py:20)": "step(x)"}.get(w, ""))
        stacks = validate_table("py_stacks", frame)
        profile = RunProfile(manifest={"source": "script", "capture": {"xplane": "trace/x.xplane.pb"}},
                             tables={"steps": steps, "py_stacks": stacks})
        res = {"step_ms": {"median": 10.0}, "breakdown_left_out_steps": left_out}
        unavailable: dict[str, str] = {}
        analysis._derive_user_python(profile, res, steps, unavailable)
        return res, unavailable

    full = [(5_000.0, 10_000.0, "user", "warm (t.py:1)"),          # warm-up step: left out
            (12_000.0, 3_000.0, "user", "log (t.py:9)"), (19_000.0, 7_000.0, "framework", "loop (t.py:20)"),
            (22_000.0, 2_000.0, "user", "log (t.py:9)"), (29_000.0, 8_000.0, "framework", ""),
            (35_000.0, 10_000.0, "user", "stall (t.py:4)")]         # step 3: an outlier, left out
    res, unavailable = derive(full, [3])
    assert res["user_python_share"] == pytest.approx(5_000 / 20_000) and not unavailable
    assert res["user_python_ms_per_step"] == pytest.approx(2.5)
    assert res["user_python_where"] == [{"where": "log (t.py:9)", "share": pytest.approx(0.25)}]
    # Inclusive: TF's time under the user's loop line counts for that line.
    assert res["user_lines"] == [{"where": "loop (t.py:20)", "code": "step(x)", "share": pytest.approx(0.35)},
                                 {"where": "log (t.py:9)", "code": "log(x)", "share": pytest.approx(0.25)}]
    res, unavailable = derive(full[:3], [3])  # the sampler stopped after step 1: half the time covered
    assert res["user_python_share"] == pytest.approx(0.3) and not unavailable
    res, unavailable = derive(full[:2], [3])  # 3 of 20 ms covered
    assert "user_python_share" not in res
    assert "cover only 15%" in unavailable["user_python_share"] and "signal.alarm" in unavailable["user_python_share"]
    # No samples at all because the sampler could not start: its reason, not a guess.
    profile = RunProfile(manifest={"source": "script", "capture": {"xplane": "x", "harness": {"components": {
        "stack_sampler": {"error": "SIGALRM already has a handler in this process"}}}}},
        tables={"steps": steps, "py_stacks": validate_table("py_stacks", pd.DataFrame(
            columns=["ts_us", "weight_us", "kind", "where", "code"]))})
    unavailable = {}
    analysis._derive_user_python(profile, {"step_ms": {"median": 10.0}}, steps, unavailable)
    assert unavailable["user_python_share"] == ("the stack sampler could not run: SIGALRM already has a handler "
                                                "in this process")
