"""Seed 001: a tiny linear regression trained eagerly (GradientTape, no tf.function)."""
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(1)
X = tf.constant(rng.normal(size=(3, 2)).astype("float32"))
y = tf.constant(rng.normal(size=(3, 1)).astype("float32"))
w = tf.Variable(tf.zeros([2, 1]))
b = tf.Variable(tf.zeros([1]))
lr = 0.1

for step in range(150):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(X, w) + b - y))
    dw, db = tape.gradient(loss, [w, b])
    w.assign_sub(lr * dw)
    b.assign_sub(lr * db)
print("final loss", float(loss))
