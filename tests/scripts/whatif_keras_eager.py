"""Keras fit compiled with ``run_eagerly=True`` on a tiny model (what-if: the top fix is
``run_eagerly=False``, with the same loss). Seeded and unshuffled, so every run of it
computes the same losses; fit on arrays, so a larger batch can be tried (changes the maths).
"""
import numpy as np
import keras

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
X = rng.normal(size=(3840, 16)).astype("float32")
Y = (X @ rng.normal(size=(16, 1))).astype("float32")

model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
history = model.fit(X, Y, batch_size=32, epochs=1, shuffle=False, verbose=0)
print("final loss", history.history["loss"][-1])
