"""A custom training loop whose tf.data map sleeps, with no prefetch (input-bound).

Prints the share of loop time it measured itself around ``next(iterator)`` as
``MEASURED_INPUT_SHARE=<x>`` (steps after the first 3).
"""
import time

import numpy as np
import tensorflow as tf


def slow_decode(x):
    time.sleep(0.006)
    return x


rng = np.random.default_rng(0)
data = rng.normal(size=(1600, 16)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices(data).batch(16)
ds = ds.map(lambda x: tf.ensure_shape(tf.numpy_function(slow_decode, [x], tf.float32), (None, 16)))
options = tf.data.Options()
options.experimental_optimization.inject_prefetch = False  # really no prefetch
ds = ds.with_options(options)

w = tf.Variable(tf.zeros([16, 1]))


@tf.function
def train_step(x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - 1.0))
    grad = tape.gradient(loss, w)
    w.assign_sub(0.01 * grad)
    return loss


it = iter(ds)
wait = total = 0.0
for step in range(60):
    t0 = time.perf_counter()
    x = next(it)
    t1 = time.perf_counter()
    train_step(x)
    t2 = time.perf_counter()
    if step >= 3:
        wait += t1 - t0
        total += t2 - t0
print(f"MEASURED_INPUT_SHARE={wait / total:.4f}")
