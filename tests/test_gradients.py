"""The NumPy variants' hand-written gradients against central finite differences.

float64 copies of small shapes (the maths is shape-generic), so the check is tight and
fast. No TensorFlow.
"""
from __future__ import annotations

import numpy as np
import pytest

from workloads.linreg import linreg_backward, linreg_forward
from workloads.mlp import clip_by_norm, mlp_backward, mlp_forward


def central_differences(loss_of, params: list[np.ndarray], h: float = 1e-6) -> list[np.ndarray]:
    """d loss / d p for every entry of every array in ``params`` (perturbed in place)."""
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            keep = p[idx]
            p[idx] = keep + h
            up = loss_of()
            p[idx] = keep - h
            down = loss_of()
            p[idx] = keep
            g[idx] = (up - down) / (2 * h)
        grads.append(g)
    return grads


def test_linreg_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 3))
    y = rng.standard_normal(7)
    w = rng.standard_normal(3)
    _, r = linreg_forward(x, w, y)
    analytic = linreg_backward(x, r)
    (numeric,) = central_differences(lambda: float(linreg_forward(x, w, y)[0]), [w])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_linreg_loss_is_half_mean_square():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # seed 001's data
    y = np.array([7.0, 8.0, 9.0])
    loss, r = linreg_forward(x, np.zeros(2), y)
    assert loss == pytest.approx(0.5 * (49 + 64 + 81) / 3)
    np.testing.assert_array_equal(r, -y)


def _mlp_case(seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out, batch = 5, 6, 4, 8
    params = [rng.standard_normal((n_in, n_hidden)), rng.standard_normal(n_hidden) * 0.5,
              rng.standard_normal((n_hidden, n_out)), rng.standard_normal(n_out) * 0.5]
    x = rng.random((batch, n_in))
    y = np.eye(n_out)[rng.integers(0, n_out, batch)]
    return params, x, y


@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_gradients_match_finite_differences(seed):
    params, x, y = _mlp_case(seed)
    loss, cache = mlp_forward(params, x, y)
    assert np.any(cache[1] == 0) and np.any(cache[1] > 0), "the case should have dead and live relus"
    analytic = mlp_backward(params, cache, y)
    numeric = central_differences(lambda: float(mlp_forward(params, x, y)[0]), params)
    for name, a, n in zip(("dW1", "db1", "dW2", "db2"), analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-8, err_msg=name)


def test_mlp_loss_is_mean_softmax_cross_entropy():
    params, x, y = _mlp_case(2)
    loss, (_, h, p) = mlp_forward(params, x, y)
    z = h @ params[2] + params[3]
    naive = -np.mean(np.sum(y * np.log(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)), axis=1))
    assert float(loss) == pytest.approx(naive, rel=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)


def test_mlp_loss_is_stable_for_large_logits():
    params, x, y = _mlp_case(3)
    params[3] = params[3] + np.array([800.0, 0.0, 0.0, 0.0])  # exp(800) overflows float64
    loss, cache = mlp_forward(params, x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(mlp_backward(params, cache, y)[0]))


def test_clip_by_norm_scales_only_long_tensors():
    g = np.array([3.0, 4.0], dtype=np.float32)  # norm 5
    np.testing.assert_allclose(clip_by_norm(g, 1.0), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(clip_by_norm(g, 10.0), g, rtol=1e-6)
    assert clip_by_norm(g, 1.0).dtype == np.float32
