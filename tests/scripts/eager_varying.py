"""An eager loop (no tf.function, no tf.data) whose steps dispatch a different number of
ops each time (a data-dependent number of refinement passes): no dispatch pattern repeats,
there is no iterator fetch and no function call to cut the trace at.

Prints ``STEPS=`` (iterations of the training loop).
"""
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
X = tf.constant(rng.normal(size=(64, 8)).astype("float32"))
y = tf.constant(rng.normal(size=(64, 1)).astype("float32"))
w = tf.Variable(tf.zeros([8, 1]))
passes = rng.integers(1, 7, size=40)
for step, n in enumerate(passes):
    with tf.GradientTape() as tape:
        h = tf.matmul(X, w)
        for _ in range(int(n)):
            h = tf.tanh(h) * 0.9 + 0.1 * tf.sin(h)
        loss = tf.reduce_mean(tf.square(h - y))
    w.assign_sub(0.05 * tape.gradient(loss, w))
print(f"STEPS={len(passes)}")
