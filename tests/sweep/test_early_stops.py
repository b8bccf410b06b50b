"""Children a sweep stops early: pruned by a search (median, successive halving), skipped above a learning rate
that diverged (divergence-aware grids), and the re-run of a pruned child."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, history, refused, run_bp

from bpcore.errors import ConfigError
from bpcore.kinds import load_config
from bpcore.search import grid

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")
RATES = "[1.0e-5, 1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1]"  # the line fit diverges from 1e-3 on (its limit is 3.8e-4)


@pytest.fixture
def flow_log(monkeypatch):
    """The lines a sweep logs of its skips, as they reach its flow run's logger (Prefect reconfigures its loggers
    as a flow starts, dropping a handler a test adds before)."""
    from flows.sweep import skips

    records: list[str] = []

    class Recording:
        def __init__(self, logger):
            self.logger = logger

        def info(self, message, *args):
            records.append(message % args)
            self.logger.info(message, *args)

    for name in ("announce", "told_ended"):
        original = getattr(skips, name)
        monkeypatch.setattr(skips, name, lambda logger, *a, _f=original: _f(Recording(logger), *a))
    return records


def logged(records: list) -> str:
    """The messages logged since the last call, a line each."""
    text = "\n".join(records)
    records.clear()
    return text


def children(mc: MlflowClient, out: str) -> tuple:
    parent = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    kids = mc.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return parent, {k.data.params["trainer.learning_rate"]: k for k in kids}


def test_prune_is_for_searches_of_the_network(capsys):
    with pytest.raises(ConfigError) as err:
        load_config(LINREG_SWEEP, ["sweep.prune=median"])
    assert "sweep.prune: only a random or tpe search prunes its trials" in str(err.value)
    done = run_bp(["sweep", LINREG_SWEEP, "--set", "sweep.search=random", "--set", "sweep.grid=null",
                   "--set", "sweep.trials=3", "--set", "sweep.space.trainer.learning_rate={uniform: [1, 2]}",
                   "--set", "sweep.prune=halving"], capsys)
    refused(done, "sweep.prune = halving: pruning stops network trials on their per-epoch val_accuracy")


def test_the_rates_above_a_divergence_are_those_with_the_same_other_values():
    config = load_config(MNIST_SWEEP, ["sweep.grid.trainer.learning_rate=[0.1, 0.01, 1.0]",
                                       "sweep.grid.trainer.batch_size=[16, 32]"])
    points = grid.expand(config)
    assert [float(p.values[grid.RATE]) for p in grid.by_rate(points)] == [0.01, 0.01, 0.1, 0.1, 1.0, 1.0]
    diverged = next(p for p in points if p.values == {grid.RATE: 0.1, "trainer.batch_size": 32})
    assert [p.values for p in grid.above(diverged, points)] == [{grid.RATE: 1.0, "trainer.batch_size": 32}]
    assert grid.skip_reason(diverged) == ("skipped: learning rate 0.1 diverged with the same trainer.batch_size=32 "
                                          "(sweep.skip_above_divergence)")
    assert grid.skips_above_divergence(config)
    assert not grid.skips_above_divergence(load_config(MNIST_SWEEP, ["sweep.skip_above_divergence=false"]))


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_grid_skips_the_rates_above_one_that_diverged_and_can_be_told_not_to(capsys, flow_log, tracking_uri):
    mc = MlflowClient(tracking_uri)
    found, said = {}, {}
    for skip in ("true", "false"):
        code, out, err = run_bp(["sweep", LINREG_SWEEP, "--tracking-uri", tracking_uri, "--parallel", "1",
                                 "--set", f"sweep.grid.trainer.learning_rate={RATES}", "--set", "sweep.model_name=null",
                                 "--set", f"sweep.skip_above_divergence={skip}", "--set", f"experiment=skip-{skip}"],
                                capsys)
        assert code == 0, err
        found[skip], said[skip] = children(mc, out), logged(flow_log)
    parent, kids = found["true"]
    assert {lr: k.data.tags["bp.status"] for lr, k in kids.items()} == {
        "1e-05": "finished", "0.0001": "finished", "0.001": "diverged", "0.01": "skipped", "0.1": "skipped"}
    for lr in ("0.01", "0.1"):  # recorded, comparable, not trained
        run = kids[lr].info
        assert run.status == "KILLED" and kids[lr].data.metrics == {}
        assert kids[lr].data.tags["bp.failure_reason"] == ("skipped: learning rate 0.001 diverged "
                                                          "(sweep.skip_above_divergence)")
        assert kids[lr].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.metrics["skipped"] == 2 and parent.data.metrics["diverged"] == 1
    assert len(re.findall(r"lr=\S+ diverged: (?:skipped|told)", said["true"])) == 1  # one at a time: neither
    # larger rate had started
    assert "lr=0.001 diverged: skipped lr=0.01, lr=0.1 (not started)\n" in said["true"] + "\n"
    skipped = kids["0.01"].info.run_id  # never trained: nothing to reproduce, and nothing new in the store
    code, out, err = run_bp(["reproduce", skipped, "--tracking-uri", tracking_uri], capsys)
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert err.startswith(f"bp: run {skipped} is a sweep's skipped child: its sweep did not train it (skipped: "
                          "learning rate 0.001 diverged (sweep.skip_above_divergence))")
    assert len(mc.search_runs([parent.info.experiment_id])) == 6
    full_parent, full = found["false"]
    assert {lr: k.data.tags["bp.status"] for lr, k in full.items()}["0.1"] == "diverged"  # trained: it diverged
    assert "skipped" not in full_parent.data.metrics
    assert kids[parent.data.tags["bp.best_point"].removeprefix("lr=")].data.params["trainer.learning_rate"] == \
        full[full_parent.data.tags["bp.best_point"].removeprefix("lr=")].data.params["trainer.learning_rate"]


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_network_told_to_skip_as_it_trains_stops_after_its_epoch_killed(tracking_uri):
    from flows.experiments import steering
    from flows.experiments.registry import flow_for

    config = load_config(MNIST_SWEEP, ["trainer.epochs=5", "experiment=skip-running"]).model_copy(
        update={"sweep": None})
    steer = steering.Steer()

    def judge(epoch, figures):  # the sweep's word comes while epoch 1 is being logged
        steer.cancel("skipped: learning rate 0.5 diverged (sweep.skip_above_divergence)")

    steer.judge = judge
    with steering.steered(steer):
        outcome = flow_for("mnist")(config=config, tracking_uri=tracking_uri)
    mc = MlflowClient(tracking_uri)
    run = mc.get_run(outcome.run_id)
    assert run.info.status == "KILLED" and run.data.tags["bp.status"] == "skipped"
    assert run.data.tags["bp.failure_reason"].startswith("skipped: learning rate 0.5 diverged")
    steps, _ = history(mc, run.info.run_id, "val_accuracy")
    assert list(steps) == [1, 2]  # the epoch it was in when told, then stopped
    assert not [a for a in mc.list_artifacts(run.info.run_id) if a.path == "model"]


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_what_a_grid_says_of_its_skips_is_what_its_table_shows(capsys, flow_log, tracking_uri):
    """Two at a time, whether a rate above the divergence is skipped or trains (and diverges) depends on timing;
    the log says which, in the table's words."""
    mc = MlflowClient(tracking_uri)
    code, out, err = run_bp(["sweep", LINREG_SWEEP, "--tracking-uri", tracking_uri, "--parallel", "2", "--set",
                             "sweep.grid.trainer.learning_rate=[1.0e-4, 4.0e-4, 5.0e-4, 1.0e-3, 1.0e-2]", "--set",
                             "sweep.model_name=null", "--set", "experiment=skip-story"], capsys)
    assert code == 0, err
    _, kids = children(mc, out)
    err = logged(flow_log)
    table = {k.info.run_name: k.data.tags["bp.status"] for k in kids.values()}
    told = {}
    for line in re.findall(r"(lr=[^\s:]+) diverged: ((?:skipped|told) .*)", err):
        cause, what = line
        assert table[cause] == "diverged"
        for part in what.split("; "):
            names = re.match(r"(?:skipped|told) (.*) \((?:not started|already training)\)", part)[1].split(", ")
            for name in names:
                if part.startswith("skipped"):
                    assert table[name] == "skipped", (name, table)
                else:
                    told[name] = None
    for name, status in re.findall(r"(lr=\S+) ended (\w+) before its stop took effect", err):
        told[name] = status
    for name in re.findall(r"(lr=\S+) stopped: skipped", err):
        told[name] = "skipped"
    assert all(table[name] == status for name, status in told.items()), (told, table)
    said = {name for line in re.findall(r"diverged: ((?:skipped|told) .*)", err)
            for name in re.findall(r"lr=[^,; ]+", line)}
    assert said == {name for name, status in table.items() if status == "skipped"} | set(told)
    assert table["lr=0.0001"] == "finished" and table["lr=0.0004"] == "diverged"


def search_args(prune: str, experiment: str, tracking_uri: str) -> list[str]:
    return ["sweep", MNIST_SEARCH, "--tracking-uri", tracking_uri, "--parallel", "2", "--set", "sweep.trials=6",
            "--set", "trainer.epochs=4", "--set", f"sweep.prune={prune}", "--set", f"experiment={experiment}"]


@pytest.mark.parametrize("prune", ["median", "halving"])
@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_pruned_trial_is_a_finished_child_and_the_search_prunes_the_same_twice(capsys, tracking_uri, prune):
    mc = MlflowClient(tracking_uri)
    seen = []
    for i in range(2):
        code, out, err = run_bp(search_args(prune, f"prune-{prune}-{i}", tracking_uri), capsys)
        assert code == 0, err
        parent, kids = children(mc, out)
        seen.append(sorted((lr, k.data.tags["bp.status"], len(history(mc, k.info.run_id, "val_accuracy")[0]),
                            k.data.metrics.get("best_val_accuracy")) for lr, k in kids.items()))
        pruned = [k for k in kids.values() if k.data.tags["bp.status"] == "pruned"]
        assert pruned, seen[-1]
        for run in pruned:
            assert run.info.status == "FINISHED"
            assert run.data.tags["bp.failure_reason"].startswith("pruned at epoch ")
            assert f"by the {prune} pruner: val_accuracy" in run.data.tags["bp.failure_reason"]
            assert len(history(mc, run.info.run_id, "val_accuracy")[0]) < 4
            assert not [a for a in mc.list_artifacts(run.info.run_id) if a.path == "model"]
        assert parent.data.metrics["pruned"] == len(pruned)
        assert "pruned" in out  # the table bp prints
        best = kids[next(lr for lr, k in kids.items() if k.info.run_id == parent.data.tags["bp.best_child"])]
        assert best.data.tags["bp.status"] == "finished"
    assert seen[0] == seen[1]  # the same trials, pruned at the same epochs, with the same results


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_pruned_child_reproduces_identical_up_to_its_pruned_epoch(capsys, tracking_uri):
    mc = MlflowClient(tracking_uri)
    code, out, err = run_bp(search_args("median", "prune-reproduce", tracking_uri), capsys)
    assert code == 0, err
    _, kids = children(mc, out)
    pruned = next(k for k in kids.values() if k.data.tags["bp.status"] == "pruned")
    code, out, err = run_bp(["reproduce", pruned.info.run_id, "--tracking-uri", tracking_uri], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[0] == "identical"
    again = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    assert again.data.tags["bp.status"] == "pruned" and again.info.status == "FINISHED"


def test_successive_halving_sees_only_the_earlier_rounds():
    from bpcore.search.study import Search

    config = load_config(MNIST_SEARCH, ["sweep.trials=3", "sweep.prune=halving",
                                        "sweep.space.trainer.learning_rate={log_uniform: [1.0e-4, 1.0]}"])
    search = Search(config)
    first, second = search.ask(2)  # one round, trained side by side
    assert search.report(first, 1, 0.9) is None
    # Optuna's pruner alone would compare it with the first trial, ahead of it in this round, and prune it
    assert search.report(second, 1, 0.1) is None
    search.tell(first, 0.9)
    search.tell(second, 0.1)
    (third,) = search.ask(1)  # the next round sees both
    assert search.report(third, 1, 0.1).startswith("pruned at epoch 1 by the halving pruner: val_accuracy 0.1")


@pytest.mark.parametrize("prune", ["median", "halving"])
def test_a_judge_away_from_the_study_prunes_as_the_study_would(prune):
    from bpcore.search.study import Judge, Search

    config = load_config(MNIST_SEARCH, ["sweep.trials=6", f"sweep.prune={prune}",
                                        "sweep.space.trainer.learning_rate={log_uniform: [1.0e-4, 1.0]}"])
    search = Search(config)
    curves = [[0.5, 0.7, 0.8, 0.85], [0.3, 0.5, 0.6, 0.62], [0.6, 0.75, 0.83, 0.9]]
    for point, curve in zip(search.ask(3), curves):  # one round, told in trial order
        search.replay(point, curve)
        search.tell(point, max(curve))
    decided = []
    for point, curve in zip(search.ask(2), [[0.2, 0.3, 0.4, 0.5], [0.65, 0.8, 0.84, 0.95]]):
        judge = Judge(search.prune, search.earlier(point))  # what a sweep worker builds
        away = [judge(epoch, {"val_accuracy": v}) for epoch, v in enumerate(curve, start=1)]
        here = [search.report(point, epoch, v) for epoch, v in enumerate(curve, start=1)]
        assert away == here
        decided.append(next((epoch for epoch, why in enumerate(here, start=1) if why), None))
    assert decided[0] is not None and decided[1] is None  # the slow one pruned, the best one kept
