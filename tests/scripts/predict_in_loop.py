"""A custom loop that calls Keras' ``model.predict`` on every batch "to monitor" it: the
compiled train step takes a millisecond, ``predict`` builds a data adapter, an iterator
and its callbacks again on every call.

Ground truth, measured here: ``MEASURED_PREDICT_SHARE=``, the time inside the
``predict`` calls over the steps' time (one ``train_step`` call to the next), pooled over
the steps after the first 3.
"""
import time

import keras
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
X = rng.normal(size=(64 * 60, 16)).astype("float32")
Y = X.sum(1, keepdims=True)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
opt = keras.optimizers.SGD(0.01)


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss


predict_s = step_s = 0.0
for i in range(60):
    x, y = X[i * 64:(i + 1) * 64], Y[i * 64:(i + 1) * 64]
    t0 = time.perf_counter()
    loss = train_step(x, y)
    t1 = time.perf_counter()
    pred = model.predict(x, verbose=0)
    t2 = time.perf_counter()
    if i >= 3:
        predict_s += t2 - t1
        step_s += t2 - t0
print(f"MEASURED_PREDICT_SHARE={predict_s / step_s:.4f}")
