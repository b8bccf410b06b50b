"""The network's sharpness estimate against the exact top eigenvalue of a small network's Hessian."""

import numpy as np
import pytest
from support import REPO

from bpcore.train import sharpness
from bpcore.train.network import Network


def exact_hessian(net: Network, X: np.ndarray, Y: np.ndarray, l2: float, h: float = 1e-5) -> np.ndarray:
    """Column i: the central difference of backpropagation's gradient along parameter i (then symmetrised)."""
    size = sum(p.size for p in net.W + net.b)
    H = np.empty((size, size))
    for i in range(size):
        e = np.zeros(size)
        e[i] = 1.0
        H[:, i] = sharpness.hessian_vector(net, X, Y, e, l2, eps=h)
    return (H + H.T) / 2


@pytest.mark.parametrize("activation,cost,l2", [("sigmoid", "quadratic", 0.0), ("relu", "cross_entropy", 1e-3),
                                                ("tanh", "cross_entropy", 0.0)])
def test_the_estimate_is_within_5_percent_of_the_exact_top_eigenvalue(activation, cost, l2):
    rng = np.random.default_rng(3)
    net = sharpness.as_float64(Network.create([12, 16, 4], activation, cost, rng))  # 276 parameters
    X = rng.random((64, 12))
    Y = np.eye(4)[rng.integers(0, 4, 64)]
    exact = np.linalg.eigvalsh(exact_hessian(net, X, Y, l2)).max()
    found = sharpness.estimate(net, X, Y, l2, iterations=40, rng=np.random.default_rng(0))
    assert exact > 0
    assert abs(found.sharpness - exact) <= 0.05 * exact, (found, exact)
    assert found.iterations <= 40 and found.max_stable_lr == pytest.approx(2 / found.sharpness)


def test_the_estimate_leaves_the_network_as_it_was_and_is_seeded():
    rng = np.random.default_rng(5)
    net = Network.create([12, 16, 4], "sigmoid", "quadratic", rng)  # float32, as training holds it
    before = [p.copy() for p in net.W + net.b]
    X, Y = rng.random((32, 12)).astype(np.float32), np.eye(4)[rng.integers(0, 4, 32)]
    first = sharpness.estimate(net, X, Y, rng=np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(before, net.W + net.b))
    assert sharpness.estimate(net, X, Y, rng=np.random.default_rng(1)) == first


def test_a_negative_top_of_the_spectrum_is_shifted_away():
    """Power iteration finds the eigenvalue of largest magnitude; when that is negative, the top one is still found."""
    H = np.diag([-5.0, 2.0, 1.0, 0.5])
    top, _, _ = sharpness._power(lambda v: H @ v, np.ones(4), 200, 1e-9)
    assert top == pytest.approx(-5.0, rel=1e-3)
    shifted, _, _ = sharpness._power(lambda v: H @ v - top * v, np.ones(4), 200, 1e-9)
    assert shifted + top == pytest.approx(2.0, rel=1e-3)


def test_relu_kinks_do_not_break_the_products_on_mnist_sized_layers():
    """A step across a relu's kink makes the difference quotient jump; at the step used, H stays symmetric.

    (With a step of 1e-4 these two products differed by a factor of 70 on these digits.)"""
    from bpcore.kinds import load, load_config

    splits = load(load_config(str(REPO / "configs" / "mnist_lr_sweep.yaml"), []))
    X, Y = sharpness.batch(splits.train_X.astype(np.float64), splits.train_y, 256, 10, np.random.default_rng(1))
    net = sharpness.as_float64(Network.create([784, 256, 10], "relu", "cross_entropy", np.random.default_rng(0)))
    size = sum(p.size for p in net.W + net.b)
    rng = np.random.default_rng(5)
    u, v = (w / np.linalg.norm(w) for w in rng.standard_normal((2, size)))
    uHv, vHu = v @ sharpness.hessian_vector(net, X, Y, u), u @ sharpness.hessian_vector(net, X, Y, v)
    assert uHv == pytest.approx(vHu, rel=1e-3), (uHv, vHu)
