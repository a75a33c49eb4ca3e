"""Minibatch SGD for logistic regression in NumPy, fully vectorised: the batch is a
fancy-index gather inside a call to the user's own function (no ``np.`` or ``@`` on the
line that spends the time). The interpreter is a small part of each step.

Ground truth, measured here: the same steps on a one-example problem of the same shape in
Python (every call, index and update the same, next to no arithmetic) cost what the
interpreter costs; ``MEASURED_INTERP_SHARE=`` is that time over the real steps' time.
"""
import time

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def gradient(xb, yb, w):
    p = sigmoid(xb.dot(w))
    return xb.T.dot(p - yb) / len(yb)


def train(X, y, epochs, batch, lr=0.1, seed=0):
    rng = np.random.default_rng(seed)
    w = np.zeros(X.shape[1])
    order = np.arange(len(y))
    for epoch in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            g = gradient(X[idx], y[idx], w)
            w -= lr * g
    return w


def train_overhead(X, y, epochs, batch, lr=0.1, seed=0):
    """``train`` line for line, for the ground truth only (run on a tiny problem, so that
    the profiler's training loop stays ``train``'s)."""
    rng = np.random.default_rng(seed)
    w = np.zeros(X.shape[1])
    order = np.arange(len(y))
    for epoch in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            g = gradient(X[idx], y[idx], w)
            w -= lr * g
    return w


rng = np.random.default_rng(0)
X = rng.normal(size=(60000, 400))
y = (X[:, 0] > 0).astype(float)
t0 = time.perf_counter()
w = train(X, y, epochs=2, batch=2048)
real_s = time.perf_counter() - t0
steps = 2 * len(range(0, 60000, 2048))
tiny_X, tiny_y = X[:steps // 2, :1].copy(), y[:steps // 2].copy()
t0 = time.perf_counter()
train_overhead(tiny_X, tiny_y, epochs=2, batch=1)  # same number of steps, next to no arithmetic
tiny_s = time.perf_counter() - t0
print("accuracy", float(((X @ w > 0) == (y > 0)).mean()))
print(f"STEPS={steps}")
print(f"MEASURED_INTERP_SHARE={tiny_s / real_s:.4f}")
