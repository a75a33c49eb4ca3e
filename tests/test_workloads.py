"""linreg and mlp: every variant agrees with the NumPy baseline, and the recorded tables
have the shape the breakdown relies on.

The non-TF tests run in about a second. The TF tests (``-m tf``) import TensorFlow once
for the session (about 5 s) and run each workload's TF variants on tiny cases, grouped
so that few tests pay for tracing. No timing is asserted anywhere.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from profilers.analysis import loss_matches
from profilers.errors import BadInput, UnknownName
from profilers.recorder import StepRecorder
from workloads import WORKLOADS

LINREG_SMALL = {"m": 30, "n": 4, "steps": 20}
MLP_SMALL = {"samples": 256, "batch_size": 32, "epochs": 1}
PHASES = {"input_wait", "forward", "backward", "optimizer_update"}


def run_variant(workload: str, variant: str, params: dict[str, Any], data: Any = None
                ) -> tuple[Any, dict[str, pd.DataFrame], dict[str, Any]]:
    wl = WORKLOADS[workload]
    resolved = wl.resolve_params(params)
    if data is None:
        data = wl.prepare(resolved)
    rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=wl.warmup_steps(resolved))
    result = wl.run(variant, resolved, data, rec)
    return result, rec.finish(), resolved


def assert_matches_baseline(workload: str, loss: float, baseline: float, variant: str) -> None:
    wl = WORKLOADS[workload]
    assert np.isfinite(loss), variant
    assert loss_matches(loss, baseline, wl.loss_rtol, wl.loss_atol), (
        f"{workload}/{variant}: final loss {loss!r} vs numpy {baseline!r}")


def assert_steps_table(steps: pd.DataFrame, total: int, warmup: int, derived: bool = False) -> None:
    assert list(steps["step"]) == list(range(total))
    assert steps["warmup"].sum() == min(warmup, total)
    assert not steps["warmup"].iloc[min(warmup, total):].any()
    assert steps["warmup"].iloc[:warmup].all()
    assert (steps["wall_us"] >= 0).all()
    assert bool(steps["derived"].all()) is derived


# -- names and params -------------------------------------------------------------------------
@pytest.mark.parametrize("workload", ["linreg", "mlp"])
def test_unknown_param_lists_the_valid_ones(workload):
    wl = WORKLOADS[workload]
    with pytest.raises(UnknownName) as err:
        wl.resolve_params({"no_such_param": 1})
    assert "no_such_param" in str(err.value)
    assert all(name in err.value.hint for name in wl.params)


@pytest.mark.parametrize("workload", ["linreg", "mlp"])
def test_unknown_variant_lists_the_valid_ones(workload):
    wl = WORKLOADS[workload]
    params = wl.resolve_params(LINREG_SMALL if workload == "linreg" else MLP_SMALL)
    with pytest.raises(UnknownName) as err:
        wl.run("tf_nope", params, None, StepRecorder(t0_ns=0, warmup_steps=0))
    assert all(name in err.value.hint for name in wl.variants)
    assert wl.baseline in wl.variants


def test_mlp_rejects_contradictory_params():
    wl = WORKLOADS["mlp"]
    with pytest.raises(BadInput, match="momentum"):
        wl.resolve_params({"optimizer": "adam", "momentum": 0.9})
    with pytest.raises(BadInput, match="clip_norm"):
        wl.resolve_params({"clip_norm": 0})
    with pytest.raises(BadInput, match="batch_size"):
        wl.resolve_params({"samples": 10, "batch_size": 32})
    with pytest.raises(BadInput):
        wl.resolve_params({"optimizer": "rmsprop"})
    assert wl.resolve_params({"clip_norm": "none"})["clip_norm"] is None


@pytest.mark.parametrize("workload", ["linreg", "mlp"])
def test_presets_resolve(workload):
    wl = WORKLOADS[workload]
    for preset in wl.presets:
        assert wl.resolve_params({"preset": preset})


# -- data -----------------------------------------------------------------------------------
def test_mlp_data_is_seeded_and_batches_drop_the_remainder():
    wl = WORKLOADS["mlp"]
    params = wl.resolve_params({"samples": 100, "batch_size": 32, "epochs": 3})
    a, b = wl.prepare(params), wl.prepare(params)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.order, b.order)
    assert a.order.shape == (3, 3, 32) and wl.total_steps(params) == 9
    for epoch in a.order:  # each epoch: distinct samples, its own order
        assert len(np.unique(epoch)) == epoch.size
    assert not np.array_equal(a.order[0], a.order[1])
    assert a.x.dtype == np.float32 and 0 <= a.x.min() and a.x.max() <= 1
    assert len(np.unique(a.y.argmax(axis=1))) > 3, "the teacher should use several classes"
    other = wl.prepare(wl.resolve_params({"samples": 100, "batch_size": 32, "epochs": 3, "seed": 1}))
    assert not np.array_equal(a.x, other.x)


def test_seed003_schedule_keeps_lr_for_five_epochs_then_decays():
    wl = WORKLOADS["mlp"]
    params = wl.resolve_params({"samples": 64, "epochs": 7, "lr": 0.1, "schedule": "seed003"})
    lrs = wl.prepare(params).lr_per_epoch
    np.testing.assert_allclose(lrs[:5], 0.1, rtol=1e-7)
    np.testing.assert_allclose(lrs[5:], [0.1 * np.exp(-0.1), 0.1 * np.exp(-0.2)], rtol=1e-6)


def test_linreg_default_lr_is_stable_at_extreme_shapes():
    for m, n in ((3, 2), (3, 300), (2000, 300)):
        result, tables, _ = run_variant("linreg", "numpy", {"m": m, "n": n, "steps": 60})
        losses = tables["steps"]["loss"]
        assert losses.iloc[-1] < losses.iloc[0], (m, n)
        assert np.isfinite(result.final_loss)


# -- NumPy and pure-Python variants ---------------------------------------------------------
def test_linreg_cpu_variants_match_numpy_and_record_phases():
    wl = WORKLOADS["linreg"]
    params = wl.resolve_params(LINREG_SMALL)
    data = wl.prepare(params)
    base, base_tables, _ = run_variant("linreg", "numpy", LINREG_SMALL, data)
    for variant in ("python", "numpy_blas"):
        result, tables, _ = run_variant("linreg", variant, LINREG_SMALL, data)
        assert_matches_baseline("linreg", result.final_loss, base.final_loss, variant)
        np.testing.assert_allclose(tables["steps"]["loss"], base_tables["steps"]["loss"], rtol=1e-5)
    for tables in (base_tables, tables):
        assert_steps_table(tables["steps"], 20, params["warmup_steps"])
        phases = tables["phases"]
        assert set(phases["phase"]) == PHASES
        assert (phases.groupby("step")["phase"].nunique() == 4).all() and phases["step"].nunique() == 20
        per_step = phases.groupby("step")["dur_us"].sum()
        assert (per_step <= tables["steps"].set_index("step")["wall_us"] + 1e-6).all()
    assert base_tables["steps"]["loss"].iloc[-1] < base_tables["steps"]["loss"].iloc[0]


def test_mlp_numpy_records_every_step_and_learns():
    params = {"samples": 640, "batch_size": 32, "epochs": 2, "lr": 0.1}
    result, tables, resolved = run_variant("mlp", "numpy", params)
    assert_steps_table(tables["steps"], 40, resolved["warmup_steps"])
    assert list(tables["steps"]["epoch"]) == [0] * 20 + [1] * 20
    assert set(tables["phases"]["phase"]) == PHASES
    losses = tables["steps"]["loss"]
    assert losses.notna().all()
    assert result.final_loss < np.log(10), "two epochs at lr 0.1 should beat chance"


def test_record_block_context_records_derived_steps():
    rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=3)
    with rec.block(0, 3):
        pass
    with rec.block(3, 5, epoch=1):
        time.sleep(0.001)
    steps = rec.finish()["steps"]
    assert list(steps["step"]) == list(range(8)) and steps["derived"].all()
    assert list(steps["warmup"]) == [True] * 3 + [False] * 5
    assert list(steps["epoch"]) == [0] * 3 + [1] * 5
    assert steps["wall_us"].iloc[3:].nunique() == 1  # one block, one mean


# -- TensorFlow variants (one TF import for the session) --------------------------------------
@pytest.fixture(scope="session")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.tf
def test_linreg_tf_variants_match_numpy(tf):
    wl = WORKLOADS["linreg"]
    params = wl.resolve_params(LINREG_SMALL)
    data = wl.prepare(params)
    base, base_tables, _ = run_variant("linreg", "numpy", LINREG_SMALL, data)
    for variant in ("tf_eager", "tf_function", "tf_xla", "tf_graph_loop"):
        result, tables, _ = run_variant("linreg", variant, LINREG_SMALL, data)
        assert_matches_baseline("linreg", result.final_loss, base.final_loss, variant)
        np.testing.assert_allclose(tables["steps"]["loss"], base_tables["steps"]["loss"], rtol=1e-5,
                                   err_msg=variant)
        assert_steps_table(tables["steps"], 20, params["warmup_steps"],
                           derived=(variant == "tf_graph_loop"))
        if variant in ("tf_function", "tf_xla", "tf_graph_loop"):
            assert result.extra["traces"] == 1, f"{variant} retraced"
        phases = tables["phases"]
        expected = PHASES if variant == "tf_eager" else ({"input_wait"} if variant != "tf_graph_loop"
                                                         else set())
        assert set(phases["phase"]) == expected, variant
    # The XLA-compiled loop keeps only each block's last loss (XLA needs static shapes).
    result, tables, _ = run_variant("linreg", "tf_graph_loop_xla", LINREG_SMALL, data)
    assert_matches_baseline("linreg", result.final_loss, base.final_loss, "tf_graph_loop_xla")
    assert_steps_table(tables["steps"], 20, params["warmup_steps"], derived=True)
    kept = tables["steps"].dropna(subset=["loss"])
    np.testing.assert_allclose(kept["loss"], base_tables["steps"].set_index("step").loc[kept["step"], "loss"],
                               rtol=1e-5)
    assert result.extra["traces"] == 1, "tf_graph_loop_xla retraced"


MLP_CASES = {
    "sgd": MLP_SMALL,
    "momentum_clip_seed003": {"samples": 96, "batch_size": 32, "epochs": 6, "lr": 0.1,
                              "momentum": 0.9, "clip_norm": 0.5, "schedule": "seed003"},
    "adam_clip_spe3": {"samples": 128, "batch_size": 32, "epochs": 2, "optimizer": "adam",
                       "lr": 0.003, "clip_norm": 1.0, "steps_per_execution": 3},
}


@pytest.mark.tf
@pytest.mark.parametrize("case", sorted(MLP_CASES))
def test_mlp_tf_variants_match_numpy(tf, case):
    raw = MLP_CASES[case]
    wl = WORKLOADS["mlp"]
    params = wl.resolve_params(raw)
    data = wl.prepare(params)
    total = wl.total_steps(params)
    base, base_tables, _ = run_variant("mlp", "numpy", raw, data)
    base_losses = base_tables["steps"]["loss"]
    for variant in ("tf_eager", "tf_function", "tf_xla", "keras_fit"):
        result, tables, _ = run_variant("mlp", variant, raw, data)
        assert_matches_baseline("mlp", result.final_loss, base.final_loss, variant)
        steps = tables["steps"]
        blocks = variant == "keras_fit" and params["steps_per_execution"] > 1
        assert_steps_table(steps, total, params["warmup_steps"], derived=blocks)
        assert list(steps["epoch"]) == [e for e in range(params["epochs"])
                                        for _ in range(data.steps_per_epoch)]
        has_loss = steps["loss"].notna()
        if blocks:  # one loss per Keras call: the last step of each block (4 steps: 3 + 1)
            assert list(steps.loc[has_loss, "step"] % data.steps_per_epoch) == [2, 3] * params["epochs"]
        else:
            assert has_loss.all()
        np.testing.assert_allclose(steps.loc[has_loss, "loss"], base_losses[has_loss], rtol=1e-4,
                                   err_msg=f"{case}/{variant}")


@pytest.mark.tf
def test_numpy_optimizers_follow_keras_formulas(tf):
    """Three updates of Keras's SGD (with/without momentum) and Adam against the NumPy ones.

    The Adam case uses gradients near epsilon, where Keras's placement of epsilon (added
    to sqrt(v), not to the bias-corrected sqrt(v̂)) changes the update by far more than
    the tolerance.
    """
    from workloads.mlp import NumpyAdam, NumpySGD
    from workloads.tfcommon import keras_optimizer

    rng = np.random.default_rng(0)
    start = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    grads = [[(rng.standard_normal(p.shape) * scale).astype(np.float32) for p in start]
             for scale in (1.0, 1e-6, 0.3)]
    cases = [("sgd", 0.0, lambda ps: NumpySGD(ps, 0.1)), ("sgd", 0.9, lambda ps: NumpySGD(ps, 0.1, 0.9)),
             ("adam", 0.0, lambda ps: NumpyAdam(ps, 0.1))]
    for name, momentum, make in cases:
        mine = [p.copy() for p in start]
        np_opt = make(mine)
        variables = [tf.Variable(p) for p in start]
        k_opt = keras_optimizer(tf, name, 0.1, momentum)
        for g in grads:
            np_opt.apply(mine, g)
            k_opt.apply_gradients(zip([tf.constant(x) for x in g], variables))
        for v, p in zip(variables, mine):
            np.testing.assert_allclose(p, v.numpy(), rtol=2e-6, atol=1e-7, err_msg=f"{name} {momentum}")
