"""Keras ``fit`` done right for a CPU: a compiled model with enough work per step, data
cached in memory and prefetched. Nothing in it should be flagged high.

"Enough work" is measured, not guessed: Keras pays about 1 ms of host time per step
(callbacks, the iterator, the train function's call). With 512-wide layers a step took
8 ms on 2 cores, so that overhead was 11-16% of it, astride xprof's 15% line, and
sgdscope rightly flagged it high in some runs. 1024-wide layers make a step ~19 ms."""
import keras
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
X = rng.normal(size=(256 * 70, 256)).astype("float32")
Y = rng.integers(0, 10, size=256 * 70)
ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(256).cache().prefetch(tf.data.AUTOTUNE)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(1024, activation="relu"),
                          keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(10)])
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(ds, epochs=1, verbose=0)
print("trained")
