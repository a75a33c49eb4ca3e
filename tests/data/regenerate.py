"""Regenerate the trace fixtures under tests/data/<scenario>/ and their golden tables.

Each scenario is a tiny run directory laid out like a real one::

    <scenario>/manifest.json, tables/steps.csv, tables/phases.csv
    <scenario>/trace/plugins/profile/<ts>/<host>.xplane.pb      (TF scenarios)
    <scenario>/golden/*.csv, golden/summary.json                (what our code made of it)

The TF scenarios capture linear regression on 20x3 data (batch 20, SGD) with the real
``StepRecorder`` and TF profiler: 3 warm-up steps, then 5 profiled steps (the ``*_cold``
ones profile 2 steps from the very first, so tracing/compilation is in the window). The
NumPy scenario records phases only. Golden tables are computed by ``profilers`` on a copy
of each capture, so the fixture directories hold no xprof side files.

Run with a Python that has TensorFlow (the tests themselves need none)::

    TF_CPP_MIN_LOG_LEVEL=3 python tests/data/regenerate.py            # every scenario
    TF_CPP_MIN_LOG_LEVEL=3 python tests/data/regenerate.py tf_eager   # some of them
    python tests/data/regenerate.py --golden-only                     # re-derive goldens

Never edit the fixtures by hand: change this script and run it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from profilers import analysis  # noqa: E402
from profilers import breakdown as bd  # noqa: E402
from profilers import xprof_tools as xt  # noqa: E402
from profilers.model import dumps, read_table_csv  # noqa: E402
from profilers.recorder import StepRecorder  # noqa: E402

DATA = Path(__file__).resolve().parent
N_ROWS, N_FEATURES, LR = 20, 3, 0.05
MAX_XPLANE_BYTES = 1_000_000


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_FEATURES)).astype(np.float32)
    w_true = np.arange(1, N_FEATURES + 1, dtype=np.float32).reshape(-1, 1)
    return x, (x @ w_true + 0.5).astype(np.float32)


# -- TF scenarios ----------------------------------------------------------------------------
def _tf_setup() -> dict[str, Any]:
    import tensorflow as tf

    x, y = _data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(N_ROWS).repeat()
    w = tf.Variable(tf.zeros((N_FEATURES, 1)))
    b = tf.Variable(tf.zeros((1,)))
    opt = tf.keras.optimizers.SGD(LR)

    def step_fn(xb: Any, yb: Any, rec: StepRecorder | None = None) -> Any:
        # Name scopes name the graph ops; in eager mode the trace keeps no scope, so the
        # recorder's phases (when given) carry it instead.
        def phase(name: str) -> Any:
            return rec.phase(name) if rec is not None else _null()

        with phase("forward"), tf.GradientTape() as tape:
            with tf.name_scope("forward"):
                pred = tf.matmul(xb, w) + b
                loss = tf.reduce_mean(tf.square(pred - yb))
        with phase("backward"), tf.name_scope("backward"):
            grads = tape.gradient(loss, [w, b])
        with phase("optimizer_update"), tf.name_scope("optimizer_update"):
            opt.apply_gradients(zip(grads, [w, b]))
        return loss

    return {"tf": tf, "ds": ds, "it": iter(ds), "step_fn": step_fn}


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _stepwise(variant: str, warmup: int, profiled: int) -> Callable[[Path], StepRecorder]:
    def run(run_dir: Path) -> StepRecorder:
        s = _tf_setup()
        tf = s["tf"]
        rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=warmup,
                           profile_logdir=run_dir / "trace", profile_steps=profiled)
        if variant == "tf_eager":
            def call(xb: Any, yb: Any) -> Any:
                return s["step_fn"](xb, yb, rec)
        else:
            call = tf.function(s["step_fn"], jit_compile=(variant == "tf_xla"))
        for i in range(warmup + profiled):
            with rec.step(i):
                with rec.phase("input_wait"):
                    xb, yb = next(s["it"])
                loss = call(xb, yb)
            rec.record_loss(i, loss)
        return rec
    return run


def _graph_loop(warmup: int, profiled: int) -> Callable[[Path], StepRecorder]:
    def run(run_dir: Path) -> StepRecorder:
        s = _tf_setup()
        tf = s["tf"]
        it = s["it"]

        @tf.function
        def loop(n: Any) -> Any:
            loss = tf.constant(0.0)
            for _ in tf.range(n):
                xb, yb = next(it)
                loss = s["step_fn"](xb, yb)
            return loss

        rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=warmup,
                           profile_logdir=run_dir / "trace", profile_steps=profiled)
        loss = None
        # One block of warm-up steps (it traces), then the profiled block: one call under
        # one "train" marker (step_num = its first step); its steps are ``derived``.
        for first, n in ((0, warmup), (warmup, profiled)):
            with rec.block(first, n):
                loss = loop(tf.constant(n)).numpy()
        rec.record_loss(warmup + profiled - 1, loss)
        return rec
    return run


def _keras_fit(warmup: int, profiled: int) -> Callable[[Path], StepRecorder]:
    def run(run_dir: Path) -> StepRecorder:
        s = _tf_setup()
        tf = s["tf"]
        rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=warmup,
                           profile_logdir=run_dir / "trace", profile_steps=profiled)

        class Markers(tf.keras.callbacks.Callback):
            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                rec.begin_step(batch)

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                rec.end_step()
                if logs and "loss" in logs:
                    rec.record_loss(batch, logs["loss"])

        # Naming the model "forward" lets its ops' scope say so.
        model = tf.keras.Sequential([tf.keras.Input((N_FEATURES,)), tf.keras.layers.Dense(1)],
                                    name="forward")
        model.compile(optimizer=tf.keras.optimizers.SGD(LR), loss="mse")
        model.fit(s["ds"], steps_per_epoch=warmup + profiled, epochs=1, verbose=0, callbacks=[Markers()])
        return rec
    return run


def _numpy(warmup: int, steps: int) -> Callable[[Path], StepRecorder]:
    def run(run_dir: Path) -> StepRecorder:
        x, y = _data()
        w = np.zeros((N_FEATURES, 1), dtype=np.float32)
        b = np.zeros((1,), dtype=np.float32)
        rec = StepRecorder(t0_ns=time.perf_counter_ns(), warmup_steps=warmup)
        for i in range(warmup + steps):
            with rec.step(i):
                with rec.phase("input_wait"):
                    xb, yb = x.copy(), y.copy()
                with rec.phase("forward"):
                    err = xb @ w + b - yb
                    loss = float(np.mean(err * err))
                with rec.phase("backward"):
                    g = 2.0 * err / len(xb)
                    gw, gb = xb.T @ g, g.sum(axis=0)
                with rec.phase("optimizer_update"):
                    w -= LR * gw
                    b -= LR * gb
            rec.record_loss(i, loss)
        return rec
    return run


SCENARIOS: dict[str, tuple[str, Callable[[Path], StepRecorder]]] = {
    "numpy": ("numpy", _numpy(3, 5)),
    "tf_eager": ("tf_eager", _stepwise("tf_eager", 3, 5)),
    "tf_function": ("tf_function", _stepwise("tf_function", 3, 5)),
    "tf_function_cold": ("tf_function", _stepwise("tf_function", 0, 2)),
    "tf_xla": ("tf_xla", _stepwise("tf_xla", 3, 5)),
    "tf_xla_cold": ("tf_xla", _stepwise("tf_xla", 0, 2)),
    "tf_graph_loop": ("tf_graph_loop", _graph_loop(3, 5)),
    "keras_fit": ("keras_fit", _keras_fit(3, 5)),
}


# -- writing -------------------------------------------------------------------------------------
def capture(name: str) -> None:
    variant, run = SCENARIOS[name]
    out = DATA / name
    with tempfile.TemporaryDirectory(prefix=f"sgdscope-{name}-") as tmp:
        run_dir = Path(tmp)
        rec = run(run_dir)
        tables = rec.finish()
        shutil.rmtree(out, ignore_errors=True)
        (out / "tables").mkdir(parents=True)
        for tname, df in tables.items():
            df.to_csv(out / "tables" / f"{tname}.csv", index=False)
        xplanes = sorted(run_dir.glob("trace/plugins/profile/*/*.xplane.pb"))
        rel = None
        if xplanes:
            src = xplanes[-1]
            if src.stat().st_size > MAX_XPLANE_BYTES:
                raise SystemExit(f"{name}: xplane is {src.stat().st_size} bytes (> {MAX_XPLANE_BYTES}).")
            rel = src.relative_to(run_dir)
            (out / rel).parent.mkdir(parents=True)
            shutil.copy2(src, out / rel)
    manifest = {"schema_version": 1, "run_id": f"fixture-{name}", "workload": "linreg", "variant": variant,
                "params": {"n": N_ROWS, "d": N_FEATURES, "lr": LR}, "status": "ok",
                "capture": {"profiled": rel is not None, "xplane": str(rel) if rel else None}}
    (out / "manifest.json").write_text(dumps(manifest), encoding="utf-8")
    print(f"captured {name}: {len(tables['steps'])} steps, xplane {rel}")


def golden(name: str) -> None:
    """Golden tables: what profilers makes of the fixture (run on a temporary copy)."""
    src = DATA / name
    gold = src / "golden"
    shutil.rmtree(gold, ignore_errors=True)
    gold.mkdir()
    steps = read_table_csv("steps", src / "tables" / "steps.csv")
    phases = read_table_csv("phases", src / "tables" / "phases.csv")
    summary: dict[str, Any] = {}
    xplanes = sorted(src.glob("trace/plugins/profile/*/*.xplane.pb"))
    if not xplanes:
        b = bd.breakdown_from_phases(steps, phases)
    else:
        with tempfile.TemporaryDirectory(prefix=f"sgdscope-golden-{name}-") as tmp:
            rel = xplanes[-1].relative_to(src)
            (Path(tmp) / rel).parent.mkdir(parents=True)
            xplane = Path(shutil.copy2(xplanes[-1], Path(tmp) / rel))
            res = xt.run_tables(xplane)
            events = res.tables["events"]
            b = bd.breakdown_from_trace(steps, events, phases)
            ops = bd.ops_per_step(steps, events)
            ops.to_csv(gold / "ops_per_step.csv", index=False)
            measured = set(steps.loc[~steps["warmup"].astype(bool), "step"])
            summary["dispatches_per_step"] = float(ops.loc[ops["step"].isin(measured), "dispatches"].median())
            res.tables["step_time"].to_csv(gold / "step_time.csv", index=False)
            res.tables["input_stages"].to_csv(gold / "input_stages.csv", index=False)
            res.tables["ops"].to_csv(gold / "ops.csv", index=False)
            counts = (events.groupby(["thread", "name"], observed=True)
                      .agg(count=("ts_us", "size"), total_dur_us=("dur_us", "sum")).reset_index())
            counts["thread"] = counts["thread"].astype(str).str.replace(r"/-?\d+$", "", regex=True)
            counts["name"] = counts["name"].astype(str)
            counts = counts.groupby(["thread", "name"], as_index=False).sum()
            counts.sort_values(["thread", "name"]).to_csv(gold / "event_counts.csv", index=False)
            summary["markers"] = sorted(int(s) for s in events.loc[events["marker"], "step"])
            summary["info"] = {k: v for k, v in res.info.items() if isinstance(v, (str, int, float, bool))}
    bd.check_breakdown(b, steps)
    b.to_csv(gold / "breakdown.csv", index=False)
    summary["breakdown_window_ms"] = analysis.scaled_breakdown(b, None)["window_ms"]
    (gold / "summary.json").write_text(dumps(summary), encoding="utf-8")
    print(f"golden {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in summary["breakdown_window_ms"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(SCENARIOS)}")
    ap.add_argument("--golden-only", action="store_true", help="keep the captures, re-derive goldens")
    args = ap.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; valid: {', '.join(SCENARIOS)}")
    for name in names:
        if not args.golden_only:
            capture(name)
        golden(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
