"""Triage verdicts that one step cannot decide: an outlier (stall) step is left out of the
shares and reported as its own finding; a NumPy script's interpreter share is judged at
the sampler's resolution; sgdscope's own harness cost is kept out of framework_overhead;
the eager share is the measured graph gain when the experiment has it. No TensorFlow."""
from __future__ import annotations

import numpy as np
import pandas as pd

from profilers import triage
from profilers.model import CATEGORIES, RunProfile, validate_table


def run_with(step_shares: list[dict[str, float]], step_ms: list[float], *, warmup: int = 3,
             results: dict | None = None, capture: dict | None = None, source: str = "script",
             variant: str = "train", workload: str = "script") -> RunProfile:
    n = len(step_ms)
    steps = pd.DataFrame({"step": np.arange(n), "epoch": 0, "start_us": np.cumsum([0, *step_ms[:-1]]) * 1e3,
                          "wall_us": np.asarray(step_ms) * 1e3, "warmup": np.arange(n) < warmup,
                          "derived": False, "in_profile_window": True, "loss": np.nan})
    rows = []
    for s, (sh, ms) in enumerate(zip(step_shares, step_ms)):
        sh = {**{c: 0.0 for c in CATEGORIES}, **sh}
        sh["other"] = max(0.0, 1.0 - sum(v for c, v in sh.items() if c != "other"))
        rows += [{"step": s, "category": c, "ms": sh[c] * ms} for c in CATEGORIES]
    manifest = {"run_id": "20260101-000000-script-train-abcdef", "experiment_id": "exp", "workload": workload,
                "variant": variant, "status": "ok", "source": source, "results": results or {},
                "environment": {"cpu_logical": 2, "affinity_cores": 2}, "capture": capture or {}, "script": {}}
    return RunProfile(manifest=manifest, tables={"steps": validate_table("steps", steps),
                                                 "breakdown": validate_table("breakdown", pd.DataFrame(rows))})


def fired(profile: RunProfile, context: dict | None = None) -> dict[str, dict]:
    return {f["rule"]: f for f in triage.evaluate(profile, context)}


def input_bound_loop_with_a_stall(stall_ms: float = 519.0) -> RunProfile:
    """53 steps of 20 ms, half of each waiting for input; step 30 also stalls 519 ms in
    host time outside any op (an iterator torn down at an epoch boundary)."""
    shares = [{"input_wait": 0.49, "framework_overhead": 0.11}] * 53
    ms = [20.0] * 53
    stall = dict(shares[30])
    ms[30] = 20.0 + stall_ms
    shares = list(shares)
    shares[30] = {"input_wait": 0.49 * 20 / ms[30], "framework_overhead": (0.11 * 20 + stall_ms) / ms[30]}
    capture = {"step_inference": {"outlier_steps": [{"step": 30, "ms": ms[30], "longest_events": [
        {"name": "TFE_DeleteTensorHandle", "ms": 519.0, "thread": "python"},
        {"name": "IteratorGetNext", "ms": 9.8, "thread": "python"}], "untraced_ms": 1.0}]}}
    return run_with(shares, ms, capture=capture)


def test_one_stall_step_keeps_the_verdict_and_is_reported_with_what_it_contained():
    run = input_bound_loop_with_a_stall()
    f = fired(run)
    assert f["input_bound"]["severity"] == "high"
    assert abs(f["input_bound"]["share"] - 0.49) < 0.01  # not dragged to ~0.3 by the stall
    assert f.get("framework_overhead", {}).get("share", 0.0) < 0.15  # no spurious high overhead
    o = f["outlier_steps"]
    assert o["evidence"]["outliers"][0]["step"] == 30 and o["evidence"]["outliers"][0]["x_median"] > 5
    assert o["evidence"]["cause"] == "iterator teardown/creation at an epoch boundary"
    assert "TFE_DeleteTensorHandle" in o["recommendation"] and "iter(ds.repeat())" in o["recommendation"]
    assert o["severity"] == "high"  # 0.5 s of a ~1.5 s window
    # The same loop without the stall: the same input share, and no outlier finding.
    calm = fired(input_bound_loop_with_a_stall(stall_ms=0.0))
    assert "outlier_steps" not in calm
    assert abs(calm["input_bound"]["share"] - f["input_bound"]["share"]) < 0.01


def test_without_trace_events_an_outlier_is_described_by_its_own_breakdown():
    shares = [{"input_wait": 0.1}] * 30
    ms = [10.0] * 30
    ms[20], shares[20] = 200.0, {"framework_overhead": 0.95}
    f = fired(run_with(shares, ms))["outlier_steps"]
    assert f["evidence"]["outliers"][0]["largest_categories_ms"]["framework_overhead"] == 190.0
    assert f["evidence"]["cause"].startswith("not recognised") and "```" in f["recommendation"]



def test_an_outlier_mostly_in_one_known_category_is_named_by_it():
    """Marker steps carry no event list: the outlier's own breakdown names the cause when one
    category holds at least half of it; a compile at a later fit call's first step says so."""
    def outlier(shares20: dict[str, float], capture: dict | None = None) -> dict:
        shares = [{"input_wait": 0.1}] * 30
        ms = [10.0] * 30
        ms[20], shares[20] = 400.0, shares20
        return fired(run_with(shares, ms, capture=capture))["outlier_steps"]

    assert outlier({"input_wait": 0.8})["evidence"]["cause"] == "a stall waiting for the next batch"
    assert outlier({"compile_trace": 0.9})["evidence"]["cause"] == "tracing/compilation inside the loop"
    assert outlier({"compile_trace": 0.4, "framework_overhead": 0.5})["evidence"]["cause"].startswith("not recognised")
    fits = {"window": {"fit_calls": 2, "fit_first_steps": [0, 20]}}
    f = outlier({"compile_trace": 0.9}, fits)
    assert f["evidence"]["cause"] == "a new train function traced at the start of fit call 2 of 2"
    assert "360 ms once per `fit` call" in f["recommendation"]
    first = {"window": {"fit_calls": 2, "fit_first_steps": [20, 25]}}  # the run's first fit: not a re-compile
    assert outlier({"compile_trace": 0.9}, first)["evidence"]["cause"] == "tracing/compilation inside the loop"


def test_eager_advice_follows_what_runs_eagerly():
    """A custom loop is told to use tf.function; Keras fit with run_eagerly, to compile the
    step; Keras fit whose step already calls its compiled train function, steps_per_execution."""
    def advice(results: dict, capture: dict | None = None, variant: str = "train") -> dict:
        run = run_with([{"framework_overhead": 0.5}] * 20, [5.0] * 20, results=results,
                       capture=capture, variant=variant)
        return fired(run)["eager_execution"]

    keras = {"window": {"fit_calls": 1}}
    loop = advice({"eager_share": 0.4})
    assert "@tf.function" in loop["recommendation"] and "keras_train_functions" not in loop["evidence"]
    eager_fit = advice({"eager_share": 0.9, "function_calls_per_step": None}, keras)
    assert "run_eagerly=False" in eager_fit["recommendation"] and "@tf.function" not in eager_fit["recommendation"]
    compiled = advice({"eager_share": 0.15, "function_calls_per_step": 1.0,
                       "tf_functions": [{"function": "multi_step_on_iterator"}]}, keras)
    assert "steps_per_execution=" in compiled["recommendation"] and "fit(" not in compiled["recommendation"]
    assert compiled["evidence"]["compiled_functions"] == ["multi_step_on_iterator"]
    def workload_advice(variant: str) -> str:
        run = run_with([{"framework_overhead": 0.5}] * 20, [5.0] * 20, source="workload", workload="mlp",
                       variant=variant, results={"eager_share": 0.15, "function_calls_per_step": 1.0})
        return fired(run)["eager_execution"]["recommendation"]

    assert "model.compile(..., steps_per_execution=32)\n```" in workload_advice("keras_fit")
    assert "tf.range" in workload_advice("tf_function")
    # train_on_batch: Keras' compiled function once per call, no fit
    on_batch = advice({"eager_share": 0.17, "function_calls_per_step": 1.0,
                       "tf_functions": [{"function": "one_step_on_data"}]})
    assert "train_on_batch" in on_batch["recommendation"] and "model.fit(" in on_batch["recommendation"]
    custom = advice({"eager_share": 0.2, "function_calls_per_step": 1.0, "tf_functions": [{"function": "step"}]})
    assert "tf.range" in custom["recommendation"] and "@tf.function\ndef train_step" not in custom["recommendation"]
    # run_functions_eagerly(True): calls TF marked eager outrank every other reading.
    for capture in (None, keras):
        switched = advice({"eager_share": 0.9, "function_calls_per_step": 0.0,
                           "tf_functions": [{"function": "train_step", "calls": 60, "eager_calls": 60}]}, capture)
        assert switched["evidence"]["functions_run_eagerly"] == ["train_step"]
        assert "run_functions_eagerly(False)" in switched["recommendation"]
        assert "@tf.function\ndef" not in switched["recommendation"] and "run_eagerly=False" not in switched["recommendation"]
    graph = advice({"eager_share": 0.4, "tf_functions": [{"function": "train_step", "calls": 60, "eager_calls": 0}]})
    assert "functions_run_eagerly" not in graph["evidence"]


def test_input_advice_for_a_python_generator_is_not_to_parallelise_its_map():
    def input_finding(stage: str) -> dict:
        run = run_with([{"input_wait": 0.6}] * 20, [5.0] * 20,
                       results={"input_stages": [{"stage": stage, "self_ms": 260.0}]})
        return fired(run)["input_bound"]

    gen = input_finding("Iterator::Root::Prefetch::FlatMap[0]::Generator")
    assert "Python generator" in gen["recommendation"] and "PyDataset" in gen["recommendation"]
    assert gen["evidence"]["slowest_tf_data_stage"]["stage"].endswith("Generator")
    mapped = input_finding("Iterator::Root::Prefetch::Map")
    assert "generator" not in mapped["recommendation"] and "num_parallel_calls" in mapped["recommendation"]

def test_numpy_interpreter_share_is_judged_at_the_samplers_resolution():
    def numpy_run(interp: float) -> RunProfile:
        return run_with([{"framework_overhead": interp}] * 20, [5.0] * 20,
                        results={"profiler": "signal-delay sampler",
                                 "top_lines": [{"line": "train.py:12", "s": 1.0, "interpreter_s": 0.5, "native_s": 0.5}]})
    assert "framework_overhead" not in fired(numpy_run(0.06))  # a vectorised step: below resolution
    mid = fired(numpy_run(0.2))["framework_overhead"]
    assert mid["severity"] == "moderate" and "train.py:12" in mid["recommendation"]
    assert "jit_compile" not in mid["recommendation"]  # NumPy advice, not TensorFlow's
    assert fired(numpy_run(0.6))["framework_overhead"]["severity"] == "high"
    assert "small_problem" not in fired(numpy_run(0.6))


def test_harness_cost_is_kept_out_of_framework_overhead():
    shares = [{"framework_overhead": 0.2}] * 20
    bare = fired(run_with(shares, [10.0] * 20))["framework_overhead"]
    assert bare["severity"] == "high"
    with_h = fired(run_with(shares, [10.0] * 20, capture={"harness": {"framework_overhead_share": 0.1}}))
    f = with_h["framework_overhead"]
    assert abs(f["share"] - 0.1) < 1e-6 and f["severity"] == "moderate"
    assert f["evidence"]["share_before_harness"] == 0.2 and f["evidence"]["harness_ms_per_step"] == 1.0


def test_steps_without_their_own_breakdown_use_the_whole_run_and_say_so():
    run = run_with([{"framework_overhead": 0.5}] * 20, [10.0] * 20)
    bd = run.tables["breakdown"].copy()
    bd["step"] = -1  # one whole-run pseudo-step
    run.tables["breakdown"] = bd.groupby(["step", "category"], as_index=False)["ms"].sum()
    facts = triage.gather(run)
    assert facts["shares_scope"] == "whole run" and abs(facts["shares"]["framework_overhead"] - 0.5) < 1e-9


def test_eager_share_is_the_measured_graph_gain_when_the_experiment_has_it():
    run = run_with([{"framework_overhead": 0.6}] * 20, [10.0] * 20, source="workload", workload="linreg",
                   variant="tf_eager", results={"eager_share": 0.31})
    alone = fired(run, {"experiment": []})["eager_execution"]
    assert alone["share"] == 0.31
    ctx = {"experiment": [{"variant": "tf_function", "status": "ok", "median_ms": 1.0, "run_id": "g"}]}
    f = fired(run, ctx)["eager_execution"]
    assert f["share"] == 0.9 and f["severity"] == "high"
    assert f["evidence"]["trace_eager_share"] == 0.31 and f["evidence"]["graph_run_id"] == "g"


def test_many_slow_steps_are_a_mode_of_the_run_not_outliers():
    shares = [{"input_wait": 0.3}] * 40
    ms = [10.0 if i % 4 else 80.0 for i in range(40)]  # every 4th step slow: 25 %
    facts = triage.gather(run_with(shares, ms))
    assert facts["outlier_steps"] == [] and facts["shares_left_out_steps"] == []
    assert "outlier_steps" not in fired(run_with(shares, ms))


def test_a_numpy_scripts_interpreter_verdict_is_over_the_time_it_ran():
    run = run_with([{"framework_overhead": 0.2, "cpu_contention": 0.6}] * 20, [10.0] * 20,
                   results={"profiler": "signal-delay sampler"})
    f = fired(run)["framework_overhead"]
    assert abs(f["share"] - 0.5) < 1e-6 and f["severity"] == "high"
    assert f["evidence"]["cpu_contention_share"] == 0.6


def test_host_time_in_the_users_own_python_gets_advice_about_that_code():
    """framework_overhead whose time the stack samples put in the user's files: the advice
    names the place and says to run it less often (a Keras batch hook: every N batches);
    small_problem leaves that time out of the framework's fixed cost."""
    def run(where: list[dict], share: float) -> dict[str, dict]:
        return fired(run_with([{"framework_overhead": 0.8, "forward": 0.1}] * 20, [10.0] * 20,
                              results={"user_python_share": share, "user_python_where": where,
                                       "user_python_samples": 200}))

    hook = run([{"where": "Logger.on_train_batch_end (train.py:12)", "share": 0.7}], 0.7)
    f = hook["framework_overhead"]
    assert f["evidence"]["user_python_where"][0] == {"where": "Logger.on_train_batch_end (train.py:12)",
                                                      "share": 0.7, "ms_per_step": 7.0}
    assert "`Logger.on_train_batch_end (train.py:12)` 7 ms" in f["recommendation"]
    assert "every N batches" in f["recommendation"] and "fix_traits" not in f
    assert "small_problem" not in hook  # 8 ms overhead less 7 ms of the user's: 1 ms, not above the maths
    loop = run([{"where": "<module> (train.py:40)", "share": 0.6}], 0.6)["framework_overhead"]
    assert "every N steps" in loop["recommendation"] and "every N batches" not in loop["recommendation"]
    # A little of the user's Python in a framework-bound step: the framework advice stays.
    tf_bound = run([{"where": "<module> (train.py:40)", "share": 0.1}], 0.1)
    assert "jit_compile" in tf_bound["framework_overhead"]["recommendation"]
    assert tf_bound["framework_overhead"]["evidence"]["user_python_share"] == 0.1
    assert "small_problem" in tf_bound


def test_a_keras_predict_line_holding_most_of_the_step_is_named_with_the_fix():
    def fired_with(lines: list[dict]) -> dict[str, dict]:
        return fired(run_with([{"framework_overhead": 0.8, "forward": 0.05}] * 20, [50.0] * 20,
                              results={"user_python_share": 0.0, "user_python_where": [], "user_lines": lines,
                                       "eager_share": 0.9}))

    predict = {"where": "<module> (loop.py:17)", "code": "pred = model.predict(x, verbose=0)", "share": 0.9}
    got = fired_with([predict, {"where": "<module> (loop.py:16)", "code": "loss = step(x)", "share": 0.05}])
    for rule in ("framework_overhead", "eager_execution", "small_problem"):
        f = got[rule]
        assert f["evidence"]["time_under_your_lines"][0] == {**predict, "ms_per_step": 45.0}
        assert f["recommendation"].startswith("45 ms of each step is under your line `pred = model.predict(x, verbose=0)`")
        assert "model(x, training=False)" in f["recommendation"] and "fix_traits" not in f
    # The same line holding little of the step, or a line that is not predict/evaluate: the usual advice.
    assert "model(x, training=False)" not in fired_with([{**predict, "share": 0.3}])["framework_overhead"]["recommendation"]
    other = fired_with([{**predict, "code": "loss = train_step(x)"}])["framework_overhead"]
    assert "jit_compile" in other["recommendation"] and other["evidence"]["time_under_your_lines"][0]["share"] == 0.9
