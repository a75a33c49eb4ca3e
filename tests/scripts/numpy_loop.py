"""Gradient descent in plain NumPy (no TensorFlow): profiled by sampling."""
import numpy as np

rng = np.random.default_rng(1)
X = rng.normal(size=(4000, 200))
y = rng.normal(size=4000)
w = np.zeros(200)
for step in range(120):
    r = X @ w - y
    g = X.T @ r / len(y)
    w -= 0.01 * g
    checksum = 0.0
    for v in w.tolist() * 20:  # a slow pure-Python loop, for interpreter time
        checksum += float(v) * 0.5
print("loss", float(np.mean((X @ w - y) ** 2)))
