"""Step-time breakdown on the committed fixtures (tests/data/<scenario>/) and on small
synthetic tables: the sum invariant, golden comparisons, the event-name mapping.
Needs xprof for the trace fixtures, not TensorFlow; nothing here measures time.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profilers import analysis
from profilers import breakdown as bd
from profilers import xprof_tools as xt
from profilers.errors import BadInput, BadTable, TraceUnavailable
from profilers.model import CATEGORIES, RunProfile, validate_table

DATA = Path(__file__).resolve().parent / "data"
TRACE_SCENARIOS = sorted(p.name for p in DATA.iterdir() if any(p.glob("trace/plugins/profile/*/*.xplane.pb")))
ALL_SCENARIOS = sorted(p.name for p in DATA.iterdir() if (p / "golden").is_dir())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunProfile, pd.DataFrame | None]]:
    """Every fixture run (a copy) with its trace events (None without a capture)."""
    root = tmp_path_factory.mktemp("runs")
    out: dict[str, tuple[RunProfile, pd.DataFrame | None]] = {}
    for name in ALL_SCENARIOS:
        shutil.copytree(DATA / name, root / name, ignore=shutil.ignore_patterns("golden"))
        run = RunProfile.read(root / name)
        xplane = run.xplane_path()
        out[name] = (run, xt.trace_events(xplane) if xplane else None)
    return out


def _breakdown(runs: dict, name: str) -> pd.DataFrame:
    run, events = runs[name]
    if events is None:
        return bd.breakdown_from_phases(run.table("steps"), run.table("phases"))
    return bd.breakdown_from_trace(run.table("steps"), events, run.table("phases"))


def _wide(b: pd.DataFrame) -> pd.DataFrame:
    return b.pivot(index="step", columns="category", values="ms")[list(CATEGORIES)]


# -- invariants and goldens -------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_categories_add_up_to_the_step_wall(runs: dict, name: str) -> None:
    b = _breakdown(runs, name)
    validate_table("breakdown", b)
    steps = runs[name][0].table("steps")
    bd.check_breakdown(b, steps)
    wide = _wide(b)
    wall_ms = steps.set_index("step").loc[wide.index, "wall_us"] / 1e3
    np.testing.assert_allclose(wide.sum(axis=1), wall_ms, rtol=1e-9)
    assert (wide.to_numpy() >= 0).all()
    assert set(b["category"]) == set(CATEGORIES)


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_breakdown_matches_golden(runs: dict, name: str) -> None:
    got = _breakdown(runs, name).reset_index(drop=True)
    want = pd.read_csv(DATA / name / "golden" / "breakdown.csv")
    assert got["step"].tolist() == want["step"].tolist()
    assert got["category"].astype(str).tolist() == want["category"].tolist()
    np.testing.assert_allclose(got["ms"], want["ms"], rtol=1e-9, atol=1e-12)
    summary = json.loads((DATA / name / "golden" / "summary.json").read_text())
    window = analysis.scaled_breakdown(got, None)["window_ms"]
    assert window == pytest.approx(summary["breakdown_window_ms"], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", TRACE_SCENARIOS)
def test_ops_per_step_matches_golden(runs: dict, name: str) -> None:
    run, events = runs[name]
    got = bd.ops_per_step(run.table("steps"), events)
    want = pd.read_csv(DATA / name / "golden" / "ops_per_step.csv")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    summary = json.loads((DATA / name / "golden" / "summary.json").read_text())
    measured = set(run.table("steps").loc[~run.table("steps")["warmup"], "step"])
    assert float(got.loc[got["step"].isin(measured), "dispatches"].median()) == \
        pytest.approx(summary["dispatches_per_step"], rel=1e-9)


def test_only_profiled_steps_with_markers_are_broken_down(runs: dict) -> None:
    run, events = runs["tf_function"]
    steps = run.table("steps")
    b = _breakdown(runs, "tf_function")
    assert sorted(set(b["step"])) == sorted(steps.loc[steps["in_profile_window"], "step"])
    # A step whose marker is missing is left out, not guessed.
    dropped = events[~(events["marker"] & (events["step"] == 5))]
    b2 = bd.breakdown_from_trace(steps, dropped, run.table("phases"))
    assert 5 not in set(b2["step"]) and 4 in set(b2["step"])
    no_markers = events[~events["marker"]]
    with pytest.raises(TraceUnavailable, match="no step markers"):
        bd.breakdown_from_trace(steps, no_markers, run.table("phases"))


# -- what each variant looks like -------------------------------------------------------------
def test_tf_eager_is_dominated_by_framework_overhead(runs: dict) -> None:
    wide = _wide(_breakdown(runs, "tf_eager"))
    assert (wide["framework_overhead"] > wide.drop(columns="framework_overhead").max(axis=1)).all()
    for cat in ("input_wait", "forward", "backward", "optimizer_update"):
        assert (wide[cat] > 0).all(), cat
    assert (wide["compile_trace"] == 0).all() and (wide["host_device_transfer"] == 0).all()
    run, events = runs["tf_eager"]
    ops = bd.ops_per_step(run.table("steps"), events)
    assert (ops["eager_ops"] >= 30).all() and (ops["function_calls"] == 0).all()  # tape + SGD at 20x3


def test_tf_eager_without_compute_phases_puts_kernels_in_other(runs: dict) -> None:
    run, events = runs["tf_eager"]
    phases = run.table("phases")
    only_input = phases[phases["phase"] == "input_wait"]
    with_phases = _wide(_breakdown(runs, "tf_eager"))
    without = _wide(bd.breakdown_from_trace(run.table("steps"), events, only_input))
    compute = ["forward", "backward", "optimizer_update"]
    assert (without[compute] == 0).all().all()
    np.testing.assert_allclose(without["other"], with_phases[compute + ["other"]].sum(axis=1))
    np.testing.assert_allclose(without["framework_overhead"], with_phases["framework_overhead"])


@pytest.mark.parametrize("name", ["tf_function", "tf_graph_loop", "keras_fit"])
def test_graph_ops_are_attributed_by_name_scope(runs: dict, name: str) -> None:
    wide = _wide(_breakdown(runs, name))
    for cat in ("forward", "backward", "optimizer_update"):
        assert (wide[cat] > 0).all(), cat
    assert (wide["compile_trace"] == 0).all()


def test_tf_function_first_call_is_compile_trace(runs: dict) -> None:
    wide = _wide(_breakdown(runs, "tf_function_cold"))
    first, second = wide.index[0], wide.index[1]
    assert wide.loc[first, "compile_trace"] > 0.5 * wide.loc[first].sum()
    assert wide.loc[second, "compile_trace"] == 0


def test_xla_compile_and_constant_folding_are_compile_trace(runs: dict) -> None:
    cold = _wide(_breakdown(runs, "tf_xla_cold"))
    first = cold.index[0]
    assert cold.loc[first, "compile_trace"] > 0.5 * cold.loc[first].sum()
    # TF kernels that run inside the XLA launch (constant folding) belong to the compile.
    assert (cold[["forward", "backward", "optimizer_update"]] == 0).all().all()
    warm = _wide(_breakdown(runs, "tf_xla"))
    assert (warm["compile_trace"] == 0).all()
    # XLA fuses across scopes: HLO op time is "other".
    assert (warm["other"] > 0).all() and (warm[["forward", "backward", "optimizer_update"]] == 0).all().all()


def test_graph_loop_steps_share_their_block(runs: dict) -> None:
    run, events = runs["tf_graph_loop"]
    wide = _wide(_breakdown(runs, "tf_graph_loop"))
    assert len(wide) == 5
    assert (wide.nunique() == 1).all()
    ops = bd.ops_per_step(run.table("steps"), events)
    assert ops["function_calls"].tolist() == [pytest.approx(1 / 5)] * 5
    assert (ops["graph_ops"] > 10).all()


def test_numpy_phases(runs: dict) -> None:
    run, _ = runs["numpy"]
    b = _breakdown(runs, "numpy")
    steps = run.table("steps")
    assert sorted(set(b["step"])) == sorted(steps.loc[~steps["warmup"], "step"])
    wide = _wide(b)
    assert (wide[["host_device_transfer", "compile_trace", "other"]] == 0).all().all()
    phases = run.table("phases")
    fwd = phases[phases["phase"] == "forward"].set_index("step")["dur_us"] / 1e3
    np.testing.assert_allclose(wide["forward"], fwd.loc[wide.index])


# -- synthetic tables -----------------------------------------------------------------------------
def _steps(rows: list[tuple[int, float, float]], *, derived: bool = False, window: bool = True) -> pd.DataFrame:
    return validate_table("steps", pd.DataFrame({
        "step": [r[0] for r in rows], "epoch": 0, "start_us": [r[1] for r in rows],
        "wall_us": [r[2] for r in rows], "warmup": False, "derived": derived,
        "in_profile_window": window, "loss": np.nan}))


def _phases(rows: list[tuple[int, str, float, float]]) -> pd.DataFrame:
    return validate_table("phases", pd.DataFrame(rows, columns=["step", "phase", "start_us", "dur_us"]))


def _events(rows: list[dict]) -> pd.DataFrame:
    base = {"pid": 1, "tid": 1, "process": "/host:CPU", "thread": "python", "long_name": None, "step": None,
            "group_id": None, "marker": False, "tf_op": False, "hlo_op": False, "eager_op": None,
            "is_func": False, "function_call": None}
    df = pd.DataFrame([{**base, **r} for r in rows])
    for c in ("process", "thread", "name", "long_name", "eager_op", "function_call"):
        df[c] = df[c].astype("category")
    for c in ("step", "group_id"):
        df[c] = df[c].astype("Int64")
    return xt.conform("events", df)


def _marker(step: int, ts: float, dur: float) -> dict:
    return {"name": f"train {step}", "ts_us": ts, "dur_us": dur, "step": step, "marker": True}


def test_concurrent_ops_on_two_threads_share_the_instant() -> None:
    steps = _steps([(0, 1000.0, 100.0)])
    events = _events([
        _marker(0, 0.0, 100.0),
        {"name": "MatMul", "long_name": "forward/MatMul:MatMul", "tf_op": True, "tid": 2, "thread": "tf_Compute/1",
         "ts_us": 10.0, "dur_us": 40.0},
        {"name": "MatMul", "long_name": "gradient_tape/forward/MatMul/MatMul:MatMul", "tf_op": True, "tid": 3,
         "thread": "tf_Compute/2", "ts_us": 30.0, "dur_us": 40.0},
    ])
    wide = _wide(bd.breakdown_from_trace(steps, events))
    # forward alone 10..30, both 30..50 (split), backward alone 50..70.
    assert wide.loc[0, "forward"] == pytest.approx(0.030)
    assert wide.loc[0, "backward"] == pytest.approx(0.030)
    assert wide.loc[0, "framework_overhead"] == pytest.approx(0.040)


def test_event_name_mapping() -> None:
    steps = _steps([(0, 0.0, 1000.0)])
    events = _events([
        _marker(0, 0.0, 1000.0),
        {"name": "tf.function-graph_building", "ts_us": 10.0, "dur_us": 100.0},
        # An op inside the tracing still counts as tracing: compile outranks ops.
        {"name": "Mul", "long_name": "forward/Mul:Mul", "tf_op": True, "ts_us": 20.0, "dur_us": 10.0},
        {"name": "IteratorGetNextOp::DoCompute", "tid": 4, "thread": "tf_data_iterator_get_next/7",
         "ts_us": 200.0, "dur_us": 50.0},
        {"name": "_Send", "long_name": "forward/_send_x:_Send", "tf_op": True, "tid": 2, "thread": "tf_Compute/1",
         "ts_us": 300.0, "dur_us": 20.0},
        {"name": "MemcpyH2D", "pid": 2, "tid": 9, "process": "/device:GPU:0", "thread": "stream 7",
         "ts_us": 330.0, "dur_us": 20.0},
        {"name": "EagerCopyToDevice", "ts_us": 360.0, "dur_us": 10.0},  # a real copy: the run has a GPU
        {"name": "FusionCompiler::Compile", "tid": 5, "thread": "tf_xla-cpu-codegen/3", "ts_us": 400.0,
         "dur_us": 30.0},
        {"name": "Custom", "long_name": "model/Custom:Custom", "tf_op": True, "tid": 2, "thread": "tf_Compute/1",
         "ts_us": 500.0, "dur_us": 40.0},
        {"name": "step_fn", "function_call": "traced-nonXla", "ts_us": 600.0, "dur_us": 100.0},
        {"name": "AddV2", "long_name": "optimizer_update/AddV2:AddV2", "tf_op": True, "tid": 2,
         "thread": "tf_Compute/1", "ts_us": 650.0, "dur_us": 10.0},
    ])
    wide = _wide(bd.breakdown_from_trace(steps, events)).loc[0]
    assert wide["compile_trace"] == pytest.approx((100 + 30 + 90) / 1e3)
    assert wide["input_wait"] == pytest.approx(0.050)
    assert wide["host_device_transfer"] == pytest.approx(0.050)
    assert wide["other"] == pytest.approx(0.040)
    assert wide["optimizer_update"] == pytest.approx(0.010)
    assert wide["forward"] == 0
    assert wide.sum() == pytest.approx(1.0)



def test_unscoped_ops_before_the_steps_first_backward_op_are_its_forward_pass() -> None:
    """A user's own step names no scope: what runs before its first gradient op is the
    forward pass and the loss; what runs after it stays other. Each step on its own."""
    def op(name: str, ts: float, dur: float = 10.0) -> dict:
        return {"name": name.rpartition(":")[2], "long_name": name, "tf_op": True, "tid": 2,
                "thread": "tf_Compute/1", "ts_us": ts, "dur_us": dur}

    steps = _steps([(0, 0.0, 200.0), (1, 200.0, 200.0), (2, 400.0, 200.0)])
    events = _events([
        _marker(0, 0.0, 200.0), _marker(1, 200.0, 200.0), _marker(2, 400.0, 200.0),
        op("MatMul:MatMul", 10.0), op("Mean:Mean", 30.0),                 # step 0: forward + loss
        op("gradient_tape/MatMul/MatMul:MatMul", 50.0),
        op("AssignSubVariableOp:AssignSubVariableOp", 80.0),              # after backward: other
        op("MatMul_1:MatMul", 210.0, 20.0),                               # step 1: forward
        op("gradients/Mean_grad/Tile:Tile", 250.0),
        op("MatMul_2:MatMul", 410.0, 30.0),                               # step 2: no backward at all
    ])
    wide = _wide(bd.breakdown_from_trace(steps, events))
    assert wide.loc[0, "forward"] == pytest.approx(0.020) and wide.loc[0, "other"] == pytest.approx(0.010)
    assert wide.loc[1, "forward"] == pytest.approx(0.020) and wide.loc[1, "other"] == 0
    assert wide.loc[2, "forward"] == 0 and wide.loc[2, "other"] == pytest.approx(0.030)
    assert (wide["backward"] == [0.010, 0.010, 0.0]).all()


def test_a_gradient_op_without_inputs_run_first_does_not_end_the_forward_pass() -> None:
    """A graph runs ``gradient_tape/Tile`` of the constant upstream gradient as soon as the
    step starts (seen in a compiled step): the forward pass still ends where the backward
    pass has begun more than BACKWARD_START_SHARE of its time."""
    def op(name: str, ts: float, dur: float, tid: int = 2) -> dict:
        return {"name": name.rpartition(":")[2], "long_name": name, "tf_op": True, "tid": tid,
                "thread": f"tf_Compute/{tid}", "ts_us": ts, "dur_us": dur}

    steps = _steps([(0, 0.0, 1000.0)])
    events = _events([
        _marker(0, 0.0, 1000.0),
        op("gradient_tape/Tile:Tile", 0.0, 4.0, tid=3),           # no data input: runs first
        op("MatMul:MatMul", 10.0, 200.0), op("Mean:Mean", 215.0, 5.0),
        op("gradient_tape/Mul:Mul", 225.0, 5.0),                   # the loss' gradient
        op("gradient_tape/MatMul/MatMul:MatMul", 235.0, 400.0),
        op("mul:Mul", 640.0, 20.0),                                # the update: after backward
    ])
    wide = _wide(bd.breakdown_from_trace(steps, events)).loc[0]
    assert bd.BACKWARD_START_SHARE * 409.0 > 4.0 + 5.0
    assert wide["forward"] == pytest.approx(0.205)
    assert wide["other"] == pytest.approx(0.020)
    assert wide["backward"] == pytest.approx(0.409)

def test_function_calls_are_overhead_and_eager_kernels_are_ops() -> None:
    steps = _steps([(0, 0.0, 500.0)])
    events = _events([
        _marker(0, 0.0, 500.0),
        {"name": "EagerExecute", "eager_op": "MatMul", "ts_us": 10.0, "dur_us": 100.0},
        {"name": "KernelAndDeviceFunc::Run", "ts_us": 50.0, "dur_us": 20.0},
        {"name": "EagerExecute", "eager_op": "__inference_f_1", "is_func": True, "ts_us": 200.0, "dur_us": 200.0},
        {"name": "KernelAndDeviceFunc::Run", "ts_us": 210.0, "dur_us": 180.0},
        {"name": "Square", "long_name": "forward/Square:Square", "tf_op": True, "tid": 2, "thread": "tf_Compute/1",
         "ts_us": 250.0, "dur_us": 30.0},
    ])
    phases = _phases([(0, "backward", 0.0, 150.0)])
    wide = _wide(bd.breakdown_from_trace(steps, events, phases)).loc[0]
    assert wide["backward"] == pytest.approx(0.020)  # the eager kernel, scoped by the phase
    assert wide["forward"] == pytest.approx(0.030)  # the graph op; the call around it is not compute
    assert wide["framework_overhead"] == pytest.approx(0.450)
    ops = bd.ops_per_step(steps, events)
    assert ops[["eager_ops", "function_calls", "graph_ops", "dispatches"]].iloc[0].tolist() == [1, 1, 1, 2]


def test_op_category_rules() -> None:
    assert bd.op_category("gradient_tape/forward/MatMul/MatMul:MatMul") == "backward"
    assert bd.op_category("while/body/_1/while/forward/sub:Sub") == "forward"
    assert bd.op_category("while/body/_1/gradient_tape/while/forward/Mul:Mul") == "backward"
    assert bd.op_category("StatefulPartitionedCall/sgd_1_1/Mul:Mul") == "optimizer_update"
    assert bd.op_category("StatefulPartitionedCall/compile_loss/mse/Mean:Mean") == "forward"
    assert bd.op_category("forward/IteratorGetNext:IteratorGetNext") == "input_wait"
    assert bd.op_category("forward/_send_x_0:_Send") == "host_device_transfer"
    assert bd.op_category("model/dense/MatMul", "MatMul") is None
    assert bd.op_category("model/dense/MatMul", "MatMul", rules=[(r"^model$", "forward")]) == "forward"
    with pytest.raises(BadInput, match="unknown category"):
        bd.op_category("x:Y", rules=[(r"x", "gpu_time")])


def test_phases_breakdown_overhead_and_overlap() -> None:
    steps = _steps([(0, 0.0, 100.0), (1, 100.0, 100.0)])
    phases = _phases([(0, "input_wait", 0.0, 10.0), (0, "forward", 10.0, 50.0), (0, "backward", 40.0, 40.0),
                      (1, "forward", 100.0, 30.0), (1, "forward", 110.0, 30.0)])
    wide = _wide(bd.breakdown_from_phases(steps, phases))
    assert wide.loc[0, ["input_wait", "forward", "backward", "framework_overhead"]].tolist() == \
        pytest.approx([0.010, 0.040, 0.030, 0.020])
    assert wide.loc[1, "forward"] == pytest.approx(0.040)  # overlapping same-category spans merge
    assert wide.loc[1, "framework_overhead"] == pytest.approx(0.060)
    with pytest.raises(BadTable, match="'loss'"):
        bd.breakdown_from_phases(steps, _phases([(0, "loss", 0.0, 1.0)]))


def test_warmup_steps_are_left_out_of_the_phase_breakdown() -> None:
    steps = _steps([(0, 0.0, 100.0), (1, 100.0, 100.0)])
    steps["warmup"] = [True, False]
    b = bd.breakdown_from_phases(steps, _phases([(1, "forward", 100.0, 50.0)]))
    assert set(b["step"]) == {1}
    assert set(bd.breakdown_from_phases(steps, _phases([]), include_warmup=True)["step"]) == {0, 1}


def test_check_breakdown_catches_violations() -> None:
    steps = _steps([(0, 0.0, 1000.0)])
    good = bd.breakdown_from_phases(steps, _phases([(0, "forward", 0.0, 500.0)]))
    bd.check_breakdown(good, steps)
    off = good.copy()
    off.loc[off["category"] == "forward", "ms"] += 0.06  # 6% of the 1 ms wall
    with pytest.raises(BadTable, match="add up to"):
        bd.check_breakdown(off, steps)
    within = good.copy()
    within.loc[within["category"] == "forward", "ms"] += 0.04
    bd.check_breakdown(within, steps)
    neg = good.copy()
    neg.loc[neg["category"] == "other", "ms"] = -0.1
    with pytest.raises(BadTable, match="negative"):
        bd.check_breakdown(neg, steps)
    unknown = good.copy()
    unknown.loc[0, "category"] = "gpu_time"
    with pytest.raises(BadTable, match="Unknown breakdown categories"):
        bd.check_breakdown(unknown, steps)


def test_phase_breakdown_has_every_category() -> None:
    steps = _steps([(0, 0.0, 100.0), (1, 100.0, 300.0), (2, 400.0, 200.0)])
    b = bd.breakdown_from_phases(steps, _phases([(1, "forward", 100.0, 100.0)]))
    s = analysis.scaled_breakdown(b, None)["window_ms"]
    assert list(s) == list(CATEGORIES)
    assert s["forward"] == pytest.approx(0.1 / 3) and s["cpu_contention"] == 0.0


def test_achieved_gflops() -> None:
    summary = {"forward": 1.0, "backward": 2.0, "optimizer_update": 0.0}
    g = bd.achieved_gflops(summary, {"forward": 2e6, "backward": 4e6, "optimizer_update": 1e3})
    assert g["forward"] == pytest.approx(2.0) and g["backward"] == pytest.approx(2.0)
    assert np.isnan(g["optimizer_update"])
    assert g["compute"] == pytest.approx((6e6 + 1e3) / 3e-3 / 1e9)
    with pytest.raises(BadInput):
        bd.achieved_gflops(summary, {"matmul": 1.0})


def test_gemm_peak_probe_is_cached_per_dtype_and_threads_and_keeps_the_highest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from profilers import environment

    first = environment.gemm_peak(tmp_path, dtype="float32", n=64, min_time_s=0.005)
    assert first["gflops"] > 0 and first["dtype"] == "float32" and not first["cached"]
    cache = json.loads((tmp_path / "gemm_peak.json").read_text())
    (key,) = cache
    assert "float32" in key and f"threads={first['threads']}" in key

    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured again although cached")

    monkeypatch.setattr(np.random, "default_rng", no_probe)
    again = environment.gemm_peak(tmp_path, dtype="float32", n=64)
    assert again["cached"] and again["gflops"] == first["gflops"]
    monkeypatch.undo()
    # A busy machine measures less: the stored peak never goes down.
    cache[key]["gflops"] = first["gflops"] * 1000
    (tmp_path / "gemm_peak.json").write_text(json.dumps(cache))
    refreshed = environment.gemm_peak(tmp_path, dtype="float32", n=64, min_time_s=0.005, refresh=True)
    assert refreshed["gflops"] == first["gflops"] * 1000
    other = environment.gemm_peak(tmp_path, dtype="float64", n=64, min_time_s=0.005)
    assert len(json.loads((tmp_path / "gemm_peak.json").read_text())) == 2 and other["dtype"] == "float64"


def test_breakdown_for_run_picks_the_source(runs: dict) -> None:
    run, _ = runs["tf_function"]
    via_trace = bd.breakdown_for_run(run.table("steps"), run.table("phases"), run.xplane_path())
    pd.testing.assert_frame_equal(via_trace, _breakdown(runs, "tf_function"))
    nrun, _ = runs["numpy"]
    via_phases = bd.breakdown_for_run(nrun.table("steps"), nrun.table("phases"))
    pd.testing.assert_frame_equal(via_phases, _breakdown(runs, "numpy"))
