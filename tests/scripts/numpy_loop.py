"""Gradient descent in plain NumPy (no TensorFlow), with a slow pure-Python loop in each
step (interpreter time). Profiled by sampling; its steps are the training loop's iterations.

Prints what it measured itself: ``MEASURED_INTERP_SHARE=`` (time in the pure-Python loop
over the training loop's time, steps after the first 3) and ``STEPS=``.
"""
import time

import numpy as np

rng = np.random.default_rng(1)
X = rng.normal(size=(5000, 50))
y = rng.normal(size=5000)
w = np.zeros(50)
python_s = loop_s = 0.0
for step in range(60):
    t0 = time.perf_counter()
    r = np.tanh(X @ w) - y  # elementwise and BLAS work on 5000 rows
    g = (X * r[:, None]).sum(axis=0) / len(y)
    w -= 0.01 * g
    t1 = time.perf_counter()
    checksum = 0.0
    for v in w.tolist() * 800:  # a slow pure-Python loop, for interpreter time
        checksum += v * 0.5
    t2 = time.perf_counter()
    if step >= 3:
        python_s += t2 - t1
        loop_s += t2 - t0
print("loss", float(np.mean((X @ w - y) ** 2)))
print("STEPS=60")
print(f"MEASURED_INTERP_SHARE={python_s / loop_s:.4f}")
