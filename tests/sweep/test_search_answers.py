"""Searches that never give a wrong answer: the pruner's direction, choices drawn as written, ranges whose draws
the key can take, and ``bp validate`` agreeing with what ``bp sweep`` draws."""

from __future__ import annotations

import math
import re

import pytest
from support import REPO, run_bp

from bpcore.errors import ConfigError
from bpcore.kinds import load_config

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")


def mnist_search(*overrides: str):
    return load_config(MNIST_SEARCH, ["sweep.search=random", "sweep.trials=12", "sweep.prune=median",
                                       "sweep.space.trainer.learning_rate={log_uniform: [1.0e-4, 1.0]}", *overrides])


def line_search(space: str, *more: str) -> list[str]:
    """Overrides that turn the line fit's grid into a random search of ``space`` (one key, given in full)."""
    return ["sweep.search=random", "sweep.grid=null", "sweep.trials=20", "sweep.model_name=null", f"sweep.{space}",
            *more]


def accuracy(lr: float, epoch: int) -> float:
    """A made-up val_accuracy: best at lr 0.01, rising with the epochs."""
    return max(0.05, 0.95 - 0.2 * abs(math.log10(lr) + 2)) * (1 - 0.3 / epoch)


def pruned_trials(metric: str) -> list[int]:
    """The trials a random median-pruned search stops, in rounds of 3, each told a score on ``metric``."""
    from bpcore.search.study import Search

    search = Search(mnist_search(f"sweep.metric={metric}"))
    pruned = []
    while search.remaining:
        batch = search.ask(3)
        for point in batch:
            lr, status = point.values["trainer.learning_rate"], "finished"
            for epoch in (1, 2, 3):
                if search.report(point, epoch, accuracy(lr, epoch)):
                    pruned.append(point.index)
                    status = "pruned"
                    break
            best = accuracy(lr, 3)
            search.tell(point, best if metric == "best_val_accuracy" else 1 - best, status)
    return pruned


def test_pruning_stops_the_same_trials_whether_the_sweep_maximises_or_minimises_its_metric():
    by_accuracy, by_cost = pruned_trials("best_val_accuracy"), pruned_trials("final_cost")
    assert by_accuracy and by_accuracy == by_cost
    assert len(by_accuracy) < 12


def test_a_pruned_trial_is_behind_the_finished_ones_it_was_compared_with():
    """The pruner stops the least accurate trials (the direction of val_accuracy), under a minimised metric too."""
    from bpcore.search.study import Search

    search = Search(mnist_search("sweep.metric=final_cost"))
    first = search.ask(3)
    for point in first:
        for epoch in (1, 2):
            search.report(point, epoch, 0.9)
        search.tell(point, 0.1)
    good, bad = search.ask(2)
    assert search.report(good, 1, 0.95) is None
    assert "val_accuracy 0.2 behind" in search.report(bad, 1, 0.2)


def test_choices_that_print_alike_are_each_drawn_exactly_as_written():
    from bpcore.search.study import Search

    config = load_config(LINREG_SWEEP, line_search("space.trainer.learning_rate={choice: [0.1, 0.1000001]}"))
    search = Search(config)
    drawn = [p for _ in range(20) for p in search.ask(1) if search.tell(p, 1.0) is None]
    rates = {p.values["trainer.learning_rate"] for p in drawn}
    assert rates == {0.1, 0.1000001}
    assert {p.name for p in drawn} == {"lr=0.1", "lr=0.1000001"}  # a run's name is the value it trains with
    assert all(p.validated().trainer.learning_rate == p.values["trainer.learning_rate"] for p in drawn)


def test_a_value_drawn_from_a_float_range_is_the_value_its_name_shows():
    from bpcore.search.study import Search

    space = "space.trainer.learning_rate={log_uniform: [1.0e-5, 3.0e-4]}"
    search = Search(load_config(LINREG_SWEEP, line_search(space)))
    for point in search.ask(5):
        lr = point.values["trainer.learning_rate"]
        assert point.name == f"lr={lr:g}" and float(f"{lr:g}") == lr and 1.0e-5 <= lr <= 3.0e-4


# (space, what bp validate and bp sweep both say: None = accepted, else the one line's end)
SPACES = [
    ("space.trainer.iterations={uniform: [10, 20]}",
     "sweep.space.trainer.iterations: a uniform range draws fractions such as 14.321, and trainer.iterations takes "
     "whole numbers: use {int: [10, 20]}"),
    ("space.trainer.iterations={log_uniform: [10, 2000]}",
     "trainer.iterations takes whole numbers: use {int: [10, 2000]}"),
    ("space.trainer.iterations={int: [10, 20]}", None),
    ("space.trainer.iterations={uniform: [10, 20.5]}",
     "trainer.iterations = 20.5: Input should be a valid integer, got a number with a fractional part "
     "(sweep.space.trainer.iterations at 20.5)"),
    ("space.trainer.learning_rate={int: [1, 3]}", None),
    ("space.trainer.learning_rate={uniform: [1.0e-5, 3.0e-4]}", None),
    ("space.trainer.learning_rate={log_uniform: [1.0e-5, stable]}", None),
    ("space.trainer.learning_rate={choice: [1.0e-5, 1.0e-4, 0.0001000001]}", None),
    ("space.trainer.method={choice: [fast, direct]}", None),
    ("space.trainer.method={choice: [fast, slow]}",
     "trainer.method = 'slow': Input should be 'fast' or 'direct' (sweep.space.trainer.method at slow)"),
    ("space.seed={int: [0, 5]}", None),
    ("space.seed={uniform: [0, 5]}", "seed takes whole numbers: use {int: [0, 5]}"),
    ("space.data.rows={log_uniform: [10, 1000]}", "data.rows takes whole numbers: use {int: [10, 1000]}"),
    ("space.trainer.divergence_factor={uniform: [2, 100]}", None),
]
NETWORK_SPACES = [  # beside the shipped search's learning rate, up to its stability limit
    ("space.trainer.batch_size={log_uniform: [16, 256]}",
     "sweep.space.trainer.batch_size: a log_uniform range draws fractions such as 53.0176, and trainer.batch_size "
     "takes whole numbers: use {int: [16, 256]}"),
    ("space.trainer.epochs={uniform: [1, 3]}", "trainer.epochs takes whole numbers: use {int: [1, 3]}"),
    ("space.trainer.epochs={int: [1, 3]}", None),
    ("space.trainer.hidden={choice: [[64], [128, 64]]}", None),
    ("space.trainer.momentum={uniform: [0.0, 0.99]}", None),
    ("space.trainer.momentum={uniform: [0.5, 1.0]}",
     "trainer.momentum = 1.0: Input should be less than 1 (sweep.space.trainer.momentum at 1)"),
]
CASES = [(LINREG_SWEEP, *case) for case in SPACES] + [(MNIST_SEARCH, *case) for case in NETWORK_SPACES]


@pytest.mark.parametrize("path,space,refused", CASES,
                         ids=[f"{p.split('/')[-1][:5]}-{s.split('=')[0]}-{i}" for i, (p, s, _) in enumerate(CASES)])
def test_bp_validate_and_the_sweep_agree_on_a_search_space(path, space, refused, capsys):
    """``bp validate`` refuses exactly the spaces the sweep would refuse before it starts, with the same line; the
    spaces it accepts draw only trials that validate."""
    from bpcore.search.space import stable_limit
    from bpcore.search.study import Search

    overrides = line_search(space) if path == LINREG_SWEEP else [f"sweep.{space}", "sweep.trials=6"]
    code, _, err = run_bp(["validate", path, *[a for o in overrides for a in ("--set", o)]], capsys)
    config = load_config(path, overrides)
    if refused is None:
        assert code == 0, err
        search = Search(config, stable=stable_limit(config))
        while search.remaining:
            for point in search.ask(4):
                point.validated()
                search.tell(point, 1.0)
        return
    assert code == 2 and err.startswith(f"bp: {path}: ") and err.strip().endswith(refused), err
    assert "\n" not in err.strip()
    swept, out, said = run_bp(["sweep", path, *[a for o in overrides for a in ("--set", o)]], capsys)
    assert (swept, out, said) == (2, "", err)  # refused before anything started, in the same words
    with pytest.raises(ConfigError, match=re.escape(refused)):
        Search(config, stable=stable_limit(config))


def test_validate_prints_a_search_space_as_a_config_writes_it(capsys):
    code, out, _ = run_bp(["validate", LINREG_SWEEP, "--set", "sweep.search=tpe", "--set", "sweep.grid=null",
                           "--set", "sweep.trials=4", "--set", "sweep.space.trainer.learning_rate={int: [1, 3]}",
                           "--set", "sweep.space.trainer.method={choice: [fast, direct]}"], capsys)
    assert code == 0
    assert "    trainer.learning_rate: {int: [1, 3]}\n    trainer.method: {choice: [fast, direct]}\n" in out
    assert "int_" not in out and "uniform" not in out
    again = load_config(LINREG_SWEEP, ["sweep.search=tpe", "sweep.grid=null", "sweep.trials=4",
                                       "sweep.space.trainer.learning_rate={int: [1, 3]}",
                                       "sweep.space.trainer.method={choice: [fast, direct]}"])
    from bpcore.config.serial import to_yaml

    assert to_yaml(again) == out  # what validate prints is the config it read
