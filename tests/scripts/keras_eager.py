"""Keras ``fit`` with ``run_eagerly=True`` on a small model: every op of every step is
dispatched from Python, one at a time.

Ground truth, measured here: the same model trained again as a graph (the default,
``run_eagerly=False``) after the profiled window; ``MEASURED_GRAPH_REMOVES=`` is
1 - (median graph step / median eager step), each step timed by a callback from batch
begin to batch end (steps after the first 3).
"""
import statistics
import time

import keras
import numpy as np
import tensorflow as tf


class StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ms = []

    def on_train_batch_begin(self, batch, logs=None):
        self.t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.ms.append((time.perf_counter() - self.t) * 1e3)


def make_model(eager):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", run_eagerly=eager)
    return model


rng = np.random.default_rng(0)
X = rng.normal(size=(70 * 32, 32)).astype("float32")
Y = rng.normal(size=(70 * 32, 1)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(32).prefetch(2)

eager_times, graph_times = StepTimes(), StepTimes()
make_model(True).fit(ds, epochs=1, verbose=0, callbacks=[eager_times])  # 70 steps: the profiled window
make_model(False).fit(ds, epochs=1, verbose=0, callbacks=[graph_times])  # after it: the truth
eager_ms, graph_ms = statistics.median(eager_times.ms[3:]), statistics.median(graph_times.ms[3:])
print(f"EAGER_MS={eager_ms:.3f} GRAPH_MS={graph_ms:.3f}")
print(f"MEASURED_GRAPH_REMOVES={1 - graph_ms / eager_ms:.4f}")
