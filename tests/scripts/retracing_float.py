"""A tf.function step called with a changing Python float: every call traces again."""
import numpy as np
import tensorflow as tf

N_CALLS = 30
rng = np.random.default_rng(0)
X = tf.constant(rng.normal(size=(100, 10)).astype("float32"))
y = tf.constant(rng.normal(size=(100, 1)).astype("float32"))
w = tf.Variable(tf.zeros([10, 1]))


@tf.function
def train_step(lr):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(X, w) - y))
    w.assign_sub(lr * tape.gradient(loss, w))
    return loss


lr = 0.1
for i in range(N_CALLS):
    loss = train_step(lr)
    lr *= 0.99  # a new Python float each call: a new trace each call
print(f"CALLS={N_CALLS}")
