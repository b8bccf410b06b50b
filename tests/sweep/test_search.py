"""Searches instead of grids: sweep.space sampled by Optuna (random, tpe), seeded, validated up front."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, refused, run_bp

from bpcore.errors import ConfigError
from bpcore.kinds import load_config

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")


def line_search(search: str = "tpe", trials: int = 6, space: str = "{log_uniform: [1.0e-5, 3.0e-4]}",
                *more: str) -> list[str]:
    """Overrides that turn the line fit's grid sweep into a search of its learning rate."""
    return ["--set", f"sweep.search={search}", "--set", "sweep.grid=null", "--set", f"sweep.trials={trials}",
            "--set", f"sweep.space.trainer.learning_rate={space}", "--set", "sweep.model_name=null", *more]


def as_config(args: list[str]):
    return load_config(LINREG_SWEEP, [a for a in args if a != "--set"])


@pytest.mark.parametrize("overrides,message", [
    (line_search(space="{log_uniform: [0, 1.0e-3]}"),
     "sweep.space.trainer.learning_rate.log_uniform: a log range must stay above zero (got low = 0)"),
    (line_search(space="{uniform: [1.0e-3, 1.0e-4]}"),
     "sweep.space.trainer.learning_rate.uniform: low must be below high (got [0.001, 0.0001])"),
    (line_search(space="{uniform: [1.0e-3]}"),
     "sweep.space.trainer.learning_rate.uniform: needs [low, high], two values (got 1)"),
    (line_search(space="{uniform: [1.0e-4, 1.0e-3], choice: [1]}"),
     "sweep.space.trainer.learning_rate.log_uniform/uniform/int/choice: give exactly one kind of range "
     "(got uniform, choice)"),
    (line_search(space="{choice: [0.1, 0.1]}"), "sweep.space.trainer.learning_rate.choice: the values must differ"),
    (line_search(space="{choice: [1, 1.0]}"), "sweep.space.trainer.learning_rate.choice: the values must differ"),
    (line_search(space="{between: [1, 2]}"), "sweep.space.trainer.learning_rate.between: unknown key"),
    (line_search("tpe", 6, "{int: [1, 10]}", "--set", "sweep.space.trainer.iterations={uniform: [1, stable]}"),
     "sweep.space.trainer.iterations: only trainer.learning_rate's range may end at 'stable'"),
    (line_search("annealing"), "sweep.search = 'annealing': Input should be 'grid', 'random' or 'tpe'"),
    (["--set", "sweep.trials=4"], "sweep.trials: only a random or tpe search samples a space"),
    (["--set", "sweep.search=tpe", "--set", "sweep.trials=4", "--set", "sweep.space.seed={choice: [1]}"],
     "sweep.grid: a tpe search samples sweep.space, not a grid"),
    (line_search("random", 0), "sweep.trials = 0: Input should be greater than or equal to 1"),
    (["--set", "sweep.search=random", "--set", "sweep.grid=null"],
     "sweep.space: required key is missing (a random search needs sweep.space and sweep.trials)"),
])
def test_a_bad_search_is_one_config_error_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        as_config(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_space_key_the_config_lacks_is_exit_2_before_anything_runs(capsys):
    code, out, err = run_bp(["sweep", LINREG_SWEEP, *line_search("random", 4, "{choice: [1, 2]}", "--set",
                                                                  "sweep.space.trainer.lerning_rate={choice: [1]}")],
                            capsys)
    assert refused((code, out, err)) == (f"bp: {LINREG_SWEEP}: sweep.space.trainer.lerning_rate: unknown key "
                           "'trainer.lerning_rate' in the config")


def test_a_range_end_the_config_refuses_is_exit_2_naming_the_key_and_the_value(capsys):
    code, _, err = run_bp(["validate", LINREG_SWEEP, *line_search("random", 4, "{uniform: [-1.0e-4, 1.0e-4]}")],
                          capsys)
    assert code == 2
    assert err.strip() == (f"bp: {LINREG_SWEEP}: trainer.learning_rate = -0.0001: Input should be greater than 0 "
                           "(sweep.space.trainer.learning_rate at -0.0001)")


def test_validate_shows_the_space_and_the_trial_count(capsys):
    code, out, err = run_bp(["validate", LINREG_SWEEP, *line_search("tpe", 6, "{log_uniform: [1.0e-5, 3.0e-4]}",
                                                                      "--set", "sweep.space.seed={int: [0, 9]}")],
                            capsys)
    assert code == 0, err
    assert err.strip() == ("bp: tpe search: 6 trials of trainer.learning_rate log_uniform [1e-05, 0.0003]; "
                           "seed int [0, 9]")
    assert "search: tpe" in out and "trials: 6" in out


def test_the_same_config_draws_the_same_trials_and_a_different_seed_others():
    from bpcore.search.study import Search

    def drawn(search: str, *more: str) -> list[list[tuple]]:
        study = Search(as_config(line_search(search, 6, "{log_uniform: [1.0e-5, 3.0e-4]}", "--set",
                                             "sweep.space.trainer.iterations={choice: [10, 100]}", *more)))
        rounds = []
        while study.remaining:
            batch = study.ask(2)
            rounds.append([(p.index, p.name, p.values["trainer.learning_rate"]) for p in batch])
            for p in batch:  # a made-up score: TPE's later draws depend on it
                study.tell(p, p.values["trainer.learning_rate"] * p.values["trainer.iterations"])
        return rounds

    for search in ("random", "tpe"):
        first = drawn(search)
        assert [len(r) for r in first] == [2, 2, 2] and [i for r in first for i, _, _ in r] == list(range(6))
        assert all(1.0e-5 <= lr <= 3.0e-4 for r in first for _, _, lr in r)
        assert first == drawn(search)
        assert first != drawn(search, "--set", "seed=1")
    assert drawn("random")[0][0][1].startswith("lr=") and ", iterations=" in drawn("random")[0][0][1]


def test_tpe_learns_from_the_results_it_is_told():
    """After its random start, TPE draws nearer the best told so far than a random search does (best at 1e-4)."""
    import math
    import statistics

    from bpcore.search.study import Search, startup_trials

    def distances(search: str) -> list[float]:
        study = Search(as_config(line_search(search, 40, "{log_uniform: [1.0e-6, 1.0e-2]}")))
        found = []
        while study.remaining:
            (point,) = study.ask(1)
            found.append(abs(math.log10(point.values["trainer.learning_rate"]) + 4))
            study.tell(point, found[-1])  # the sweep minimises final_cost
        return found[startup_trials(40):]

    modelled, drawn = statistics.median(distances("tpe")), statistics.median(distances("random"))
    assert modelled < 0.6 * drawn, (modelled, drawn)


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_search_trains_its_trials_as_children_and_twice_gives_the_same(capsys, tracking_uri):
    mc = MlflowClient(tracking_uri)
    found = []
    for experiment in ("search-a", "search-b"):
        code, out, err = run_bp(["sweep", LINREG_SWEEP, "--tracking-uri", tracking_uri, *line_search(
            "tpe", 5, "{log_uniform: [1.0e-5, stable]}", "--set", f"experiment={experiment}")], capsys)
        assert code == 0, err
        parent = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
        kids = mc.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        found.append((parent, sorted((k.data.params["trainer.learning_rate"], k.info.run_name,
                                      k.data.metrics["final_cost"], k.data.tags["bp.status"]) for k in kids)))
    (parent, trials), (_, again) = found
    assert trials == again  # the same trials, the same results
    assert len(trials) == 5 and all(status == "finished" for *_, status in trials)
    assert parent.info.run_name == "linreg_lr_sweep" and parent.data.metrics["children"] == 5
    limit = parent.data.metrics["max_stable_lr"]  # the line fit's: 2 / the top eigenvalue of its data's Hessian
    assert 3.0e-4 < limit < 5.0e-4 and all(1.0e-5 <= float(lr) <= limit for lr, *_ in trials)
    assert parent.data.tags["bp.best_point"] in {name for _, name, *_ in trials}
    assert parent.data.params["sweep.search"] == "tpe" and parent.data.params["sweep.trials"] == "5"


def test_the_shipped_search_caps_the_network_rate_at_its_stability_limit(capsys):
    from bpcore import kinds
    from bpcore.train import stability

    config = load_config(MNIST_SEARCH)
    base = config.model_copy(update={"sweep": None})
    limit = stability.limit(base, kinds.load(base))
    assert 0.1 < limit < 2.0  # 2 (1 + 0.9) / sharpness of the starting weights
    code, _, err = run_bp(["validate", MNIST_SEARCH], capsys)
    assert code == 0
    assert err.strip() == "bp: tpe search: 12 trials of trainer.learning_rate log_uniform [0.0001, stable]"
