"""The gradient-descent trainer against the seed's figures, its two paths and least squares."""

from __future__ import annotations

import numpy as np
import pytest
from support import SEED_B, SEED_COST, SEED_M, SEED_START_COST

from bpcore.config.models import LineData, LineTrainer
from bpcore.data.table import load_line_data
from bpcore.train.linreg import Moments, fit

REL = 1e-9


@pytest.fixture(scope="module")
def seed_table(seed_csv):
    return load_line_data(LineData(path=str(seed_csv)))


def trainer(**kw) -> LineTrainer:
    return LineTrainer(**{"learning_rate": 1e-4, "iterations": 1000, **kw})


@pytest.mark.parametrize("method", ["fast", "direct"])
def test_seed_figures(seed_table, method):
    result = fit(seed_table.X, seed_table.y, trainer(method=method))
    assert result.status == "finished"
    assert result.cost.shape == (1001,)
    assert result.cost[0] == pytest.approx(SEED_START_COST, rel=REL)
    assert result.b == pytest.approx(SEED_B, rel=REL)
    assert result.w[0] == pytest.approx(SEED_M, rel=REL)
    assert result.cost[-1] == pytest.approx(SEED_COST, rel=REL)


def seed_loop(x, y, lr, iterations):
    """The seed program's per-point loop, as a reference for every iterate."""
    b = m = 0.0
    n = len(x)
    history = []
    for _ in range(iterations):
        history.append(sum((yi - (m * xi + b)) ** 2 for xi, yi in zip(x, y)) / n)
        gb = sum(-(2 / n) * (yi - (m * xi + b)) for xi, yi in zip(x, y))
        gm = sum(-(2 / n) * xi * (yi - (m * xi + b)) for xi, yi in zip(x, y))
        b, m = b - lr * gb, m - lr * gm
    history.append(sum((yi - (m * xi + b)) ** 2 for xi, yi in zip(x, y)) / n)
    return b, m, np.array(history)


def test_every_iterate_matches_the_seed_loop(seed_table):
    x, y = seed_table.X[:, 0].tolist(), seed_table.y.tolist()
    b, m, history = seed_loop(x, y, 1e-4, 200)
    for method in ("fast", "direct"):
        result = fit(seed_table.X, seed_table.y, trainer(iterations=200, method=method))
        np.testing.assert_allclose(result.cost, history, rtol=REL)
        assert result.b == pytest.approx(b, rel=REL) and result.w[0] == pytest.approx(m, rel=REL)


def test_fast_path_equals_direct_path(seed_table):
    for lr in (1e-5, 1e-4, 3.9e-4):
        fast = fit(seed_table.X, seed_table.y, trainer(learning_rate=lr, method="fast"))
        direct = fit(seed_table.X, seed_table.y, trainer(learning_rate=lr, method="direct"))
        np.testing.assert_allclose(fast.cost, direct.cost, rtol=REL)
        np.testing.assert_allclose(fast.w, direct.w, rtol=REL)
        assert fast.b == pytest.approx(direct.b, rel=REL)


def test_fast_path_on_offset_multi_feature_data():
    """Large offsets and many chunks: the chunked centred moments stay exact."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50_000, 3)) * [1.0, 2.0, 0.5] + [1e3, -50.0, 7.0]
    y = X @ [0.5, -1.0, 2.0] + 4.0 + rng.normal(size=50_000)
    m = Moments.of(X, y, chunk=4096)
    Xc, yc = X - X.mean(0), y - y.mean()
    np.testing.assert_allclose(m.Sxx, Xc.T @ Xc / len(y), rtol=1e-10)
    np.testing.assert_allclose(m.sxy, Xc.T @ yc / len(y), rtol=1e-10)
    assert m.syy == pytest.approx(yc @ yc / len(y), rel=1e-10)
    cfg = dict(learning_rate=1e-7, iterations=300)
    fast = fit(X, y, trainer(**cfg, method="fast"))
    direct = fit(X, y, trainer(**cfg, method="direct"))
    np.testing.assert_allclose(fast.cost, direct.cost, rtol=REL)
    np.testing.assert_allclose(fast.w, direct.w, rtol=REL)


def test_multi_feature_converges_to_lstsq():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(500, 4)) + [1.0, -2.0, 0.5, 3.0]
    y = X @ [1.5, -0.7, 2.0, 0.3] - 1.2 + 0.1 * rng.normal(size=500)
    A = np.column_stack([np.ones(len(y)), X])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    probe = fit(X, y, trainer(iterations=1))
    lr = 1.0 / probe.lambda_max
    result = fit(X, y, trainer(learning_rate=lr, iterations=20_000))
    assert result.status == "finished"
    assert result.b == pytest.approx(coef[0], abs=1e-8)
    np.testing.assert_allclose(result.w, coef[1:], atol=1e-8)
    _, _, best_cost = Moments.of(X, y).least_squares()
    assert result.cost[-1] == pytest.approx(best_cost, rel=1e-10)
    residual = y - A @ coef
    assert result.optimum_cost == pytest.approx(residual @ residual / len(y), rel=1e-10)
    assert result.excess_cost[0] > 1 and result.excess_cost[-1] < 1e-9 and result.excess_cost.min() >= 0


def test_least_squares_with_a_repeated_feature():
    """A singular normal matrix still has a least-squares optimum (the minimum-norm one)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=200)
    X = np.column_stack([x, x])
    y = 3 * x + 1 + 0.1 * rng.normal(size=200)
    w, b, cost = Moments.of(X, y).least_squares()
    assert w[0] == pytest.approx(w[1]) and w.sum() == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-9)
    assert cost == pytest.approx(np.mean((y - np.polyval(np.polyfit(x, y, 1), x)) ** 2), rel=1e-9)


def test_largest_stable_learning_rate(seed_table):
    result = fit(seed_table.X, seed_table.y, trainer(iterations=1))
    A = np.column_stack([np.ones(len(seed_table.y)), seed_table.X])
    hessian = 2.0 * A.T @ A / len(seed_table.y)  # independent of Moments.hessian
    assert result.lambda_max == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-10)
    assert result.max_stable_lr == pytest.approx(4.0e-4, rel=0.01)
    below = fit(seed_table.X, seed_table.y, trainer(learning_rate=0.98 * result.max_stable_lr, iterations=3000))
    above = fit(seed_table.X, seed_table.y, trainer(learning_rate=1.02 * result.max_stable_lr, iterations=3000))
    assert below.status == "finished" and below.cost[-1] < below.cost[0]
    assert above.status == "diverged"


@pytest.mark.parametrize("method", ["fast", "direct"])
def test_divergence_stops_at_once(seed_table, method):
    result = fit(seed_table.X, seed_table.y, trainer(learning_rate=1e-3, method=method))
    assert result.status == "diverged"
    assert result.message.startswith("diverged at iteration ")
    k = int(result.message.split()[3].rstrip(":"))
    assert 0 < k < 20 and result.cost.size == k + 1
    assert np.all(np.isfinite(result.cost)) and np.all(np.isfinite(result.w))
    assert result.cost[-1] > 1e6 * result.cost[0] >= result.cost[-2]


def test_nan_cost_is_divergence():
    X = np.array([[1e200], [2e200], [3e200]])
    y = np.array([1.0, 2.0, 3.0])
    result = fit(X, y, trainer(learning_rate=1.0, iterations=5, method="direct"))
    assert result.status == "diverged"
    assert np.all(np.isfinite(result.cost)) and np.all(np.isfinite(result.w))


def test_bit_identical_reruns(seed_table):
    a = fit(seed_table.X, seed_table.y, trainer())
    b = fit(seed_table.X, seed_table.y, trainer())
    assert a.cost.tobytes() == b.cost.tobytes()
    assert a.w.tobytes() == b.w.tobytes() and a.b == b.b


def test_one_feature_fast_path_is_the_vector_fast_path_bit_for_bit(seed_table):
    """One feature runs on Python floats; it must give exactly the array version's iterates."""
    from bpcore.train.linreg import _descend, _fast_steps

    cfg = trainer()
    scalar = fit(seed_table.X, seed_table.y, cfg)
    w, b, cost, broke = _descend(_fast_steps(Moments.of(seed_table.X, seed_table.y)), np.zeros(1), cfg)
    assert broke is None
    assert scalar.cost.tobytes() == cost.tobytes() and scalar.w.tobytes() == w.tobytes() and scalar.b == b


@pytest.mark.parametrize("method", ["fast", "direct"])
def test_huge_values_whose_squares_fit_still_train(tmp_path, method):
    # 1e100 squared is 1e200, well inside float64: such data is fine, only the step must be tiny
    path = tmp_path / "big.csv"
    path.write_text("x,y\n1e100,3e100\n2e100,5e100\n3e100,7e100\n")
    table = load_line_data(LineData(path=str(path)))
    stable = fit(table.X, table.y, trainer(iterations=1)).max_stable_lr
    result = fit(table.X, table.y, trainer(learning_rate=stable / 2, iterations=200, method=method))
    assert result.status == "finished" and np.isfinite(result.cost).all()
    assert result.cost[-1] < 0.1 * result.cost[0]  # the slope fits; b (curvature 2, not 1e200) barely moves
