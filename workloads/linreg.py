"""``linreg``: full-batch gradient descent on m×n least squares (seed 001), in seven variants.

The maths, identical in every variant (float32; the pure-Python variant uses Python
floats, i.e. float64, since lists hold no float32)::

    r    = X w - y                 forward   (2mn flops)
    loss = 0.5 * mean(r²)          forward
    g    = Xᵀ r / m                backward  (2mn + m flops)
    w    = w - lr * g              optimizer_update (2n flops)

This is seed 001's NumPy loop with the conventional 0.5 so that ``g`` is exactly the
gradient TensorFlow's tape computes. Data: ``X ~ N(0, 1) / (1 + sqrt(n/m))``, so the
largest eigenvalue of the Hessian XᵀX/m is ≈1 at every shape (Marchenko–Pastur edge) and
any lr below ≈1 is stable, from 3×2 to 100000×1000; ``y = X w* + 0.1·noise``; ``w0`` is
seeded and small. ``final_loss`` is the loss of the final weights over the whole data,
evaluated in NumPy after the loop (untimed), so every variant is judged by one formula.

TensorFlow is imported inside ``run`` only, and only for variants with ``needs_tf``.
Must not import tensorflow, keras, pynvml or streamlit at module level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from workloads import Param, Variant, VariantResult, Workload, register
from workloads.tfcommon import (PhaseFn, import_tf, keras_optimizer, no_phase, scipy_availability,
                                tf_availability, tracing_count)

if TYPE_CHECKING:
    from profilers.recorder import StepRecorder


@dataclass(frozen=True)
class LinregData:
    """Shared by every variant: float32, C-contiguous."""

    x: np.ndarray  # (m, n)
    y: np.ndarray  # (m,)
    w0: np.ndarray  # (n,)


# -- the maths in NumPy (also used by the gradient tests) --------------------------------
def linreg_forward(x: np.ndarray, w: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    """Return ``(loss, r)`` with ``r = Xw - y`` and ``loss = 0.5·mean(r²)``."""
    r = x @ w - y
    loss = 0.5 * (r @ r) / r.dtype.type(r.shape[0])
    return loss, r


def linreg_backward(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Gradient of ``0.5·mean(r²)`` w.r.t. ``w``: ``Xᵀ r / m``."""
    return (x.T @ r) / r.dtype.type(r.shape[0])


def full_loss(data: LinregData, w: np.ndarray) -> float:
    """Loss of weights ``w`` over the whole data: float32 matmul, float64 reduction."""
    r = (data.x @ np.asarray(w, dtype=np.float32).reshape(-1)).astype(np.float64) - data.y
    return float(0.5 * np.mean(r * r))


class Linreg(Workload):
    name = "linreg"
    help = ("Seed 001: full-batch gradient descent on m×n least squares. Same data, same "
            "initial weights, same float32 maths in every variant.")
    params = {
        "m": Param("m", int, 100, "rows (samples) of X", minimum=1),
        "n": Param("n", int, 10, "columns (features) of X", minimum=1),
        "steps": Param("steps", int, 500, "gradient-descent steps, warm-up included", minimum=1),
        "lr": Param("lr", float, 0.01, "learning rate (stable below ≈1 at any m×n)", minimum=0),
        "warmup_steps": Param("warmup_steps", int, 5, "steps recorded but left out of the statistics",
                              minimum=0),
        "seed": Param("seed", int, 0, "seed of data and initial weights", minimum=0),
    }
    variants = {
        "python": Variant("python", "pure Python lists, no NumPy in the step (O(m·n) per step; "
                                    "Python floats are float64)"),
        "numpy": Variant("numpy", "NumPy: X @ w, X.T @ r, w -= lr * g (the baseline)"),
        "numpy_blas": Variant("numpy_blas", "NumPy forward/backward, update in place through "
                                            "scipy.linalg.blas.saxpy (seed 000's daxpy claim, float32)",
                              availability=scipy_availability),
        "tf_eager": Variant("tf_eager", "GradientTape + tf.keras.optimizers.SGD, op by op",
                            needs_tf=True, availability=tf_availability),
        "tf_function": Variant("tf_function", "the same step in @tf.function", needs_tf=True,
                               availability=tf_availability),
        "tf_xla": Variant("tf_xla", "the same step in @tf.function(jit_compile=True)", needs_tf=True,
                          availability=tf_availability),
        "tf_graph_loop": Variant(
            "tf_graph_loop", "the whole loop in one tf.function (tf.range, step count as a tensor): "
                             "one call for the warm-up steps, one for the rest; steps are derived "
                             "(block mean); with profiling on, the profiler window is a block of "
                             "its own", needs_tf=True, availability=tf_availability),
        "tf_graph_loop_xla": Variant(
            "tf_graph_loop_xla", "the whole loop in one tf.function(jit_compile=True): XLA compiles "
                                 "the loop itself, so neither Python nor TF's executor runs per step; "
                                 "blocks as tf_graph_loop, only each block's last loss is kept",
            needs_tf=True, availability=tf_availability),
    }
    baseline = "numpy"
    loss_rtol = 1e-3
    loss_atol = 1e-6
    presets = {
        # Seed 001's sizes: 3 samples, 2 features, 1000 iterations at lr 0.01.
        "seed001": {"m": 3, "n": 2, "steps": 1000, "lr": 0.01},
    }

    def total_steps(self, params: Mapping[str, Any]) -> int:
        return int(params["steps"])

    def flops_per_step(self, params: Mapping[str, Any]) -> dict[str, float]:
        m, n = float(params["m"]), float(params["n"])
        return {"forward": 2 * m * n, "backward": 2 * m * n + m, "optimizer_update": 2 * n}

    def prepare(self, params: Mapping[str, Any]) -> LinregData:
        m, n = int(params["m"]), int(params["n"])
        rng = np.random.default_rng(int(params["seed"]))
        scale = 1.0 / (1.0 + np.sqrt(n / m))
        x = (rng.standard_normal((m, n), dtype=np.float32) * np.float32(scale))
        w_true = rng.standard_normal(n, dtype=np.float32)
        y = x @ w_true + np.float32(0.1) * rng.standard_normal(m, dtype=np.float32)
        w0 = np.float32(0.1) * rng.standard_normal(n, dtype=np.float32)
        return LinregData(x=np.ascontiguousarray(x), y=y.astype(np.float32), w0=w0)

    def run(self, variant: str, params: Mapping[str, Any], data: LinregData,
            rec: "StepRecorder") -> VariantResult:
        self.variant(variant)  # UnknownName listing the valid ones
        return _RUNNERS[variant](params, data, rec)


# -- NumPy and pure Python -----------------------------------------------------------------
def _run_numpy(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder",
               blas: bool = False) -> VariantResult:
    lr = np.float32(params["lr"])
    w = data.w0.copy()
    saxpy = None
    if blas:
        from scipy.linalg.blas import saxpy
    for i in range(int(params["steps"])):
        with rec.step(i):
            with rec.phase("input_wait"):
                x, y = data.x, data.y
            with rec.phase("forward"):
                loss, r = linreg_forward(x, w, y)
            with rec.phase("backward"):
                g = linreg_backward(x, r)
            with rec.phase("optimizer_update"):
                if saxpy is not None:
                    saxpy(g, w, a=-lr)  # w := -lr*g + w, in place (float32 w, contiguous)
                else:
                    w -= lr * g
        rec.record_loss(i, loss)
    return VariantResult(final_loss=full_loss(data, w), extra={"last_step_loss": float(loss)})


def _run_numpy_blas(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder") -> VariantResult:
    return _run_numpy(params, data, rec, blas=True)


def _run_python(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder") -> VariantResult:
    rows: list[list[float]] = data.x.tolist()
    cols: list[list[float]] = data.x.T.tolist()
    ys: list[float] = data.y.tolist()
    w: list[float] = data.w0.tolist()
    lr = float(params["lr"])
    m = len(ys)
    loss = float("nan")
    for i in range(int(params["steps"])):
        with rec.step(i):
            with rec.phase("input_wait"):
                xr, xc, yv = rows, cols, ys
            with rec.phase("forward"):
                r = [sum(a * b for a, b in zip(row, w)) - yi for row, yi in zip(xr, yv)]
                loss = 0.5 * sum(e * e for e in r) / m
            with rec.phase("backward"):
                g = [sum(a * e for a, e in zip(col, r)) / m for col in xc]
            with rec.phase("optimizer_update"):
                w = [wj - lr * gj for wj, gj in zip(w, g)]
        rec.record_loss(i, loss)
    return VariantResult(final_loss=full_loss(data, np.array(w)), extra={"last_step_loss": loss})


# -- TensorFlow ------------------------------------------------------------------------------
def _tf_setup(params: Mapping[str, Any], data: LinregData) -> tuple[Any, Any, Any, Any, Any]:
    tf = import_tf()
    x = tf.constant(data.x)
    y = tf.constant(data.y.reshape(-1, 1))
    w = tf.Variable(data.w0.reshape(-1, 1), name="w")
    opt = keras_optimizer(tf, "sgd", params["lr"])
    opt.build([w])  # slots and counters exist before any trace (no variable creation in graphs)
    return tf, x, y, w, opt


def _make_step(tf: Any, w: Any, opt: Any, phase: PhaseFn) -> Callable[[Any, Any], Any]:
    def step(x: Any, y: Any) -> Any:
        with phase("forward"), tf.name_scope("forward"):
            with tf.GradientTape() as tape:
                r = tf.matmul(x, w) - y
                loss = 0.5 * tf.reduce_mean(tf.square(r))
        with phase("backward"), tf.name_scope("backward"):
            g = tape.gradient(loss, w)
        with phase("optimizer_update"), tf.name_scope("optimizer_update"):
            opt.apply_gradients([(g, w)])
        return loss
    return step


def _run_tf_stepwise(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder",
                     mode: str) -> VariantResult:
    tf, x_t, y_t, w, opt = _tf_setup(params, data)
    if mode == "eager":
        step = _make_step(tf, w, opt, rec.phase)
    else:
        step = tf.function(_make_step(tf, w, opt, no_phase), jit_compile=(mode == "xla"))
    loss: Any = None
    for i in range(int(params["steps"])):
        with rec.step(i):
            with rec.phase("input_wait"):
                xb, yb = x_t, y_t
            loss = step(xb, yb)
        rec.record_loss(i, loss)
    extra: dict[str, Any] = {"last_step_loss": float(loss.numpy())}
    traces = tracing_count(step)
    if traces is not None:
        extra["traces"] = traces
    return VariantResult(final_loss=full_loss(data, w.numpy()), extra=extra)


def _run_tf_eager(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder") -> VariantResult:
    return _run_tf_stepwise(params, data, rec, "eager")


def _run_tf_function(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder") -> VariantResult:
    return _run_tf_stepwise(params, data, rec, "function")


def _run_tf_xla(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder") -> VariantResult:
    return _run_tf_stepwise(params, data, rec, "xla")


def _run_tf_graph_loop(params: Mapping[str, Any], data: LinregData, rec: "StepRecorder",
                       xla: bool = False) -> VariantResult:
    tf, x_t, y_t, w, opt = _tf_setup(params, data)
    body = _make_step(tf, w, opt, no_phase)

    if xla:
        # XLA needs static shapes, so a loss buffer sized by a tensor is out: keep the last.
        # A counter, not tf.range: tf.range(n) makes n a compile-time constant, and XLA
        # then recompiles (≈80 ms here) for every new block length.
        @tf.function(jit_compile=True)
        def train_loop(n_steps: Any) -> Any:
            loss = tf.constant(float("nan"), tf.float32)
            k = tf.constant(0)
            while k < n_steps:
                loss = body(x_t, y_t)
                k += 1
            return tf.reshape(loss, [1])
    else:
        @tf.function
        def train_loop(n_steps: Any) -> Any:
            losses = tf.TensorArray(tf.float32, size=n_steps)
            for k in tf.range(n_steps):
                losses = losses.write(k, body(x_t, y_t))
            return losses.stack()

    steps = int(params["steps"])
    warm = min(int(params["warmup_steps"]), steps)
    # With profiling on, the profiler window gets a block of its own, so the profiler's
    # cost stays out of the rest: warm-up, window, rest (all one trace: n is a tensor).
    window = min(rec.profile_steps, steps - warm) if rec.profile_logdir is not None else 0
    blocks = [warm, window, steps - warm - window]
    done = 0
    for n_block in blocks:
        if n_block == 0:
            continue
        n_t = tf.constant(n_block, dtype=tf.int32)
        with rec.block(done, n_block):  # times the call; opens the profiler window if due
            losses = train_loop(n_t)
        values = losses.numpy()
        first = done + n_block - len(values)  # XLA: one value, the block's last step
        for k, value in enumerate(values):
            rec.record_loss(first + k, float(value))
        done += n_block
    return VariantResult(final_loss=full_loss(data, w.numpy()),
                         extra={"traces": tracing_count(train_loop), "blocks": [b for b in blocks if b],
                                "derived_steps": "each step's wall time is its block's mean"})


_RUNNERS: dict[str, Callable[[Mapping[str, Any], LinregData, "StepRecorder"], VariantResult]] = {
    "python": _run_python,
    "numpy": _run_numpy,
    "numpy_blas": _run_numpy_blas,
    "tf_eager": _run_tf_eager,
    "tf_function": _run_tf_function,
    "tf_xla": _run_tf_xla,
    "tf_graph_loop": _run_tf_graph_loop,
    "tf_graph_loop_xla": lambda params, data, rec: _run_tf_graph_loop(params, data, rec, xla=True),
}

LINREG = register(Linreg())
