"""Keras ``fit`` done right for a CPU: a compiled model with enough work per step, data
cached in memory and prefetched. Nothing in it should be flagged high."""
import keras
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
X = rng.normal(size=(256 * 70, 256)).astype("float32")
Y = rng.integers(0, 10, size=256 * 70)
ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(256).cache().prefetch(tf.data.AUTOTUNE)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(512, activation="relu"),
                          keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10)])
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(ds, epochs=1, verbose=0)
print("trained")
