"""Triage rules on synthetic tables: each rule fires on data that shows its problem, stays
silent on data that does not, and never fires on unavailable data. No TensorFlow."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from profilers import triage
from profilers.model import CATEGORIES, RunProfile, validate_table, new_manifest

N_STEPS = 20


def make_run(shares: dict[str, float] | None = None, *, step_ms: float = 10.0, warmup: int = 2,
             results: dict | None = None, samples: pd.DataFrame | None = None,
             environment: dict | None = None, script: dict | None = None,
             source: str = "script", variant: str = "train", workload: str = "script",
             warmup_shares: dict[str, float] | None = None, ops: pd.DataFrame | None = None) -> RunProfile:
    """A run whose measured steps split ``step_ms`` by ``shares`` (rest: other)."""
    shares = dict(shares or {})
    shares.setdefault("other", max(0.0, 1.0 - sum(shares.values())))
    n = N_STEPS + warmup
    steps = pd.DataFrame({
        "step": np.arange(n), "epoch": 0, "start_us": np.arange(n) * step_ms * 1e3,
        "wall_us": np.full(n, step_ms * 1e3), "warmup": np.arange(n) < warmup,
        "derived": False, "in_profile_window": True, "loss": np.nan})
    rows = []
    for s in range(n):
        sh = (warmup_shares or shares) if s < warmup else shares
        sh = {**{c: 0.0 for c in CATEGORIES}, **sh}
        rows += [{"step": s, "category": c, "ms": sh[c] * step_ms} for c in CATEGORIES]
    tables = {"steps": validate_table("steps", steps),
              "breakdown": validate_table("breakdown", pd.DataFrame(rows))}
    if samples is not None:
        tables["samples"] = validate_table("samples", samples)
    if ops is not None:
        tables["ops"] = validate_table("ops", ops)
    manifest = new_manifest(run_id="20260101-000000-script-train-abcdef", experiment_id="exp",
                            workload=workload, variant=variant, status="ok", source=source,
                            results=results or {},
                            environment=environment or {"cpu_logical": 2, "affinity_cores": 2},
                            capture={}, script=script or {})
    return RunProfile(manifest=manifest, tables=tables)


def rules_fired(profile: RunProfile, context: dict | None = None) -> dict[str, dict]:
    return {f["rule"]: f for f in triage.evaluate(profile, context)}


def check_shape(f: dict) -> None:
    assert set(f) >= {"rule", "severity", "share", "evidence", "recommendation"}
    assert f["severity"] in triage.SEVERITIES
    assert f["share"] is None or 0.0 <= f["share"] <= 1.0
    assert isinstance(f["evidence"], dict) and f["evidence"]
    assert "```" in f["recommendation"], "every recommendation carries a code snippet"


# -- input_bound --------------------------------------------------------------------------------
@pytest.mark.parametrize("share, severity", [(0.30, "high"), (0.20, "high"), (0.10, "moderate"),
                                             (0.05, "moderate"), (0.04, None), (0.0, None)])
def test_input_bound_thresholds_follow_xprof(share, severity):
    f = rules_fired(make_run({"input_wait": share})).get("input_bound")
    assert (f["severity"] if f else None) == severity
    if f:
        check_shape(f)
        assert f["share"] == pytest.approx(share, abs=1e-6)


def test_input_bound_names_the_slow_stage_and_ignores_warmup():
    stages = [{"stage": "Iterator::Root::Map", "self_ms": 40.0, "self_pct": 90.0, "count": 10},
              {"stage": "Iterator::Root::Map::BatchV2", "self_ms": 1.0, "self_pct": 2.0, "count": 10}]
    run = make_run({"input_wait": 0.5}, results={"input_stages": stages},
                   warmup_shares={"input_wait": 0.0})
    f = rules_fired(run)["input_bound"]
    assert f["evidence"]["slowest_tf_data_stage"]["stage"] == "Iterator::Root::Map"
    assert "Iterator::Root::Map" in f["recommendation"]
    # Only warm-up steps wait: nothing to report.
    assert "input_bound" not in rules_fired(make_run({}, warmup_shares={"input_wait": 0.9}))


# -- eager_execution ------------------------------------------------------------------------------
@pytest.mark.parametrize("share, severity", [(0.5, "high"), (0.2, "high"), (0.12, "moderate"), (0.05, None)])
def test_eager_execution_from_trace_facts(share, severity):
    run = make_run({"framework_overhead": 0.5}, results={"eager_share": share, "eager_ms_per_step": share * 10})
    f = rules_fired(run).get("eager_execution")
    assert (f["severity"] if f else None) == severity
    if f:
        check_shape(f)
        assert "tf.function" in f["recommendation"]


def test_eager_execution_from_the_ops_table_and_silent_without_data():
    ops = pd.DataFrame({"host_or_device": ["Host", "Host"], "op_type": ["MatMul", "AddV2"],
                        "op_name": ["MatMul", "add"], "category": ["other", "other"],
                        "occurrences": [22, 22], "total_self_us": [60_000.0, 20_000.0],
                        "avg_self_us": [2727.0, 909.0], "eager": [True, False]})
    f = rules_fired(make_run({}, ops=ops))["eager_execution"]
    assert f["share"] == pytest.approx(60_000 / (22 * 10_000), abs=1e-4)
    assert f["evidence"]["op_time_eager_pct"] == pytest.approx(75.0)
    assert "eager_execution" not in rules_fired(make_run({}))  # no eager facts: says nothing


# -- retracing ----------------------------------------------------------------------------------
def _retrace_run(calls: int, traced: int, tracing_count: int | None, changing=None) -> RunProfile:
    fn = {"function": "train_step", "calls": calls, "traced_calls": traced,
          "median_call_ms": 20.0, "median_traced_ms": 29.0 if traced else None,
          "median_untraced_ms": 0.54 if traced < calls else None,
          "traced_ms": 29.0 * traced, "xla": False}
    live = [{"function": "train_step", "tracing_count": tracing_count, "changing_args": changing or []}] \
        if tracing_count is not None else []
    return make_run({"compile_trace": 0.9}, results={"tf_functions": [fn], "capture_ms": 30.0 * calls},
                    script={"tf_functions": live, "tf_warnings": {"retracing_warnings": 3}})


def test_retracing_fires_with_count_cost_and_the_changing_argument():
    changing = [{"arg": "lr", "kind": "python_scalar", "distinct": 30, "examples": ["0.1", "0.099", "0.098"]}]
    f = rules_fired(_retrace_run(30, 30, 30, changing))["retracing"]
    check_shape(f)
    assert f["severity"] == "high"
    assert f["evidence"]["traces_total"] == 30
    assert f["evidence"]["changing_args"][0]["arg"] == "lr"
    assert "`lr` is a Python scalar" in f["recommendation"]
    assert 0.9 < f["share"] <= 1.0


def test_retracing_moderate_when_few_calls_retrace_and_silent_when_traced_once():
    f = rules_fired(_retrace_run(100, 6, 6))["retracing"]
    assert f["severity"] == "moderate"
    assert f["evidence"]["cost_per_retrace_ms"] == pytest.approx(29.0 - 0.54)
    fired = rules_fired(_retrace_run(100, 1, 1))
    assert "retracing" not in fired
    assert "retracing" not in rules_fired(_retrace_run(3, 2, None))  # 2 traces in 3 calls: too few


# -- framework_overhead / small_problem --------------------------------------------------------------
@pytest.mark.parametrize("share, severity", [(0.5, "high"), (0.15, "high"), (0.10, "moderate"),
                                             (0.03, "moderate"), (0.02, None)])
def test_framework_overhead_thresholds(share, severity):
    f = rules_fired(make_run({"framework_overhead": share, "backward": 1 - share})).get("framework_overhead")
    assert (f["severity"] if f else None) == severity


def test_small_problem_compares_fixed_cost_with_the_maths_and_gives_numpy_time():
    run = make_run({"framework_overhead": 0.9, "forward": 0.1}, source="workload", workload="linreg",
                   variant="tf_eager")
    ctx = {"experiment": [{"variant": "numpy", "status": "ok", "median_ms": 0.02, "run_id": "r-numpy"}]}
    f = rules_fired(run, ctx)["small_problem"]
    check_shape(f)
    assert f["severity"] == "high"
    assert f["evidence"]["fixed_over_maths"] == pytest.approx(9.0)
    assert f["evidence"]["numpy_same_maths_ms"] == pytest.approx(0.02)
    assert f["evidence"]["slower_than_numpy"] == pytest.approx(500.0)
    moderate = rules_fired(make_run({"framework_overhead": 0.6, "forward": 0.4}))["small_problem"]
    assert moderate["severity"] == "moderate" and moderate["evidence"]["numpy_same_maths_ms"] is None
    assert "small_problem" not in rules_fired(make_run({"framework_overhead": 0.2, "forward": 0.8}))
    # Fixed cost above the maths, but the step is all compilation: not a small-problem finding.
    assert "small_problem" not in rules_fired(make_run({"compile_trace": 0.98, "framework_overhead": 0.01,
                                                        "forward": 0.002}))


# -- GPU rules: silent without a GPU ----------------------------------------------------------------
def _samples(gpu: list[float] | None, cpu: list[float]) -> pd.DataFrame:
    rows = [(i * 1e5, "host", "system_cpu_pct", v) for i, v in enumerate(cpu)]
    if gpu is not None:
        rows += [(i * 1e5, "gpu", "gpu0_util_pct", v) for i, v in enumerate(gpu)]
    return pd.DataFrame(rows, columns=["ts_us", "source", "metric", "value"])


def test_gpu_rules_say_nothing_without_gpu_readings():
    fired = rules_fired(make_run({}, samples=_samples(None, [99.0] * 30)))
    assert "gpu_underutilized" not in fired and "cpu_bottleneck" not in fired


def test_gpu_underutilized_and_cpu_bottleneck():
    fired = rules_fired(make_run({}, samples=_samples([5.0] * 30, [97.0] * 30)))
    assert fired["gpu_underutilized"]["severity"] == "high"
    assert fired["gpu_underutilized"]["evidence"]["gpu_util_p95_pct"] == pytest.approx(5.0)
    assert fired["cpu_bottleneck"]["severity"] == "high"
    busy = rules_fired(make_run({}, samples=_samples([95.0] * 30, [97.0] * 30)))
    assert "gpu_underutilized" not in busy and "cpu_bottleneck" not in busy
    idle_cpu = rules_fired(make_run({}, samples=_samples([50.0] * 30, [20.0] * 30)))
    assert idle_cpu["gpu_underutilized"]["severity"] == "moderate" and "cpu_bottleneck" not in idle_cpu


# -- transfers, compilation, threads ----------------------------------------------------------------
def test_host_device_transfer():
    assert rules_fired(make_run({"host_device_transfer": 0.3}))["host_device_transfer"]["severity"] == "high"
    assert rules_fired(make_run({"host_device_transfer": 0.12}))["host_device_transfer"]["severity"] == "moderate"
    assert "host_device_transfer" not in rules_fired(make_run({"host_device_transfer": 0.05}))


def test_compilation_steady_vs_one_time():
    assert rules_fired(make_run({"compile_trace": 0.5}))["compilation"]["severity"] == "high"
    assert rules_fired(make_run({"compile_trace": 0.15}))["compilation"]["severity"] == "moderate"
    # Compiling only during warm-up: a one-time cost, low when it is a big part of a short capture.
    once = make_run({}, warmup=3, warmup_shares={"compile_trace": 1.0})
    f = rules_fired(once)["compilation"]
    assert f["severity"] == "low" and f["share"] == pytest.approx(3 / 23, abs=1e-4)
    assert "compilation" not in rules_fired(make_run({}, warmup=1, warmup_shares={"compile_trace": 1.0}))


def test_thread_config():
    env = {"cpu_logical": 2, "affinity_cores": 2, "tensorflow": {"intra_op_threads": 8, "inter_op_threads": 0}}
    f = rules_fired(make_run({}, environment=env))["thread_config"]
    assert f["severity"] == "moderate" and "oversubscribed" in f["evidence"]["issues"][0]
    ok = {"cpu_logical": 2, "affinity_cores": 2, "tensorflow": {"intra_op_threads": 0, "inter_op_threads": 0}}
    assert "thread_config" not in rules_fired(make_run({}, environment=ok))
    single = {"cpu_logical": 4, "affinity_cores": 4, "tensorflow": {"intra_op_threads": 1, "inter_op_threads": 0}}
    assert rules_fired(make_run({"backward": 0.9}, environment=single))["thread_config"]["severity"] == "low"


# -- counterfactuals, ordering, registry --------------------------------------------------------------
def test_counterfactual_uses_the_measured_variant_of_the_same_experiment():
    run = make_run({"framework_overhead": 0.9, "forward": 0.1}, source="workload", workload="linreg",
                   variant="tf_eager", results={"eager_share": 0.6})
    ctx = {"experiment": [{"variant": "tf_function", "status": "ok", "median_ms": 10.0 / 7.9, "run_id": "r2"}]}
    f = rules_fired(run, ctx)["eager_execution"]
    assert f["counterfactual"]["measured"] is True
    assert f["counterfactual"]["text"] == "measured: 7.9x faster with tf_function (same experiment)"
    missing = rules_fired(run, {"experiment": []})["eager_execution"]["counterfactual"]
    assert missing["measured"] is False and "--variants tf_eager,tf_function" in missing["command"]
    assert "counterfactual" not in rules_fired(make_run({"framework_overhead": 0.9}, results={"eager_share": 0.6}))["eager_execution"]
    # A variant that ran but was not faster is not offered as the fix.
    slower = {"experiment": [{"variant": "tf_function", "status": "ok", "median_ms": 20.0, "run_id": "r2"},
                             {"variant": "tf_xla", "status": "ok", "median_ms": 30.0, "run_id": "r3"}]}
    cf = rules_fired(run, slower)["eager_execution"]["counterfactual"]
    assert cf["measured"] is False and cf["variant"] == "tf_graph_loop"


def test_findings_are_ordered_by_severity_then_share():
    fs = triage.evaluate(make_run({"input_wait": 0.25, "framework_overhead": 0.6, "compile_trace": 0.12}))
    ranks = [triage.SEVERITY_RANK[f["severity"]] for f in fs]
    assert ranks == sorted(ranks)
    highs = [f["share"] for f in fs if f["severity"] == "high"]
    assert highs == sorted(highs, reverse=True)


def test_registry_is_sorted_and_has_the_issue_rules():
    assert list(triage.RULES) == sorted(triage.RULES)
    assert set(triage.RULES) >= {"input_bound", "eager_execution", "retracing", "framework_overhead",
                                 "small_problem", "gpu_underutilized", "cpu_bottleneck",
                                 "host_device_transfer", "compilation", "thread_config"}


def test_a_run_without_tables_gets_no_finding_and_an_empty_summary():
    bare = RunProfile(manifest={"run_id": "x", "source": "script", "results": {}, "environment": {}})
    assert triage.evaluate(bare) == []
    assert triage.summary(bare) == {"steps": {"count": 0, "median_ms": None}, "breakdown_ms": None,
                                    "breakdown_window_ms": None, "unavailable": {}}


def test_triage_is_pure():
    import profilers.triage as t

    src = open(t.__file__, encoding="utf-8").read()
    for banned in ("import tensorflow", "import streamlit", "import xprof", "open(", "Path("):
        assert banned not in src


def test_importing_triage_does_not_import_tensorflow():
    import subprocess

    code = "import sys, profilers.triage, profilers.cli_triage; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_fix_to_run_is_only_offered_when_the_workload_has_that_variant():
    run = make_run({"input_wait": 0.5}, source="workload", workload="mlp", variant="tf_function")
    mlp_variants = ["keras_fit", "mirrored", "multi_worker", "numpy", "tf_eager", "tf_function", "tf_xla"]
    f = rules_fired(run, {"experiment": [], "variants": mlp_variants})["input_bound"]
    assert "counterfactual" not in f  # `all`, `prefetch`... are input_pipeline's variants, not mlp's
    pipe = make_run({"input_wait": 0.5}, source="workload", workload="input_pipeline", variant="naive")
    cf = rules_fired(pipe, {"experiment": [], "variants": ["naive", "prefetch", "all"]})["input_bound"]["counterfactual"]
    assert cf["variant"] == "all" and cf["measured"] is False
