"""A custom loop whose step is a ``tf.function``, with ``tf.config.run_functions_eagerly(True)``
left on from debugging: every call runs the Python body op by op.

Ground truth, measured here: a counter inside the function body (``BODY_RUNS=``; a graph
runs the body only when it traces, so ``BODY_RUNS`` equal to ``CALLS`` means every call
ran eagerly) and ``MEASURED_EAGER_SHARE=``, the median over steps (after the first 3) of
the body's time over the step's (from one ``next()`` to the next). The body's few small
kernels are counted in it: a bound on the eager share from above.
"""
import statistics
import time

import numpy as np
import tensorflow as tf

tf.config.run_functions_eagerly(True)
rng = np.random.default_rng(0)
X = rng.normal(size=(4096, 64)).astype("float32")
Y = X @ rng.normal(size=(64, 1)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(64).repeat(2).prefetch(2)
w = tf.Variable(tf.zeros((64, 1)))
opt = tf.keras.optimizers.SGD(0.01)
body = {"runs": 0, "ms": 0.0}


@tf.function
def train_step(x, t):
    t0 = time.perf_counter()
    body["runs"] += 1
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(x @ w - t))
    opt.apply_gradients([(tape.gradient(loss, w), w)])
    body["ms"] = (time.perf_counter() - t0) * 1e3
    return loss


calls = 0
shares = []
it = iter(ds)
prev = None
while True:
    t0 = time.perf_counter()
    if prev is not None and calls > 3:
        shares.append(prev / ((t0 - start) * 1e3))
    try:
        x, t = next(it)
    except StopIteration:
        break
    start = t0
    loss = train_step(x, t)
    calls += 1
    prev = body["ms"]
print(f"CALLS={calls} BODY_RUNS={body['runs']}")
print(f"MEASURED_EAGER_SHARE={statistics.median(shares):.4f}")
