"""``mlp``: 784-128(relu)-10(softmax) with cross-entropy, mini-batch SGD/Adam on synthetic
MNIST-shaped data (seeds 000, 003, 004), in five variants.

Same maths in every variant (float32):

- data: ``samples`` inputs uniform in [0, 1]; labels from a seeded random linear teacher
  ``argmax((x - 0.5) @ T)``, so the task is learnable; one-hot targets;
- weights: Glorot-uniform kernels and zero biases drawn by NumPy, loaded into Keras;
- batches: one seeded permutation per epoch, precomputed in ``prepare``; the last partial
  batch is dropped in every variant (``samples // batch_size`` steps per epoch);
- loss: mean over the batch of ``logsumexp(z) - z[label]``. Keras computes exactly this:
  a softmax-activated output hands its logits to ``categorical_crossentropy``
  (``softmax_cross_entropy_with_logits``), so its 1e-7 probability clip never applies;
- optimizers: Keras 3's formulas term by term (``keras/src/optimizers/sgd.py``,
  ``adam.py``)::

      SGD:       v = v*momentum - g*lr;  w += v          (momentum 0: w -= g*lr)
      Adam:      a = lr*sqrt(1-b2^t)/(1-b1^t)
                 m += (g-m)*(1-b1);  v += (g²-v)*(1-b2);  w -= m*a / (sqrt(v) + eps)
                 (b1 0.9, b2 0.999, eps 1e-7 added to sqrt(v), not to the bias-corrected one)
      clip_norm: g = g*c / max(‖g‖, c), per tensor (tf.clip_by_norm; Keras ``clipnorm``)

- schedule ``seed003``: seed 003's LearningRateScheduler (lr kept for epochs 0-4, then
  ×exp(-0.1) per epoch), precomputed per epoch in float32 and shared by all variants.

``final_loss`` is the loss of the final weights over the whole training set, evaluated
in NumPy after the loop (untimed); the per-step loss in the steps table is the batch loss
of that step's forward pass.

TensorFlow is imported inside ``run`` only, and only for variants with ``needs_tf``.
Must not import tensorflow, keras, pynvml or streamlit at module level.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from profilers.errors import BadInput
from workloads import Param, Variant, VariantResult, Workload, register
from workloads.distributed import PARAMS as DISTRIBUTED_PARAMS
from workloads.distributed import VARIANTS as DISTRIBUTED_VARIANTS
from workloads.distributed import run_mirrored, run_multi_worker
from workloads.tfcommon import (PhaseFn, batch_dataset, clip_each, import_tf, keras_optimizer,
                                no_phase, tf_availability, tracing_count)

if TYPE_CHECKING:
    from profilers.recorder import StepRecorder

N_IN, N_HIDDEN, N_OUT = 784, 128, 10
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7


@dataclass(frozen=True)
class MlpData:
    """Shared by every variant (float32 unless said otherwise)."""

    x: np.ndarray  # (samples, 784) in [0, 1]
    y: np.ndarray  # (samples, 10) one-hot
    order: np.ndarray  # (epochs, steps_per_epoch, batch_size) int32 sample indices
    lr_per_epoch: np.ndarray  # (epochs,) float32
    init: tuple[np.ndarray, ...]  # W1 (784,128), b1 (128,), W2 (128,10), b2 (10,)

    @property
    def steps_per_epoch(self) -> int:
        return int(self.order.shape[1])


# -- the maths in NumPy (shape-generic; also used by the gradient tests) --------------------
def mlp_forward(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[Any, tuple]:
    """Return ``(loss, cache)``: mean softmax cross-entropy of a relu MLP on one batch."""
    w1, b1, w2, b2 = params
    h = np.maximum(x @ w1 + b1, 0)
    z = h @ w2 + b2
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    logp = shifted - np.log(s)
    loss = -(y * logp).sum() / z.dtype.type(z.shape[0])
    return loss, (x, h, e / s)


def mlp_backward(params: list[np.ndarray], cache: tuple, y: np.ndarray) -> list[np.ndarray]:
    """Gradients ``[dW1, db1, dW2, db2]`` of ``mlp_forward``'s loss (softmax-CE: (p - y)/B)."""
    _, _, w2, _ = params
    x, h, p = cache
    dz = (p - y) / p.dtype.type(p.shape[0])
    dw2 = h.T @ dz
    db2 = dz.sum(axis=0)
    dh = (dz @ w2.T) * (h > 0)
    dw1 = x.T @ dh
    db1 = dh.sum(axis=0)
    return [dw1, db1, dw2, db2]


def clip_by_norm(g: np.ndarray, clip_norm: float) -> np.ndarray:
    """``tf.clip_by_norm``: ``g * c / max(‖g‖, c)`` (always applied, as TF does)."""
    c = g.dtype.type(clip_norm)
    norm = np.sqrt((g * g).sum())
    return (g * c) / np.maximum(norm, c)


class NumpySGD:
    """Keras 3 SGD: ``v = v*mom - g*lr; w += v``, or ``w -= g*lr`` without momentum."""

    def __init__(self, params: list[np.ndarray], lr: float, momentum: float = 0.0) -> None:
        self.lr = np.float32(lr)
        self.momentum = np.float32(momentum)
        self.velocity = [np.zeros_like(p) for p in params] if momentum != 0 else None

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.velocity is None:
            for p, g in zip(params, grads):
                p -= g * self.lr
            return
        for p, g, v in zip(params, grads, self.velocity):
            v *= self.momentum
            v -= g * self.lr
            p += v


class NumpyAdam:
    """Keras 3 Adam, term by term (epsilon added to ``sqrt(v)``, Keras's placement)."""

    def __init__(self, params: list[np.ndarray], lr: float, beta_1: float = ADAM_BETA_1,
                 beta_2: float = ADAM_BETA_2, epsilon: float = ADAM_EPSILON) -> None:
        self.lr = np.float32(lr)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.iterations = 0

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        t = np.float32(self.iterations + 1)
        b1p = np.float32(self.beta_1) ** t
        b2p = np.float32(self.beta_2) ** t
        alpha = self.lr * np.sqrt(np.float32(1) - b2p) / (np.float32(1) - b1p)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m += (g - m) * (1 - self.beta_1)
            v += (g * g - v) * (1 - self.beta_2)
            p -= (m * alpha) / (np.sqrt(v) + self.epsilon)
        self.iterations += 1


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def lr_schedule(lr: float, schedule: str, epochs: int) -> np.ndarray:
    """Per-epoch learning rates. ``seed003``: seed 003's scheduler, compounded in float32."""
    out = np.empty(epochs, dtype=np.float32)
    cur = np.float32(lr)
    decay = np.float32(np.exp(-0.1))
    for e in range(epochs):
        if schedule == "seed003" and e >= 5:
            cur = np.float32(cur * decay)
        out[e] = cur
    return out


def full_loss(data: MlpData, params: list[np.ndarray], chunk: int = 16384) -> float:
    """Mean cross-entropy of ``params`` over the whole training set (float64 reduction)."""
    w = [np.asarray(p, dtype=np.float32) for p in params]
    total = 0.0
    for a in range(0, data.x.shape[0], chunk):
        loss, _ = mlp_forward(w, data.x[a:a + chunk], data.y[a:a + chunk])
        total += float(loss) * min(chunk, data.x.shape[0] - a)
    return total / data.x.shape[0]


class Mlp(Workload):
    name = "mlp"
    help = ("Seeds 000/003/004: a 784-128-10 MLP on MNIST-shaped synthetic data, mini-batch "
            "SGD (momentum) or Adam, optional clipping and seed 003's schedule. Same batches, "
            "weights and optimizer formulas in every variant.")
    params = {
        "samples": Param("samples", int, 60000, "training samples (MNIST has 60000)", minimum=1),
        "batch_size": Param("batch_size", int, 32, "samples per step; the last partial batch is "
                                                   "dropped in every variant", minimum=1),
        "epochs": Param("epochs", int, 1, "passes over the data, each in its own seeded order",
                        minimum=1),
        "lr": Param("lr", float, 0.01, "learning rate (epoch 0)", minimum=0),
        "momentum": Param("momentum", float, 0.0, "SGD momentum, Keras formula (sgd only)", minimum=0),
        "optimizer": Param("optimizer", str, "sgd", "Keras 3 SGD or Adam (beta_1 0.9, beta_2 0.999, "
                                                    "epsilon 1e-7)", choices=("sgd", "adam")),
        "schedule": Param("schedule", str, "constant", "constant, or seed003: lr kept for epochs "
                                                       "0-4, then ×exp(-0.1) per epoch",
                          choices=("constant", "seed003")),
        "clip_norm": Param("clip_norm", float, None, "per-tensor gradient clip_by_norm (seed 002); "
                                                     "none to turn off"),
        "steps_per_execution": Param(
            "steps_per_execution", int, 1, "keras_fit only (other variants ignore it): steps per "
            "compiled call; Keras then calls the callbacks once per call, so those steps are "
            "recorded as one block with its mean wall time", minimum=1, variants=("keras_fit",)),
        "warmup_steps": Param("warmup_steps", int, 5, "steps recorded but left out of the statistics",
                              minimum=0),
        "seed": Param("seed", int, 0, "seed of data, teacher, initial weights and batch order",
                      minimum=0),
        **DISTRIBUTED_PARAMS,  # workers, straggler, straggler_ms: read by mirrored/multi_worker only
    }
    variants = {
        "numpy": Variant("numpy", "hand-written forward, backward and Keras-formula update "
                                  "(the baseline)"),
        "tf_eager": Variant("tf_eager", "Keras model + GradientTape + Keras optimizer, op by op "
                                        "(seed 000's loop), batches from tf.data",
                            needs_tf=True, availability=tf_availability),
        "tf_function": Variant("tf_function", "the same train step in @tf.function", needs_tf=True,
                               availability=tf_availability),
        "tf_xla": Variant("tf_xla", "the same train step in @tf.function(jit_compile=True)",
                          needs_tf=True, availability=tf_availability),
        "keras_fit": Variant("keras_fit", "model.compile + model.fit on the same pre-permuted "
                                          "batches (shuffle off), jit_compile='auto', verbose=0",
                             needs_tf=True, availability=tf_availability),
        **DISTRIBUTED_VARIANTS,  # mirrored, multi_worker (tf.distribute, in child processes)
    }
    baseline = "numpy"
    loss_rtol = 2e-3
    loss_atol = 1e-5
    presets = {
        # seed 000/004: Keras's default SGD (lr 0.01), batch 32; seed 004 trains 5 epochs.
        "seed000": {"optimizer": "sgd", "lr": 0.01, "batch_size": 32},
        "seed004": {"optimizer": "sgd", "lr": 0.01, "batch_size": 32, "epochs": 5},
        # seed 003: example 2 (momentum) and example 3 (schedule), 10 epochs each.
        "seed003_momentum": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "epochs": 10},
        "seed003_schedule": {"optimizer": "sgd", "lr": 0.1, "schedule": "seed003", "epochs": 10},
        # seed 002: Adam at 1e-3 with per-tensor clip_by_norm(1.0).
        "seed002": {"optimizer": "adam", "lr": 0.001, "clip_norm": 1.0},
    }

    def resolve_params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        values = super().resolve_params(raw)
        if values["optimizer"] == "adam" and values["momentum"] != 0:
            raise BadInput(f"momentum={values['momentum']} applies to optimizer=sgd only.",
                           "Adam keeps its own first moment (beta_1=0.9): drop momentum, or use sgd.")
        if values["clip_norm"] is not None and not values["clip_norm"] > 0:
            raise BadInput(f"clip_norm={values['clip_norm']} must be positive.",
                           "Give a norm such as 1.0, or none to turn clipping off.")
        if values["batch_size"] > values["samples"]:
            raise BadInput(f"batch_size={values['batch_size']} is larger than samples={values['samples']}, "
                           "so no full batch exists.", "Lower batch_size or raise samples.")
        return values

    def total_steps(self, params: Mapping[str, Any]) -> int:
        return int(params["epochs"]) * (int(params["samples"]) // int(params["batch_size"]))

    def flops_per_step(self, params: Mapping[str, Any]) -> dict[str, float]:
        b = float(params["batch_size"])
        n_params = N_IN * N_HIDDEN + N_HIDDEN + N_HIDDEN * N_OUT + N_OUT
        forward = 2 * b * (N_IN * N_HIDDEN + N_HIDDEN * N_OUT) + b * (2 * N_HIDDEN + 5 * N_OUT)
        backward = 2 * b * (N_IN * N_HIDDEN + 2 * N_HIDDEN * N_OUT) + b * (3 * N_OUT + 2 * N_HIDDEN)
        per_param = {"sgd": 4.0 if params["momentum"] else 2.0, "adam": 12.0}[params["optimizer"]]
        if params["clip_norm"] is not None:
            per_param += 4.0
        return {"forward": forward, "backward": backward, "optimizer_update": per_param * n_params}

    def prepare(self, params: Mapping[str, Any]) -> MlpData:
        rng = np.random.default_rng(int(params["seed"]))
        n, bs, epochs = int(params["samples"]), int(params["batch_size"]), int(params["epochs"])
        x = rng.random((n, N_IN), dtype=np.float32)
        teacher = rng.standard_normal((N_IN, N_OUT), dtype=np.float32)
        labels = np.argmax((x - np.float32(0.5)) @ teacher, axis=1)
        y = np.zeros((n, N_OUT), dtype=np.float32)
        y[np.arange(n), labels] = 1.0
        nb = n // bs
        order = np.stack([rng.permutation(n)[:nb * bs].reshape(nb, bs) for _ in range(epochs)])
        init = (glorot_uniform(rng, N_IN, N_HIDDEN), np.zeros(N_HIDDEN, np.float32),
                glorot_uniform(rng, N_HIDDEN, N_OUT), np.zeros(N_OUT, np.float32))
        return MlpData(x=x, y=y, order=order.astype(np.int32),
                       lr_per_epoch=lr_schedule(params["lr"], params["schedule"], epochs), init=init)

    def run(self, variant: str, params: Mapping[str, Any], data: MlpData,
            rec: "StepRecorder") -> VariantResult:
        self.variant(variant)  # UnknownName listing the valid ones
        return _RUNNERS[variant](params, data, rec)


# -- NumPy -------------------------------------------------------------------------------------
def _numpy_optimizer(params: Mapping[str, Any], weights: list[np.ndarray]) -> NumpySGD | NumpyAdam:
    if params["optimizer"] == "adam":
        return NumpyAdam(weights, params["lr"])
    return NumpySGD(weights, params["lr"], params["momentum"])


def _run_numpy(params: Mapping[str, Any], data: MlpData, rec: "StepRecorder") -> VariantResult:
    weights = [p.copy() for p in data.init]
    opt = _numpy_optimizer(params, weights)
    clip = params["clip_norm"]
    nb = data.steps_per_epoch
    loss: Any = float("nan")
    for epoch in range(data.order.shape[0]):
        opt.lr = data.lr_per_epoch[epoch]
        for b in range(nb):
            i = epoch * nb + b
            with rec.step(i, epoch):
                with rec.phase("input_wait"):
                    idx = data.order[epoch, b]
                    xb, yb = data.x[idx], data.y[idx]
                with rec.phase("forward"):
                    loss, cache = mlp_forward(weights, xb, yb)
                with rec.phase("backward"):
                    grads = mlp_backward(weights, cache, yb)
                with rec.phase("optimizer_update"):
                    if clip is not None:
                        grads = [clip_by_norm(g, clip) for g in grads]
                    opt.apply(weights, grads)
            rec.record_loss(i, loss)
    return VariantResult(final_loss=full_loss(data, weights), extra={"last_step_loss": float(loss)})


# -- TensorFlow ----------------------------------------------------------------------------------
def _keras_model(tf: Any, data: MlpData) -> Any:
    """Seed 000's model, with the shared NumPy initial weights loaded."""
    keras = tf.keras
    model = keras.Sequential([
        keras.Input(shape=(N_IN,)),
        keras.layers.Dense(N_HIDDEN, activation="relu"),
        keras.layers.Dense(N_OUT, activation="softmax"),
    ], name="forward")  # Keras fit's layer ops then sit under a "forward" scope in the trace
    model.set_weights([p.copy() for p in data.init])
    return model


def _make_train_step(tf: Any, model: Any, loss_fn: Any, opt: Any, clip: float | None,
                     phase: PhaseFn) -> Callable[[Any, Any], Any]:
    variables = model.trainable_variables

    def train_step(x: Any, y: Any) -> Any:
        with phase("forward"), tf.name_scope("forward"):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = loss_fn(y, pred)
        with phase("backward"), tf.name_scope("backward"):
            grads = tape.gradient(loss, variables)
        with phase("optimizer_update"), tf.name_scope("optimizer_update"):
            opt.apply_gradients(zip(clip_each(tf, grads, clip), variables))
        return loss
    return train_step


def _run_tf_loop(params: Mapping[str, Any], data: MlpData, rec: "StepRecorder", mode: str) -> VariantResult:
    tf = import_tf()
    model = _keras_model(tf, data)
    opt = keras_optimizer(tf, params["optimizer"], params["lr"], params["momentum"])
    opt.build(model.trainable_variables)
    loss_fn = tf.keras.losses.CategoricalCrossentropy()
    if mode == "eager":
        step = _make_train_step(tf, model, loss_fn, opt, params["clip_norm"], rec.phase)
    else:
        step = tf.function(_make_train_step(tf, model, loss_fn, opt, params["clip_norm"], no_phase),
                           jit_compile=(mode == "xla"))
    epochs, nb = data.order.shape[0], data.steps_per_epoch
    it = iter(batch_dataset(tf, data.x, data.y, data.order.reshape(epochs * nb, -1)))
    loss: Any = None
    for epoch in range(epochs):
        opt.learning_rate = float(data.lr_per_epoch[epoch])
        for b in range(nb):
            i = epoch * nb + b
            with rec.step(i, epoch):
                with rec.phase("input_wait"):
                    xb, yb = next(it)
                loss = step(xb, yb)
            rec.record_loss(i, loss)
    extra: dict[str, Any] = {"last_step_loss": float(loss.numpy()),
                             "ignored": "steps_per_execution (keras_fit only)"}
    traces = tracing_count(step)
    if traces is not None:
        extra["traces"] = traces
    return VariantResult(final_loss=full_loss(data, model.get_weights()), extra=extra)


def _run_tf_eager(params: Mapping[str, Any], data: MlpData, rec: "StepRecorder") -> VariantResult:
    return _run_tf_loop(params, data, rec, "eager")


def _run_tf_function(params: Mapping[str, Any], data: MlpData, rec: "StepRecorder") -> VariantResult:
    return _run_tf_loop(params, data, rec, "function")


def _run_tf_xla(params: Mapping[str, Any], data: MlpData, rec: "StepRecorder") -> VariantResult:
    return _run_tf_loop(params, data, rec, "xla")


def _run_keras_fit(params: Mapping[str, Any], data: MlpData, rec: "StepRecorder") -> VariantResult:
    """``model.fit`` on the shared batches, steps timed by a callback.

    ``fit`` is called once per epoch (``initial_epoch=e, epochs=e+1``) on that epoch's
    batches: one call over all epochs would let a ``steps_per_execution`` that does not
    divide the batches per epoch run across the epoch boundary. Keras reuses its compiled
    train function across the calls. The per-step loss comes from a ``batch_loss`` metric
    (Keras's own ``loss`` log is a running mean over the epoch).
    """
    tf = import_tf()
    keras = tf.keras
    model = _keras_model(tf, data)
    opt = keras_optimizer(tf, params["optimizer"], params["lr"], params["momentum"], params["clip_norm"])
    spe = int(params["steps_per_execution"])
    model.compile(optimizer=opt, loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[_batch_loss_metric(keras)], steps_per_execution=spe)
    nb = data.steps_per_epoch
    callbacks: list[Any] = [_recorder_callback(keras, rec, nb, spe)]
    if params["schedule"] != "constant":
        table = [float(v) for v in data.lr_per_epoch]
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: table[epoch]))
    for epoch in range(data.order.shape[0]):
        ds = batch_dataset(tf, data.x, data.y, data.order[epoch])
        model.fit(ds, initial_epoch=epoch, epochs=epoch + 1, shuffle=False, verbose=0,
                  callbacks=callbacks)
    last = callbacks[0].last_loss
    extra = {"steps_per_execution": spe, "jit_compile": bool(model.jit_compile),
             "last_step_loss": last, "fit_calls": int(data.order.shape[0])}
    if spe > 1:
        extra["recording"] = (f"Keras calls the callbacks once per {spe} steps: each call is "
                              "recorded as a block of steps sharing its mean wall time (derived), "
                              "with the loss of its last step only")
    return VariantResult(final_loss=full_loss(data, model.get_weights()), extra=extra)


def _batch_loss_metric(keras: Any) -> Any:
    class BatchLoss(keras.metrics.Metric):
        """The loss of the last batch (Keras's ``loss`` log is an epoch running mean)."""

        def __init__(self) -> None:
            super().__init__(name="batch_loss")
            self.value = self.add_variable(shape=(), initializer="zeros", name="value")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            self.value.assign(keras.ops.mean(keras.losses.categorical_crossentropy(y_true, y_pred)))

        def result(self) -> Any:
            return self.value

        def reset_state(self) -> None:
            self.value.assign(0.0)

    return BatchLoss()


def _recorder_callback(keras: Any, rec: "StepRecorder", nb: int, spe: int) -> Any:
    class RecorderCallback(keras.callbacks.Callback):
        """Step markers for ``fit``: begin/end per step, or one block per execution."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.block: Any = None
            self.last_loss: float | None = None

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if spe == 1:
                rec.begin_step(self.epoch * nb + batch, self.epoch)
            else:
                n_steps = min(batch + spe, nb) - batch  # a short last call in the epoch
                self.block = rec.block(self.epoch * nb + batch, n_steps, self.epoch)
                self.block.__enter__()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            last = min(batch, nb - 1)  # Keras reports begin+spe-1 for a short last call
            if spe == 1:
                rec.end_step()
            elif self.block is not None:
                self.block.__exit__(None, None, None)
                self.block = None
            if logs is not None and "batch_loss" in logs:
                self.last_loss = float(logs["batch_loss"])
                rec.record_loss(self.epoch * nb + last, self.last_loss)

    return RecorderCallback()


_RUNNERS: dict[str, Callable[[Mapping[str, Any], MlpData, "StepRecorder"], VariantResult]] = {
    "numpy": _run_numpy,
    "tf_eager": _run_tf_eager,
    "tf_function": _run_tf_function,
    "tf_xla": _run_tf_xla,
    "keras_fit": _run_keras_fit,
    # The tf.distribute variants run in child processes (workloads.distributed); the final
    # loss over the whole data is the mlp's own.
    "mirrored": lambda p, d, rec: run_mirrored(p, d, rec, full_loss),
    "multi_worker": lambda p, d, rec: run_multi_worker(p, d, rec, full_loss),
}
MLP = register(Mlp())
