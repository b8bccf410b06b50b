"""One declaration per experiment kind: a kind declared here, in the test, runs through bp unchanged.

The toy kind estimates a mean by gradient descent on (m - mean(values))^2. Nothing outside this
file knows it: bp validate, bp train and bp sweep find its config model, loader, sweep metric and
comparison curve through its one ``kinds.register`` declaration, and its flow in the flow registry.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import pytest
from mlflow.tracking import MlflowClient
from prefect import flow
from pydantic import Field
from support import run_bp

from bpcore import kinds
from bpcore.config.fields import Number, Strict, Whole
from bpcore.config.models import ExperimentConfig
from flows.experiments import pipeline, registry
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import RunResult, Trained
from flows.tracking import metrics


class ToyData(Strict):
    values: list[Number] = Field(min_length=1)


class ToyTrainer(Strict):
    learning_rate: Number = Field(gt=0)
    iterations: Whole = Field(ge=1, le=10_000)


class ToyConfig(ExperimentConfig):
    kind: Literal["toy"]
    experiment: str = "toy"
    data: ToyData
    trainer: ToyTrainer


class Numbers:
    """The toy's data: the values themselves, fingerprinted by their JSON."""

    def __init__(self, values: list[float]):
        self.values = values
        text = json.dumps(values)
        self.source, self.digest = f"toy:{text}", hashlib.sha256(text.encode()).hexdigest()


@flow(name="toy")
def toy(config: ToyConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
        run_name: str | None = None, data_digest: str | None = None, sweep: SweepMember | None = None) -> RunResult:
    mc = pipeline.start(tracking_uri, sweep)
    numbers = pipeline.load(config, data_digest, sweep)
    with pipeline.tracked(config, numbers, mc, tags, run_name, sweep) as run:
        mean, m, cost = sum(numbers.values) / len(numbers.values), 0.0, []
        for _ in range(config.trainer.iterations + 1):
            cost.append((m - mean) ** 2)
            m -= config.trainer.learning_rate * 2 * (m - mean)
        metrics.log_history(run.client, run.id, "cost", cost)
        if cost[-1] > cost[0]:
            run.ended(Trained(status="diverged", reason=f"diverged: cost {cost[-1]:.3g}"))
        else:
            metrics.log_values(run.client, run.id, {"final_cost": cost[-1], "estimate": m})
            run.ended(Trained(metrics={"final_cost": cost[-1], "estimate": m}))
    return run.outcome


TOY = kinds.Kind("toy", ToyConfig, lambda c: Numbers(c.data.values), ("final_cost", "estimate"), "minimize",
                 ("cost", "step"))


@pytest.fixture
def toy_kind(monkeypatch, tmp_path):
    kinds.register(TOY)
    monkeypatch.setitem(registry.FLOWS, "toy", toy)  # both undone after the test: no other test sees it
    path = tmp_path / "toy.yaml"
    path.write_text("kind: toy\nexperiment: toy-kind\ndata:\n  values: [1.0, 2.0, 6.0]\n"
                    "trainer:\n  learning_rate: 0.1\n  iterations: 50\n"
                    "sweep:\n  grid:\n    trainer.learning_rate: [0.05, 0.4, 1.5]\n")
    yield str(path)
    kinds.unregister("toy")


def test_a_kind_declared_in_a_test_validates(toy_kind, capsys):
    code, out, err = run_bp(["validate", toy_kind, "--set", "trainer.iterations=7"], capsys)
    assert code == 0, err
    assert "kind: toy" in out and "iterations: 7" in out and "3 grid points" in err
    code, _, err = run_bp(["validate", toy_kind, "--set", "trainer.learning_rate=true"], capsys)
    assert code == 2 and "trainer.learning_rate = True: a boolean is not a number" in err


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_kind_declared_in_a_test_trains_and_sweeps(toy_kind, capsys, tracking_uri):
    code, out, err = run_bp(["train", toy_kind, "--tracking-uri", tracking_uri], capsys)
    assert code == 0, err
    mc = MlflowClient(tracking_uri)
    run = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    assert run.info.status == "FINISHED" and run.data.tags["bp.kind"] == "toy"
    assert run.data.metrics["estimate"] == pytest.approx(3.0, rel=1e-4)
    assert run.data.tags["bp.data_source"].startswith("toy:") and run.data.params["trainer.iterations"] == "50"
    assert len(mc.get_metric_history(run.info.run_id, "cost")) == 51

    # one at a time, in this process: a kind declared here is unknown to a sweep's worker processes
    code, out, err = run_bp(["sweep", toy_kind, "--tracking-uri", tracking_uri, "--parallel", "1"], capsys)
    assert code == 0, err
    parent = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    # each step scales the error by (1 - 2 lr): 0.9 at 0.05, 0.2 at 0.4, -2 at 1.5 (diverges)
    assert parent.data.tags["bp.best_point"] == "lr=0.4"
    assert parent.data.metrics["finished"] == 2 and parent.data.metrics["diverged"] == 1
    assert "plots/sweep.png" in [a.path for a in mc.list_artifacts(parent.info.run_id, "plots")]
    assert "lr=1.5" in out and "diverged" in out


def test_the_flow_registry_has_a_flow_for_every_declared_kind_and_no_other():
    assert list(registry.FLOWS) == kinds.names()
    for name, declared in registry.FLOWS.items():
        assert declared.name == name and registry.flow_for(name) is declared
