"""Fine-tuning in two Keras ``fit`` calls: fit with the base frozen, unfreeze, compile again
(a new optimizer), fit again. The second call's first step builds a new train function.

Prints what it measured itself, with its own callback: ``FIT_FIRST_STEPS=`` (the global step
number each fit call started at, comma-separated) and ``SECOND_FIT_FIRST_STEP_MS=`` (the
wall time of the second call's first batch)."""
import time

import keras
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
X = rng.normal(size=(64 * 24, 64)).astype("float32")
Y = rng.integers(0, 10, size=64 * 24)
ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(64).cache().prefetch(tf.data.AUTOTUNE)
keras.utils.set_random_seed(0)


class Clock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps, self.first_steps, self.batch_ms = 0, [], []

    def on_train_begin(self, logs=None):
        self.first_steps.append(self.steps)

    def on_train_batch_begin(self, batch, logs=None):
        self.t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ms.append((time.perf_counter() - self.t) * 1e3)
        self.steps += 1


clock = Clock()
base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu")])
model = keras.Sequential([base, keras.layers.Dense(10)])
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
base.trainable = False
model.compile(optimizer="adam", loss=loss)
model.fit(ds, epochs=1, verbose=0, callbacks=[clock])
base.trainable = True
model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
model.fit(ds, epochs=1, verbose=0, callbacks=[clock])
print("FIT_FIRST_STEPS=" + ",".join(map(str, clock.first_steps)))
print(f"SECOND_FIT_FIRST_STEP_MS={clock.batch_ms[clock.first_steps[1]]:.1f}")
