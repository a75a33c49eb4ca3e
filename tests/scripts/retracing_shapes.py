"""A custom loop whose batches have a different length every step, fed to a plain
``tf.function``: almost every call traces a new graph.

Prints what it measured itself: ``CALLS=`` (calls of train_step), ``TRACES=`` (a counter
incremented inside the traced Python function: it runs once per trace) and
``MEASURED_TRACE_SHARE=`` (time in the calls that traced, over the loop's time).
"""
import time

import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
data = rng.normal(size=(4000, 8)).astype("float32")
target = rng.normal(size=(4000, 1)).astype("float32")
w = tf.Variable(tf.zeros([8, 1]))
traces = 0


@tf.function
def train_step(x, y):
    global traces
    traces += 1  # Python side effect: runs only while tracing
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - y))
    w.assign_sub(0.01 * tape.gradient(loss, w))
    return loss


sizes = rng.permutation(np.arange(20, 60))  # every batch a new length


def batches():
    for size in sizes:
        start = int(rng.integers(0, 4000 - size))
        yield data[start:start + size], target[start:start + size]


ds = tf.data.Dataset.from_generator(batches, output_signature=(
    tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([None, 1], tf.float32)))
calls = 0
traced_s = total_s = 0.0
t_loop = time.perf_counter()
for x, y in ds:
    before = traces
    t0 = time.perf_counter()
    train_step(x, y)
    dt = time.perf_counter() - t0
    calls += 1
    if traces != before:
        traced_s += dt
total_s = time.perf_counter() - t_loop
print(f"CALLS={calls}")
print(f"TRACES={traces}")
print(f"MEASURED_TRACE_SHARE={traced_s / total_s:.4f}")
