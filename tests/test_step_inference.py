"""Step inference on synthetic trace events (no TensorFlow, no xprof): custom loops with
and without an iterator, eager loops, retracing calls, noise, and no loop at all."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from profilers import step_inference as si
from profilers.xprof_tools import conform

PID, TID = 1, 100


class Trace:
    """Builds an events table on one dispatch thread, left to right in time."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.t = 0.0

    def _row(self, name: str, ts: float, dur: float, tid: int = TID, **kw) -> None:
        self.rows.append({"pid": PID, "tid": tid, "process": "/host:CPU",
                          "thread": kw.pop("thread", "python"), "name": name, "long_name": pd.NA,
                          "ts_us": ts, "dur_us": dur, "step": pd.NA, "group_id": pd.NA,
                          "marker": False, "tf_op": kw.pop("tf_op", False), "hlo_op": False,
                          "eager_op": kw.pop("eager_op", pd.NA), "is_func": kw.pop("is_func", False),
                          "function_call": kw.pop("function_call", pd.NA)})

    def eager(self, op: str, dur: float = 40.0, gap: float = 10.0) -> "Trace":
        self._row("TFE_Py_FastPathExecute_C", self.t, dur)
        self._row("EagerExecute", self.t + 5, dur - 10, eager_op=op)
        self.t += dur + gap
        return self

    def call(self, fn: str, dur: float = 300.0, traced: bool = False, gap: float = 10.0) -> "Trace":
        self._row(fn, self.t, dur, function_call=("traced" if traced else "notTraced") + "-nonXla")
        if traced:  # eager ops while tracing sit inside the call
            self._row("EagerExecute", self.t + 20, 30, eager_op="_EagerConst")
        self._row("EagerExecute", self.t + dur - 60, 50, eager_op=f"__inference_{fn}_1", is_func=True)
        self.t += dur + gap
        return self

    def idle(self, us: float) -> "Trace":
        self.t += us
        return self

    def events(self) -> pd.DataFrame:
        from profilers.xprof_tools import empty_tool_table

        return conform("events", pd.DataFrame(self.rows)) if self.rows else empty_tool_table("events")


def test_custom_loop_steps_start_at_the_iterator_fetch_and_noise_is_tolerated():
    tr = Trace().eager("Fill").eager("VarHandleOp").eager("AssignVariableOp")  # set-up
    fetch_times = []
    for i in range(30):
        fetch_times.append(tr.t)
        tr.eager("IteratorGetNext", dur=500).call("train_step", traced=(i == 0))
        if i % 7 == 6:
            tr.eager("Mean")  # occasional logging op
    cut = si.infer_steps(tr.events())
    assert cut.method == "period"
    assert cut.details["step_starts_at"] == "iterator fetch"
    assert cut.details["body"][:2] == ["IteratorGetNext", "train_step"]
    assert cut.count == 29  # 30 fetches, the last step incomplete
    np.testing.assert_allclose(cut.start_us, fetch_times[:-1])
    np.testing.assert_allclose(cut.end_us, fetch_times[1:])


def test_eager_loop_steps_end_after_the_last_variable_update():
    body = ["ReadVariableOp", "MatMul", "Sub", "Mean", "Mul", "MatMul", "AssignSubVariableOp",
            "Mul", "AssignSubVariableOp"]
    tr = Trace().eager("_EagerConst").eager("VarHandleOp")
    starts = []
    for i in range(25):
        if i == 0:
            # The first step also creates optimizer slots: those dispatches come before the
            # repeating body, so step 0 starts at its first body op.
            tr.eager("VarHandleOp").eager("AssignVariableOp")
        starts.append(tr.t)
        for op in body:
            tr.eager(op)
        tr.idle(50)
    cut = si.infer_steps(tr.events())
    assert cut.details["step_starts_at"] == "after the last variable update"
    assert cut.details["body"][0] == "ReadVariableOp" and cut.details["body"][-1] == "AssignSubVariableOp"
    assert cut.count == 24
    np.testing.assert_allclose(cut.start_us, starts[:-1])


def test_retracing_calls_are_the_steps_and_set_up_repeats_are_ignored():
    tr = Trace()
    for _ in range(4):
        tr.eager("_EagerConst")  # repeated set-up dispatches before the loop
    tr.eager("AssignVariableOp")
    for i in range(20):
        tr.call("train_step", dur=25_000, traced=True)
    cut = si.infer_steps(tr.events())
    assert cut.details["body"] == ["train_step"]
    assert cut.count == 19
    fns = si.function_calls(tr.events())
    row = fns.set_index("function").loc["train_step"]
    assert row["calls"] == 20 and row["traced_calls"] == 20
    # Eager ops inside a call (while it traces) are tracing time, not eager execution.
    assert si.eager_time(tr.events(), cut.start_us, cut.end_us).sum() == 0.0


def test_no_loop_no_steps_with_a_reason():
    tr = Trace()
    for op in ["Fill", "MatMul", "Sub", "Mean", "Exp", "Log", "Sum", "Cast", "Relu", "Tanh", "Neg", "Abs"]:
        tr.eager(op)
    cut = si.infer_steps(tr.events())
    assert cut.count == 0 and cut.method == "none"
    assert "no repeating pattern" in cut.reason
    empty = si.infer_steps(Trace().events())
    assert empty.count == 0 and "no eager op" in empty.reason


def test_eager_time_is_the_dispatches_and_the_python_between_them_not_kernels_or_fetches():
    tr = Trace()
    for _ in range(10):
        tr.eager("IteratorGetNext", dur=400).eager("MatMul", dur=40).eager("AddV2", dur=40).idle(100)
    tr._row("MatMul", tr.t - 190 + 8, 6, tf_op=True)  # a kernel inside the last step's MatMul dispatch
    ev = tr.events()
    cut = si.infer_steps(ev)
    eager = si.eager_time(ev, cut.start_us, cut.end_us)
    # two 40 µs dispatches and the 10 µs of Python between them; the fetch is input wait
    np.testing.assert_allclose(eager, 90.0)
    # the last step is dropped as incomplete: add a fetch so that it is measured
    tr.eager("IteratorGetNext", dur=400)
    ev = tr.events()
    cut = si.infer_steps(ev)
    eager = si.eager_time(ev, cut.start_us, cut.end_us)
    np.testing.assert_allclose(eager[-1], 84.0)  # the kernel (6 µs) runs in a graph too
    np.testing.assert_allclose(eager[:-1], 90.0)


def test_a_loop_that_retraces_with_changing_dispatches_is_cut_at_the_iterator_fetch():
    tr = Trace()
    rng = np.random.default_rng(0)
    fetches = []
    for i in range(25):
        fetches.append(tr.t)
        tr.eager("IteratorGetNext", dur=200)
        # each retrace converts different constants outside the call: nothing repeats
        for k in range(int(rng.integers(0, 4))):
            tr.eager(f"Op{i}_{k}")
        tr.call(f"__inference_train_step_{100 + i}", dur=15_000, traced=True)
    cut = si.infer_steps(tr.events())
    assert cut.method == "iterator", cut.reason
    assert cut.count == 24 and "no repeating pattern" in cut.details["period_failed"]
    np.testing.assert_allclose(cut.start_us, fetches[:-1])
    fns = si.function_calls(tr.events()).set_index("function")
    assert fns.loc["train_step", "calls"] == 25 and fns.loc["train_step", "traced_calls"] == 25


def test_without_a_fetch_the_calls_of_the_same_function_whatever_their_trace_id_are_the_steps():
    tr = Trace()
    starts = []
    for i in range(12):
        for k in range(i % 5):
            tr.eager(f"Const{i}_{k}")
        starts.append(tr.t)
        tr.call(f"__inference_train_step_{7 * i + 3}", dur=9_000, traced=i % 3 != 0)
        tr.eager(f"Log{i}")
    cut = si.infer_steps(tr.events())
    assert cut.count == 11 and cut.method in ("function_calls", "period")
    np.testing.assert_allclose(cut.start_us, starts[:-1])


@pytest.mark.parametrize("name, label", [("__inference_train_step_123", "train_step"),
                                         ("__inference_step_1_45", "step_1"),
                                         ("train_step", "train_step"), ("MatMul", "MatMul"),
                                         ("EagerLocalExecute: __inference_f_9", "f")])
def test_function_label_drops_the_trace_id(name, label):
    assert si.function_label(name) == label


def test_consumer_view_drops_tf_data_workers_but_keeps_the_fetch():
    tr = Trace()
    tr._row("PyFunc", 0, 100, tid=7, thread="tf_data_private_threadpool/1", tf_op=True)
    tr._row("IteratorGetNextOp::DoCompute", 0, 100, tid=8, thread="tf_data_iterator_get_next/2")
    tr._row("MatMul", 200, 50, tid=9, thread="tf_Compute/3", tf_op=True)
    names = set(si.consumer_view(tr.events())["name"])
    assert names == {"IteratorGetNextOp::DoCompute", "MatMul"}


def test_synthetic_markers_feed_the_breakdown():
    from profilers.breakdown import breakdown_from_trace, check_breakdown
    from profilers.model import validate_table

    tr = Trace()
    for _ in range(12):
        tr.eager("IteratorGetNext", dur=600).call("train_step", dur=300)
    ev = tr.events()
    cut = si.infer_steps(ev)
    steps = validate_table("steps", pd.DataFrame({
        "step": np.arange(cut.count), "epoch": 0, "start_us": cut.start_us + 1e6,  # another clock
        "wall_us": cut.end_us - cut.start_us, "warmup": False, "derived": False,
        "in_profile_window": True, "loss": np.nan}))
    events = conform("events", pd.concat([ev, si.marker_events(cut)], ignore_index=True))
    bd = breakdown_from_trace(steps, events)
    check_breakdown(bd, steps)
    assert set(bd["step"]) == set(range(cut.count))
    assert bd["step"].nunique() == 11


@pytest.mark.parametrize("codes, period", [([1, 2] * 10, 2), ([5] * 9, 1), ([1, 2, 3, 4] * 6, 4),
                                           (list(range(20)), 0)])
def test_find_period(codes, period):
    assert si.find_period(np.asarray(codes))[0] == period


def test_an_outlier_step_is_described_by_its_longest_events_and_untraced_time():
    tr = Trace()
    for i in range(20):
        tr.eager("IteratorGetNext", dur=500).call("train_step", dur=300)
        if i == 12:  # the epoch boundary: a 519 ms teardown, then 20 ms of plain Python
            tr._row("TFE_DeleteTensorHandle", tr.t, 519_000)
            tr.t += 519_000 + 20_000
    cut = si.infer_steps(tr.events())
    out = cut.details["outlier_steps"]
    assert [o["step"] for o in out] == [12]
    assert out[0]["longest_events"][0] == {"name": "TFE_DeleteTensorHandle", "ms": 519.0, "thread": "python"}
    assert abs(out[0]["untraced_ms"] - 20.0) < 0.1


def test_an_eager_step_counts_its_python_outside_the_first_and_last_op_as_eager_cost():
    tr = Trace()
    for _ in range(6):
        tr.eager("IteratorGetNext", dur=400).idle(300)  # Keras' own Python before the first op
        for op in ["MatMul", "BiasAdd", "Relu", "MatMul", "Sub", "Square", "Mean", "AssignSubVariableOp"]:
            tr.eager(op, dur=40, gap=10)
        tr.idle(200)  # logs and callbacks after the last op
    ev = tr.events()
    cut = si.infer_steps(ev)
    eager = si.eager_time(ev, cut.start_us, cut.end_us)
    wall = cut.end_us - cut.start_us
    np.testing.assert_allclose(eager, wall - 390)  # everything but the fetch op (390 µs)
