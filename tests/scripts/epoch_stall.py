"""A custom loop over 3 epochs of a tf.data pipeline whose map sleeps, without prefetch
(input-bound). After each epoch it writes a checkpoint to a slow network disk: one step in
the profiled window stalls for half a second at the epoch boundary.

Prints what it measured itself: ``MEASURED_INPUT_SHARE=`` (time in ``next(iterator)``
over step time, every step after the first 3; the checkpoint is not part of a step),
``STALL_MS=`` (the longest checkpoint write) and ``STEPS_PER_EPOCH=``.
"""
import os
import tempfile
import time

import numpy as np
import tensorflow as tf


def slow_decode(x):
    time.sleep(0.006)
    return x


rng = np.random.default_rng(0)
data = rng.normal(size=(480, 16)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices(data).batch(16)
ds = ds.map(lambda x: tf.ensure_shape(tf.numpy_function(slow_decode, [x], tf.float32), (None, 16)))
options = tf.data.Options()
options.experimental_optimization.inject_prefetch = False
ds = ds.with_options(options)

w = tf.Variable(tf.zeros([16, 1]))
ckpt = tf.train.Checkpoint(w=w)
ckpt_dir = tempfile.mkdtemp()


@tf.function
def train_step(x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - 1.0))
    w.assign_sub(0.01 * tape.gradient(loss, w))
    return loss


def save_checkpoint(epoch):
    ckpt.write(os.path.join(ckpt_dir, f"epoch-{epoch}"))
    time.sleep(0.5)  # the network disk


step = 0
wait = total = 0.0
stall = 0.0
for epoch in range(3):
    it = iter(ds)
    while True:
        t0 = time.perf_counter()
        try:
            x = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        train_step(x)
        t2 = time.perf_counter()
        if step >= 3:
            wait += t1 - t0
            total += t2 - t0
        step += 1
    t = time.perf_counter()
    save_checkpoint(epoch)
    stall = max(stall, time.perf_counter() - t)
print(f"STEPS_PER_EPOCH={step // 3}")
print(f"STALL_MS={stall * 1e3:.1f}")
print(f"MEASURED_INPUT_SHARE={wait / total:.4f}")
