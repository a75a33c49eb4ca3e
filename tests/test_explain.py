"""Plain-words explanations say what the numbers say."""
from __future__ import annotations

from profilers.explain import explain_experiment, explain_run

NUMPY = {"step_ms": {"median": 0.009}, "gflops": {"compute": 0.5},
         "breakdown_ms": {"forward": 0.003, "backward": 0.003, "optimizer_update": 0.001,
                          "framework_overhead": 0.002, "input_wait": 0.0}}
EAGER = {"step_ms": {"median": 4.9}, "ops_per_step": 37, "dispatches_per_step": 37,
         "overhead_us_per_dispatch": 4.6e3 / 37,
         "breakdown_ms": {"forward": 0.05, "backward": 0.03, "optimizer_update": 0.02,
                          "framework_overhead": 4.6, "input_wait": 0.2}}


def test_overhead_bound_run_names_ops_and_the_baseline():
    text = explain_run("tf_eager", EAGER, ("numpy", NUMPY))
    assert text.startswith("tf_eager: 4.9 ms/step, of which 4.6 ms (94%) is framework overhead over 37 ops")
    assert "in 37 dispatches per step (≈124 µs each)" in text and "the maths takes 100 µs" in text
    assert "numpy does the whole step in 9 µs" in text


def test_a_loop_compiled_whole_is_one_dispatch_every_few_steps_never_zero():
    loop = {"step_ms": {"median": 0.0143}, "ops_per_step": 18.3, "dispatches_per_step": 0.1,
            "overhead_us_per_dispatch": 133.5,
            "breakdown_ms": {"forward": 0.0004, "backward": 0.0002, "optimizer_update": 0.0002,
                             "framework_overhead": 0.0134, "other": 0.0003}}
    text = explain_run("tf_graph_loop", loop)
    assert "in one dispatch every 10 steps (≈134 µs each)" in text and "0 dispatches" not in text


def test_xla_fused_maths_is_not_called_zero():
    xla = {"step_ms": {"median": 1.0}, "breakdown_ms": {"framework_overhead": 0.9, "other": 0.1}}
    text = explain_run("tf_xla", xla)
    assert "the maths takes 0" not in text and "XLA's fused kernels" in text


def test_compute_bound_run_compares_kernels():
    big = {"step_ms": {"median": 20.0}, "gflops": {"compute": 80.0}, "gemm_peak_gflops": 150.0,
           "breakdown_ms": {"forward": 9.0, "backward": 9.0, "optimizer_update": 0.5,
                            "framework_overhead": 1.5}}
    base = {"step_ms": {"median": 11.0}, "gflops": {"compute": 150.0},
            "breakdown_ms": {"forward": 5.0, "backward": 5.0, "framework_overhead": 1.0}}
    text = explain_run("tf_function", big, ("numpy", base))
    assert "mostly the maths (18.5 ms, 92%) at 80 GFLOP/s" in text
    assert "kernel against kernel (0.53× numpy's rate)" in text


def test_runs_without_breakdown_are_skipped():
    assert explain_experiment([("numpy", NUMPY), ("x", {"step_ms": {"median": 1.0}})], "numpy") == [
        explain_run("numpy", NUMPY, None)]


def test_overhead_that_is_mostly_the_users_python_says_so():
    res = {"breakdown_ms": {"framework_overhead": 12.0, "forward": 1.0, "backward": 1.0}, "step_ms": {"median": 16.0},
           "ops_per_step": 30, "dispatches_per_step": 1, "overhead_us_per_dispatch": 2000.0,
           "user_python_ms_per_step": 10.0, "user_python_where": [{"where": "Logger.on_train_batch_end (t.py:3)"}]}
    assert "(≈2e+03 µs each), 10 ms of it your own Python (Logger.on_train_batch_end (t.py:3))" in explain_run("script", res)
    res["user_python_ms_per_step"] = 0.5  # under a tenth of the overhead: not worth a clause
    assert "your own Python" not in explain_run("script", res)
