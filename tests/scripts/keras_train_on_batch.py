"""A Python loop over model.train_on_batch on NumPy batches: the classic Keras 2 pattern. Each
call runs Keras' compiled train function once; the batch is converted around it."""
import keras
import numpy as np

rng = np.random.default_rng(0)
X = rng.normal(size=(32 * 120, 32)).astype("float32")
Y = rng.normal(size=(32 * 120, 1)).astype("float32")
model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
for i in range(120):
    model.train_on_batch(X[i * 32:(i + 1) * 32], Y[i * 32:(i + 1) * 32])
print("done")
