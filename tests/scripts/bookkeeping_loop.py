"""A custom loop: a compiled step (tf.function) followed by per-step Python bookkeeping
(a loss history, a moving average, a hand-rolled progress statistic), the way users log
by hand. Also asks for more intra-op threads than a small machine has cores.

Prints what it measured itself: ``MEASURED_PYTHON_SHARE=`` (bookkeeping time over step
time, steps after the first 3), ``MEDIAN_PYTHON_SHARE=`` (the same, in the median step),
``MEASURED_FRAMEWORK_SHARE=`` (host time outside kernels over step time: one minus the
steps' kernel time, which is the same step's maths timed inside one in-graph loop, where no
call is dispatched, less that loop's own cost timed over 1x1 tensors) and ``STEPS=``. Keeps each step's wall time in
``STEP_MS`` and its thread's CPU time in ``STEP_CPU_MS`` (read by
bench/harness_overhead.py). ``BOOKKEEPING_STEPS`` sets the steps.
"""
import os
import time

import numpy as np
import tensorflow as tf

try:
    tf.config.threading.set_intra_op_parallelism_threads(8)
except RuntimeError as exc:  # the runtime was initialised before this line ran
    print(f"could not set intra-op threads: {exc}")

N_STEPS = int(os.environ.get("BOOKKEEPING_STEPS", "80"))
rng = np.random.default_rng(0)
X = tf.constant(rng.normal(size=(256, 256)).astype("float32"))
Y = tf.constant(rng.normal(size=(256, 64)).astype("float32"))
w1 = tf.Variable(rng.normal(size=(256, 256)).astype("float32") * 0.05)
w2 = tf.Variable(rng.normal(size=(256, 64)).astype("float32") * 0.05)


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2) - y))
    g1, g2 = tape.gradient(loss, [w1, w2])
    w1.assign_sub(0.01 * g1)
    w2.assign_sub(0.01 * g2)
    return loss


history = {"loss": [], "ema": [], "spread": []}
ema = None
STEP_MS = []
STEP_CPU_MS = []  # the step thread's own CPU time per step
python_s = step_s = 0.0
shares = []
for step in range(N_STEPS):
    c0 = time.thread_time()
    t0 = time.perf_counter()
    loss = train_step(X, Y)
    t1 = time.perf_counter()
    value = float(loss)
    history["loss"].append(value)
    ema = value if ema is None else 0.9 * ema + 0.1 * value
    history["ema"].append(ema)
    recent = sorted(history["loss"][-50:])
    spread = 0.0
    for i in range(12000):  # a hand-rolled statistic, in pure Python
        spread += (recent[i % len(recent)] - ema) ** 2 / (1 + i % 7)
    history["spread"].append(spread)
    t2 = time.perf_counter()
    STEP_MS.append((t2 - t0) * 1e3)
    STEP_CPU_MS.append((time.thread_time() - c0) * 1e3)
    if step >= 3:
        python_s += t2 - t1
        step_s += t2 - t0
        shares.append((t2 - t1) / (t2 - t0))
# The steps' kernel time, without a profiler: the same maths in one in-graph loop (no call
# to dispatch, no Python), less that loop's own per-iteration cost, timed on the same maths
# over 1x1 tensors whose kernels take next to nothing. Whatever else a step took (the
# bookkeeping, the call's dispatch and executor) is host time outside kernels. An upper
# bound on the call's framework cost taken from a 1x1 call alone would miss the executor's
# hand-offs to the intra-op pool that the real matmuls pay.
x1, y1 = tf.constant([[1.0]]), tf.constant([[0.5]])
v1, v2 = tf.Variable([[0.1]]), tf.Variable([[0.1]])


def step_maths(x, y, a, b):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(tf.nn.relu(tf.matmul(x, a)), b) - y))
    g1, g2 = tape.gradient(loss, [a, b])
    a.assign_sub(0.01 * g1)
    b.assign_sub(0.01 * g2)
    return loss


@tf.function
def in_graph(n, x, y, a, b):
    loss = tf.constant(0.0)
    for _ in tf.range(n):
        loss = step_maths(x, y, a, b)
    return loss


def per_iteration(*args, n=40, repeats=5):
    in_graph(tf.constant(2), *args)  # trace
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        in_graph(tf.constant(n), *args)
        times.append((time.perf_counter() - t0) / n)
    return sorted(times)[repeats // 2]


kernel_s = max(per_iteration(X, Y, w1, w2) - per_iteration(x1, y1, v1, v2), 0.0)
print(f"STEPS={N_STEPS}")
print(f"KERNEL_MS={kernel_s * 1e3:.4f}")
print(f"MEASURED_FRAMEWORK_SHARE={max(1.0 - kernel_s * (N_STEPS - 3) / step_s, 0.0):.4f}")
print(f"MEASURED_PYTHON_SHARE={python_s / step_s:.4f}")
print(f"MEDIAN_PYTHON_SHARE={sorted(shares)[len(shares) // 2]:.4f}")
