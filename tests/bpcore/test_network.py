"""Backpropagation: the chain against finite differences, the network against the chain and
against finite differences for every activation/cost pair, and training behaviour."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from support import blobs

from bpcore.config.models import NetTrainer
from bpcore.train.chain import Chain, descend
from bpcore.train.gradcheck import check_network, numerical_gradients, relative_error
from bpcore.train.network import Network
from bpcore.train.sgd import fit_network, shift_batch

PAIRS = [(a, c) for a in ("sigmoid", "tanh", "relu") for c in ("quadratic", "cross_entropy")]


def chain_as_network(chain: Chain) -> Network:
    k = len(chain.w) + 1
    return Network((1,) * k, "sigmoid", "quadratic",
                   [np.array([[w]]) for w in chain.w], [np.array([b]) for b in chain.b])


@pytest.mark.parametrize("seed", range(5))
def test_chain_partials_match_finite_differences(seed):
    chain = Chain.create(4, np.random.default_rng(seed))
    x, y = 0.8, 0.3
    grads = chain.partials(x, y)
    params = [np.array(chain.w), np.array(chain.b)]

    def cost():
        return Chain(params[0].tolist(), params[1].tolist()).partials(x, y)["cost"]

    num_w, num_b = numerical_gradients(cost, params)
    analytic_w = np.array([grads[f"dC_dw{l}"] for l in (1, 2, 3)])
    analytic_b = np.array([grads[f"dC_db{l}"] for l in (1, 2, 3)])
    assert relative_error(analytic_w, num_w) < 1e-7
    assert relative_error(analytic_b, num_b) < 1e-7
    # dC/da(0) is the derivative with respect to the input itself
    h = 1e-6
    num_dx = (Chain(chain.w, chain.b).partials(x + h, y)["cost"] - chain.partials(x - h, y)["cost"]) / (2 * h)
    assert grads["dC_da0"] == pytest.approx(num_dx, rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_chain_equals_the_1_1_1_1_network(seed):
    chain = Chain.create(4, np.random.default_rng(seed))
    grads = chain.partials(0.6, 0.9)
    cost, a_out, dW, db = chain_as_network(chain).gradients(np.array([[0.6]]), np.array([[0.9]]))
    assert cost == pytest.approx(grads["cost"], rel=1e-14)
    assert a_out[0, 0] == pytest.approx(grads["a3"], rel=1e-14)
    for l in (1, 2, 3):
        assert dW[l - 1][0, 0] == pytest.approx(grads[f"dC_dw{l}"], rel=1e-12)
        assert db[l - 1][0] == pytest.approx(grads[f"dC_db{l}"], rel=1e-12)


def test_chain_descends():
    history = descend(Chain.create(4, np.random.default_rng(0)), 1.0, 0.2, 1.0, 300)
    assert len(history) == 301
    costs = [h["cost"] for h in history]
    assert costs[-1] < 0.01 * costs[0]
    assert all(b <= a + 1e-15 for a, b in zip(costs, costs[1:]))


@pytest.mark.parametrize(("activation", "cost"), PAIRS)
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_network_gradients_match_finite_differences(activation, cost, l2):
    rng = np.random.default_rng(zlib.crc32(f"{activation}/{cost}".encode()))  # hash() is salted per process
    net = Network.create([6, 5, 4, 3], activation, cost, rng, np.float64)
    for b in net.b:
        b[:] = 0.1 * rng.standard_normal(b.shape)
    X = rng.standard_normal((8, 6))
    Y = np.eye(3)[rng.integers(0, 3, 8)]
    assert check_network(net, X, Y, l2) < 1e-6


def test_gradient_check_detects_a_wrong_gradient(monkeypatch):
    """The check itself can fail: break the sigmoid derivative and it must notice."""
    import bpcore.train.network as network

    real = network.times_derivative

    def wrong(name, delta, a):
        return real(name, delta, a) * 1.01

    monkeypatch.setattr(network, "times_derivative", wrong)
    rng = np.random.default_rng(0)
    net = Network.create([4, 3, 2], "sigmoid", "quadratic", rng, np.float64)
    X, Y = rng.standard_normal((5, 4)), np.eye(2)[rng.integers(0, 2, 5)]
    assert check_network(net, X, Y) > 1e-4


def test_save_and_load_without_pickle(tmp_path):
    net = Network.create([784, 16, 10], "relu", "cross_entropy", np.random.default_rng(0))
    net.save(tmp_path / "w.npz")
    back = Network.load(tmp_path / "w.npz")
    assert back.sizes == net.sizes and back.activation == "relu" and back.cost == "cross_entropy"
    for a, b in zip(net.W + net.b, back.W + back.b):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)


def test_float32_by_default_float64_on_request():
    assert Network.create([3, 2], rng=np.random.default_rng(0)).dtype == np.float32
    assert Network.create([3, 2], rng=np.random.default_rng(0), dtype=np.float64).dtype == np.float64


def trainer(**kw) -> NetTrainer:
    return NetTrainer(**{"hidden": [16], "learning_rate": 0.1, "epochs": 3, "batch_size": 32, **kw})


def test_training_learns_and_reports_every_epoch():
    X, y = blobs()
    seen = []
    fit = fit_network(X[:500], y[:500], X[500:], y[500:], trainer(momentum=0.9, learning_rate=0.02),
                      on_epoch=seen.append)
    assert fit.status == "finished" and [s.epoch for s in fit.epochs] == [1, 2, 3] == [s.epoch for s in seen]
    assert fit.epochs[-1].val_accuracy > 0.9 and fit.epochs[-1].cost < fit.epochs[0].cost
    assert all(a.train_seconds <= b.train_seconds for a, b in zip(fit.epochs, fit.epochs[1:]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_bit_identical_for_a_seed(dtype):
    X, y = blobs()
    runs = [fit_network(X, y, X[:50], y[:50], trainer(dtype=dtype, augment_shift=1, l2=1e-3), seed=3)
            for _ in range(2)]
    assert runs[0].net.W[0].dtype == np.dtype(dtype)
    for a, b in zip(runs[0].net.W + runs[0].net.b, runs[1].net.W + runs[1].net.b):
        assert a.tobytes() == b.tobytes()
    other = fit_network(X, y, X[:50], y[:50], trainer(dtype=dtype), seed=4)
    assert other.net.W[0].tobytes() != runs[0].net.W[0].tobytes()


def test_huge_learning_rate_diverges_with_the_epoch():
    X, y = blobs()
    fit = fit_network(X, y, X[:50], y[:50], trainer(learning_rate=1e6, activation="relu"))
    assert fit.status == "diverged" and fit.message.startswith("diverged at epoch 1")
    assert fit.epochs == []


def test_training_set_is_not_copied_per_epoch():
    """Epochs gather one mini-batch at a time: peak memory stays far below the training set."""
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.random((20_000, 784), dtype=np.float32)  # 63 MB
    X.flags.writeable = False  # and it is only ever read
    y = rng.integers(0, 10, 20_000)
    tracemalloc.start()
    try:
        fit_network(X, y, X[:0], y[:0], trainer(epochs=2, augment_shift=2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 10, f"peak {peak / 2**20:.1f} MiB while training on {X.nbytes / 2**20:.0f} MiB"


def test_shift_batch_moves_each_image_within_bounds():
    rng = np.random.default_rng(0)
    X = np.zeros((50, 784), dtype=np.float32)
    X[:, 14 * 28 + 14] = 1.0  # one lit pixel in the middle
    out = shift_batch(X, 2, rng)
    rows, cols = np.divmod(out.argmax(axis=1), 28)
    assert out.sum(axis=1).tolist() == [1.0] * 50
    assert set(rows - 14) <= {-2, -1, 0, 1, 2} and set(cols - 14) <= {-2, -1, 0, 1, 2}
    assert len(set(zip(rows, cols))) > 5
