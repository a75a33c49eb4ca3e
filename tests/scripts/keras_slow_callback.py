"""Keras ``fit`` with a logging callback that does NumPy work after every batch: the
compiled train step is fast, the step is slow, and no TF setting can fix it.

Ground truth, measured here: the callback times its own body; ``MEASURED_CALLBACK_SHARE=``
is its time over the steps' time, pooled over the steps after the first 3. A step is
timed as sgdscope's step markers time it (callbacks run in order, and sgdscope's comes
last): from the batch's begin to the end of this callback's batch-end work, not to the
next batch's begin (Keras' own loop between batches is no step's).
"""
import time

import keras
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
X = rng.normal(size=(256 * 60, 128)).astype("float32")
Y = rng.integers(0, 10, size=256 * 60)
ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(256).cache().prefetch(tf.data.AUTOTUNE)


class WeightStats(keras.callbacks.Callback):
    """Per-batch statistics of a matrix, the way users log by hand."""

    def __init__(self):
        super().__init__()
        self.begins, self.ends, self.body_s = [], [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.begins.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        t = time.perf_counter()
        a = np.random.default_rng(batch).normal(size=(200, 200))
        for _ in range(3):
            a = np.linalg.inv(a @ a.T + np.eye(200))
        self.ends.append(time.perf_counter())
        self.body_s.append(self.ends[-1] - t)


stats = WeightStats()
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((128,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)])
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(ds, epochs=1, verbose=0, callbacks=[stats])
steps = [b - a for a, b in zip(stats.begins[3:], stats.ends[3:])]
print(f"MEASURED_CALLBACK_SHARE={sum(stats.body_s[3:]) / sum(steps):.4f}")
