"""input_pipeline workload: every variant runs, the stall is measured, params are checked.

The TF tests share one module-scoped TensorFlow session and one tiny set of TFRecord shards.
No test asserts a timing of ours: the only time checks are lower bounds that follow from a
known ``time.sleep`` in a pipeline that has, by construction, no background thread.
"""
from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from profilers.errors import BadInput, UnknownName
from profilers.recorder import StepRecorder
from workloads import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
WL = WORKLOADS["input_pipeline"]
TINY = {"samples": "16", "batch_size": "4", "shards": "2", "image_size": "16", "epochs": "2",
        "shuffle_buffer": "4", "io_latency_ms": "0", "warmup_steps": "1", "seed": "3"}


def run_variant(variant: str, params: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=WL.warmup_steps(params))
    result = WL.run(variant, params, data, rec)
    return result, rec.finish()


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[dict[str, Any], Any]]:
    import tensorflow  # noqa: F401  (one import for the module)

    params = WL.resolve_params(TINY)
    data = WL.prepare(params)
    yield params, data
    data.cleanup()


@pytest.fixture(scope="module")
def tiny_results(tiny) -> dict[str, tuple[Any, dict[str, Any]]]:
    params, data = tiny
    return {v: run_variant(v, params, data) for v in WL.variants}


# -- every variant, tiny ---------------------------------------------------------------
@pytest.mark.tf
@pytest.mark.parametrize("variant", sorted(WL.variants))
def test_every_variant_runs_and_reports_its_stall(variant, tiny, tiny_results):
    params, _ = tiny
    result, tables = tiny_results[variant]
    steps, phases = tables["steps"], tables["phases"]
    assert len(steps) == WL.steps_for(variant, params) == 16 * 2 // 4
    assert list(steps["step"]) == list(range(len(steps)))
    assert list(steps["epoch"]) == [i * 4 // 16 for i in range(len(steps))]
    waits = phases[phases["phase"] == "input_wait"]
    assert list(waits["step"]) == list(range(len(steps)))  # one input_wait per step, in it
    share = result.extra["input_wait_share"]
    assert 0.0 <= share <= 1.0
    measured = waits[waits["step"] >= params["warmup_steps"]]["dur_us"] / 1e3
    assert result.extra["input_wait_ms_median"] == pytest.approx(float(measured.median()), rel=0.01, abs=0.01)
    assert math.isfinite(result.final_loss)
    assert steps["loss"].notna().all()


@pytest.mark.tf
def test_every_variant_computes_the_baselines_batches(tiny_results):
    """Same order, same augmentation: the loss of every step equals naive's."""
    base = tiny_results["naive"][1]["steps"]["loss"].to_numpy()
    for variant, (result, tables) in tiny_results.items():
        assert tables["steps"]["loss"].to_numpy() == pytest.approx(base, rel=1e-4), variant
        assert result.final_loss == pytest.approx(tiny_results["naive"][0].final_loss, rel=WL.loss_rtol)
    assert WL.baseline == "naive"


@pytest.mark.tf
def test_naive_turns_off_hidden_prefetch_and_all_keeps_defaults(tiny):
    import tensorflow as tf

    from workloads.input_pipeline import build_tfrecord_pipeline

    params, data = tiny
    naive = build_tfrecord_pipeline(tf, "naive", params, data.shard_paths).options()
    assert naive.experimental_optimization.inject_prefetch is False
    assert naive.experimental_optimization.map_parallelization is False
    assert naive.experimental_optimization.map_and_batch_fusion is False
    assert naive.autotune.enabled is False
    every = build_tfrecord_pipeline(tf, "all", params, data.shard_paths).options()
    assert every.experimental_optimization.inject_prefetch is None  # tf.data's default (on)


# -- the stall measurement against a known sleep --------------------------------------
@pytest.mark.tf
def test_naive_input_wait_is_at_least_the_io_sleep_per_record():
    """batch_size=1, shuffle_buffer=1, naive: each next() reads one record in the caller's
    thread, and each read sleeps io_latency_ms, so every input_wait is >= 20 ms."""
    params = WL.resolve_params({**TINY, "samples": "4", "shards": "2", "epochs": "1", "batch_size": "1",
                                "shuffle_buffer": "1", "io_latency_ms": "20", "warmup_steps": "0"})
    data = WL.prepare(params)
    try:
        result, tables = run_variant("naive", params, data)
    finally:
        data.cleanup()
    waits = tables["phases"].query("phase == 'input_wait'")["dur_us"] / 1e3
    assert len(waits) == 4
    assert waits.min() >= 19.9  # time.sleep(0.02) never returns early; same monotonic clock
    assert result.extra["input_wait_ms_median"] >= 19.9
    assert result.extra["input_wait_share"] > 0


@pytest.mark.tf
def test_artificial_dataset_preset_waits_at_least_the_guides_sleeps():
    params = WL.resolve_params({"preset": "artificial_dataset"})
    assert (params["samples"], params["epochs"], params["open_latency_ms"], params["io_latency_ms"],
            params["train_step_ms"]) == (3, 2, 30.0, 15.0, 10.0)
    result, tables = run_variant("naive", params, WL.prepare(params))
    steps, phases = tables["steps"], tables["phases"]
    assert len(steps) == 6 and list(steps["epoch"]) == [0, 0, 0, 1, 1, 1]
    waits = phases.query("phase == 'input_wait'").set_index("step")["dur_us"] / 1e3
    # First sample of an epoch: open (30) + read (15); the others: read (15). No prefetch.
    assert (waits.loc[[0, 3]] >= 44.9).all() and (waits.loc[[1, 2, 4, 5]] >= 14.9).all()
    assert ((steps.set_index("step")["wall_us"] / 1e3 - waits) >= 9.9).all()  # the 10 ms step sleep
    assert result.extra["total_ms"] >= 210 - 0.5  # the guide's arithmetic floor for naive


@pytest.mark.tf
def test_artificial_interleave_is_the_guides_as_it_stands():
    """range(2).interleave(ArtificialDataset): the sub-datasets get num_samples 0 and 1."""
    params = WL.resolve_params({"preset": "artificial_dataset", "open_latency_ms": "0",
                                "io_latency_ms": "0", "train_step_ms": "0"})
    result, tables = run_variant("interleave", params, WL.prepare(params))
    assert len(tables["steps"]) == WL.steps_for("interleave", params) == 2
    assert 0.0 <= result.extra["input_wait_share"] <= 1.0


@pytest.mark.tf
def test_cleanup_removes_the_shards():
    params = WL.resolve_params({**TINY, "samples": "2", "shards": "2"})
    data = WL.prepare(params)
    paths = [Path(p) for p in data.shard_paths]
    assert len(paths) == 2 and all(p.stat().st_size > 0 for p in paths)
    data.cleanup()
    assert not Path(data.tmpdir).exists()
    with pytest.raises(BadInput, match="shards are missing"):
        run_variant("naive", params, data)


# -- params and names (no TensorFlow) --------------------------------------------------
def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(UnknownName) as err:
        WL.variant("turbo")
    for name in ("naive", "prefetch", "parallel_map", "cache", "vectorized", "interleave", "all"):
        assert name in str(err.value)


def test_unknown_param_and_preset_list_the_valid_ones():
    with pytest.raises(UnknownName) as err:
        WL.resolve_params({"batchsize": "8"})
    assert "batch_size" in str(err.value) and "io_latency_ms" in str(err.value)
    with pytest.raises(UnknownName, match="artificial_dataset"):
        WL.resolve_params({"preset": "guide"})
    with pytest.raises(BadInput, match="tfrecord, artificial"):
        WL.resolve_params({"source": "disk"})


@pytest.mark.parametrize("raw, needle", [
    ({"preset": "artificial_dataset", "batch_size": "2"}, "batch_size=1"),
    ({"samples": "4", "epochs": "1", "batch_size": "8"}, "less than one batch"),
    ({"samples": "4", "shards": "5", "batch_size": "2"}, "lower shards"),
    ({"io_latency_ms": "-1"}, "below its minimum"),
])
def test_inconsistent_params_say_what_to_change(raw, needle):
    with pytest.raises(BadInput, match=needle):
        WL.resolve_params(raw)


def test_artificial_source_names_the_variants_it_has():
    params = WL.resolve_params({"preset": "artificial_dataset"})
    with pytest.raises(BadInput, match="naive, prefetch, interleave"):
        WL.run("cache", params, None, StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=0))


def test_importing_the_workload_does_not_import_tensorflow():
    code = ("import sys, workloads, workloads.input_pipeline; "
            "assert 'input_pipeline' in workloads.WORKLOADS; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
