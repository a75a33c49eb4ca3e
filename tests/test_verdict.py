"""The verdict sentence (``profilers.verdict``) from stored analyses: ratio to NumPy, the
cause with its number, the measured best fix and its gain, and what to run when nothing
measured it. Pure: manifests in, a sentence out.
"""
from __future__ import annotations

from profilers.verdict import experiment_verdict


def run(variant: str, median_ms: float | None, status: str = "ok", **results) -> dict:
    res = {"baseline_variant": "numpy", **results}
    if median_ms is not None:
        res["step_ms"] = {"median": median_ms, "p10": median_ms, "p90": median_ms}
    return {"variant": variant, "status": status, "run_id": f"r-{variant}", "results": res,
            "error": None if status == "ok" else "boom"}


def test_ratio_cause_with_its_number_and_the_measured_best_fix():
    v = experiment_verdict([
        run("numpy", 0.009),
        run("tf_eager", 1.017, breakdown_ms={"framework_overhead": 0.904, "forward": 0.113},
            overhead_us_per_dispatch=226.0, dispatches_per_step=4),
        run("tf_graph_loop_xla", 0.0027)])
    assert v.subject == "tf_eager"
    assert v.text.startswith("TF eager is 113× slower than NumPy here: 226 µs of fixed cost per dispatch × 4")
    assert "Measured best fix: the whole loop under XLA, 377× faster than TF eager and 3.3× faster than NumPy." in v.text
    assert v.suggest_variants == []


def test_nothing_measured_says_so_and_offers_the_run():
    v = experiment_verdict([run("numpy", 0.01), run("tf_eager", 1.0, unavailable={"breakdown_ms": "not profiled"})],
                           usable_variants=["numpy", "tf_eager", "tf_function", "tf_xla", "tf_graph_loop_xla"])
    assert "the cause was not measured (not profiled)" in v.text
    assert "No fix was measured here: run numpy, tf_eager, tf_function, tf_xla, tf_graph_loop_xla" in v.text
    assert v.suggest_variants == ["numpy", "tf_eager", "tf_function", "tf_xla", "tf_graph_loop_xla"]


def test_a_measured_counterfactual_counts_as_the_fix():
    findings = {"r-tf_eager": [{"rule": "eager_execution", "counterfactual": {
        "variant": "tf_function", "median_ms": 0.25, "measured": True}}]}
    v = experiment_verdict([run("numpy", 0.01), run("tf_eager", 1.0)], findings)
    assert "Measured best fix: tf.function, 4.0× faster than TF eager" in v.text


def test_no_baseline_failed_subject_and_no_tf():
    assert "no finished NumPy run" in experiment_verdict([run("tf_eager", 1.0)]).text
    failed = experiment_verdict([run("numpy", 0.01), run("tf_eager", None, status="failed")],
                                usable_variants=["numpy", "tf_eager", "tf_function"])
    assert failed.text.startswith("No TensorFlow step time was measured: tf_eager did not finish")
    toy = experiment_verdict([run("ok", 1.0, baseline_variant="ok"), run("ok2", 0.5, baseline_variant="ok")])
    assert toy.text.startswith("ok2 is 2.0× faster than ok here")


def test_faster_than_numpy_reads_as_faster():
    v = experiment_verdict([run("numpy", 0.01), run("tf_graph_loop_xla", 0.005)])
    assert v.text.startswith("the whole loop under XLA is 2.0× faster than NumPy here")


def test_a_counterfactual_pointing_at_numpy_is_not_a_tf_fix():
    findings = {"r-tf_eager": [{"rule": "small_problem", "counterfactual": {
        "variant": "numpy", "median_ms": 0.01, "measured": True}}]}
    v = experiment_verdict([run("numpy", 0.01), run("tf_eager", 1.0)], findings,
                           usable_variants=["numpy", "tf_eager", "tf_function"])
    assert "Measured best fix" not in v.text and "No fix was measured here: run numpy, tf_eager, tf_function" in v.text


def test_a_step_mostly_in_the_users_own_python_is_said_to_be():
    from profilers.verdict import cause

    results = {"breakdown_ms": {"framework_overhead": 12.0, "forward": 1.0}, "overhead_us_per_dispatch": 500.0,
               "dispatches_per_step": 2, "user_python_ms_per_step": 10.0,
               "user_python_where": [{"where": "Logger.on_train_batch_end (train.py:12)", "share": 0.7}]}
    assert cause(results, None) == ("10 ms of each step is your own Python, mostly Logger.on_train_batch_end "
                                    "(train.py:12), of 12 ms of host time outside ops")
    results["user_python_ms_per_step"] = 1.0  # a little of it: the per-dispatch cost is the cause
    assert cause(results, None).startswith("500 µs of fixed cost per dispatch × 2 dispatches")
