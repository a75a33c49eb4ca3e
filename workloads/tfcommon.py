"""Shared TensorFlow helpers for the workloads: availability, the deferred import, the
batch pipeline, Keras optimizers and per-tensor gradient clipping.

Everything that touches TensorFlow takes the ``tf`` module as an argument or imports it
inside a function, so importing this module costs nothing and works without TensorFlow.
Must not import tensorflow, keras, pynvml or streamlit at module level.
"""
from __future__ import annotations

import importlib.util
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Sequence

import numpy as np

from profilers.errors import DependencyMissing

TF_HINT = ("Install it with `pip install tensorflow-cpu==2.21.0` (or `make setup`), "
           "or choose only NumPy/python variants.")

#: ``phase(name)`` -> a context manager; ``rec.phase`` for tf_eager, ``no_phase`` in graphs.
PhaseFn = Callable[[str], AbstractContextManager[Any]]


def tf_availability() -> tuple[bool, str | None]:
    """Whether TensorFlow can be imported, without importing it (``Variant.availability``)."""
    if importlib.util.find_spec("tensorflow") is None:
        return False, f"TensorFlow is not installed. {TF_HINT}"
    return True, None


def scipy_availability() -> tuple[bool, str | None]:
    if importlib.util.find_spec("scipy") is None:
        return False, "SciPy is not installed (needed for scipy.linalg.blas). `pip install scipy`."
    return True, None


def import_tf() -> Any:
    """``import tensorflow``, or ``DependencyMissing`` that says what to do."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise DependencyMissing(f"This variant needs TensorFlow, which cannot be imported: {exc}.",
                                TF_HINT) from None
    return tf


def no_phase(name: str) -> AbstractContextManager[Any]:
    """Stand-in for ``rec.phase`` inside traced code (host spans mean nothing there)."""
    return nullcontext()


def keras_optimizer(tf: Any, name: str, lr: float, momentum: float = 0.0,
                    clipnorm: float | None = None) -> Any:
    """A Keras 3 SGD or Adam with Keras's own defaults (Adam: beta_1 0.9, beta_2 0.999,
    epsilon 1e-7). ``clipnorm`` is Keras's per-tensor clip (used by ``keras_fit``)."""
    kw: dict[str, Any] = {"learning_rate": float(lr)}
    if clipnorm is not None:
        kw["clipnorm"] = float(clipnorm)
    if name == "sgd":
        return tf.keras.optimizers.SGD(momentum=float(momentum), **kw)
    if name == "adam":
        return tf.keras.optimizers.Adam(**kw)
    raise ValueError(f"unknown optimizer {name!r}")  # params are validated before run


def clip_each(tf: Any, grads: Sequence[Any], clip_norm: float | None) -> list[Any]:
    """Per-tensor ``tf.clip_by_norm`` (seed 002's train step); no-op when ``clip_norm`` is None."""
    if clip_norm is None:
        return list(grads)
    return [tf.clip_by_norm(g, clip_norm) for g in grads]


def batch_dataset(tf: Any, x: np.ndarray, y: np.ndarray, batch_index: np.ndarray) -> Any:
    """A tf.data pipeline yielding ``(x[idx], y[idx])`` for each row ``idx`` of
    ``batch_index`` (shape ``(n_batches, batch_size)``), in that order, no shuffling.

    The same gather the NumPy variant does with ``x[idx]``, done by tf.data, so every
    variant sees the same batches in the same order. tf.data's default options are kept
    (including its injected prefetch): this is the pipeline a user would write.
    """
    xt = tf.constant(x)
    yt = tf.constant(y)
    idx = tf.data.Dataset.from_tensor_slices(batch_index.astype(np.int32))
    return idx.map(lambda i: (tf.gather(xt, i), tf.gather(yt, i)))


def tracing_count(fn: Any) -> int | None:
    """How many times a ``tf.function`` was traced (None for a plain Python function)."""
    getter = getattr(fn, "experimental_get_tracing_count", None)
    return int(getter()) if getter is not None else None
