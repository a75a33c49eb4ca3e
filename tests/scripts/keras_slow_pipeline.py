"""Keras fit on a tf.data pipeline whose map sleeps (input-bound)."""
import time

import numpy as np
import tensorflow as tf
import keras


def slow_load(x, y):
    time.sleep(0.008)
    return x, y


rng = np.random.default_rng(0)
X = rng.normal(size=(1024, 20)).astype("float32")
Y = rng.normal(size=(1024, 1)).astype("float32")


def load(x, y):
    x, y = tf.numpy_function(slow_load, [x, y], [tf.float32, tf.float32])
    return tf.ensure_shape(x, (None, 20)), tf.ensure_shape(y, (None, 1))


ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(32).map(load)
model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(ds, epochs=1, verbose=0)
print("trained")
