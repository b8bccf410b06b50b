"""Sweep grids: expansion, naming, validation of every point, the objective; bp's refusals."""

from __future__ import annotations

import pytest
from support import REPO, refused, run_bp

from bpcore.config.serial import to_dict
from bpcore.errors import ConfigError
from bpcore.kinds import load_config
from bpcore.search.grid import better, expand, objective

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
LINREG = str(REPO / "configs" / "linreg.yaml")


def test_shipped_linreg_sweep_is_eight_learning_rates_up_to_5e_4():
    points = expand(load_config(LINREG_SWEEP))
    rates = [p.validated().trainer.learning_rate for p in points]
    assert len(points) == 8 and min(rates) == 1e-5 and max(rates) == 5e-4
    assert [p.name for p in points][:2] == ["lr=1e-05", "lr=2e-05"] and points[4].name == "lr=0.0002"
    assert all(p.validated().sweep is None and "sweep" not in p.config for p in points)
    assert objective(load_config(LINREG_SWEEP)) == ("final_cost", "minimize")


def test_shipped_mnist_sweep_spans_two_orders_of_magnitude_and_maximises_accuracy():
    config = load_config(MNIST_SWEEP)
    rates = [p.validated().trainer.learning_rate for p in expand(config)]
    assert max(rates) / min(rates) >= 100
    assert objective(config) == ("best_val_accuracy", "maximize")
    assert config.sweep.model_name


def test_grid_is_the_cartesian_product_in_key_order_with_nested_keys_flattened():
    config = load_config(LINREG_SWEEP, ["sweep.grid.trainer.learning_rate=[1e-4, 2e-4]",
                                        "sweep.grid.seed=[1, 2, 3]"])
    points = expand(config)
    assert [(p.validated().trainer.learning_rate, p.validated().seed) for p in points] == [
        (1e-4, 1), (1e-4, 2), (1e-4, 3), (2e-4, 1), (2e-4, 2), (2e-4, 3)]
    assert points[1].name == "lr=0.0001, seed=2" and points[1].values == {"trainer.learning_rate": 1e-4, "seed": 2}
    assert [p.index for p in points] == list(range(6))


def test_points_are_named_by_short_keys_and_compact_values(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("kind: mnist\ntrainer: {learning_rate: 0.1, epochs: 1}\n"
                    "sweep: {grid: {trainer.l2: [0.0], data.limit: [100], trainer.hidden: [[16, 8]]}}\n")
    (point,) = expand(load_config(path))
    assert point.name == "l2=0, limit=100, hidden=[16, 8]"
    assert point.validated().trainer.hidden == [16, 8]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["sweep.grid.trainer.learning_rate=[1e-4, -1]"],
         "trainer.learning_rate = -1: Input should be greater than 0 (sweep.grid point trainer.learning_rate=-1)"),
        (["sweep.grid.trainer.learnin_rate=[1]"],
         "sweep.grid.trainer.learnin_rate: unknown key 'trainer.learnin_rate'"),
        (["sweep.grid.kind=[mnist]"], "sweep.grid.kind: cannot be swept"),
        (["sweep.grid.experiment=[a, b]"], "sweep.grid.experiment: cannot be swept"),
        (["sweep.grid.seed=[]"], "sweep.grid.seed: needs at least one value"),
        (["sweep.grid.seed=3"], "sweep.grid.seed = 3: Input should be a valid list"),
        (["sweep.grid={}"], "sweep.grid = {}: Dictionary should have at least 1 item"),
        (["sweep.goal=up"], "sweep.goal = 'up': Input should be 'minimize' or 'maximize'"),
        (["sweep.metric=val_accuracy"], "sweep.metric = 'val_accuracy': not a metric a linreg run logs"),
    ],
)
def test_bad_grids_name_the_key(overrides, expected):
    with pytest.raises(ConfigError) as err:
        config = load_config(LINREG_SWEEP, overrides)
        expand(config, LINREG_SWEEP)
        objective(config)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_objective_follows_the_config():
    config = load_config(MNIST_SWEEP, ["sweep.metric=final_cost"])
    assert objective(config) == ("final_cost", "minimize")
    assert objective(load_config(MNIST_SWEEP, ["sweep.metric=final_cost", "sweep.goal=maximize"])) == (
        "final_cost", "maximize")
    assert better(0.9, 0.8, "maximize") and not better(0.8, 0.9, "maximize")
    assert better(1.0, 2.0, "minimize") and not better(2.0, 2.0, "minimize") and better(5.0, None, "minimize")


def test_a_config_without_sweep_has_no_sweep_in_its_record():
    assert "sweep" not in to_dict(load_config(LINREG))
    with pytest.raises(ConfigError, match="sweep.grid: required key is missing"):
        expand(load_config(LINREG), LINREG)


def test_bp_sweep_refuses_a_config_without_a_grid(capsys):
    assert refused(run_bp(["sweep", LINREG], capsys)) == \
        f"bp: {LINREG}: sweep.grid: required key is missing (bp sweep needs a grid of values)"


def test_bp_sweep_refuses_a_bad_grid_point_before_anything_runs(capsys):
    refused(run_bp(["sweep", LINREG_SWEEP, "--set", "sweep.grid.trainer.iterations=[10, 0]"], capsys),
            "trainer.iterations = 0: Input should be greater than or equal to 1")


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bp_sweep_parallel_must_be_a_positive_count(capsys, value):
    code, _, err = run_bp(["sweep", LINREG_SWEEP, "--parallel", value], capsys)
    assert code == 2 and "--parallel" in err and "at least 1" in err


def test_bp_validate_counts_grid_points(capsys):
    code, out, err = run_bp(["validate", LINREG_SWEEP], capsys)
    assert code == 0 and "bp: 8 grid points" in err
    assert "sweep:" in out and "trainer.learning_rate:" in out
