"""flows.tracking.runs.experiment_id_of: the experiment a run opens in, tagged so MLflow's UI shows training runs."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from flows.tracking.runs import experiment_id_of

KIND = "mlflow.experimentKind"


def test_new_and_untagged_experiments_open_on_training_runs_and_a_chosen_kind_stays(tmp_path):
    mc = MlflowClient(f"sqlite:///{tmp_path / 'store.db'}")
    made = experiment_id_of(mc, "fresh")
    assert mc.get_experiment(made).tags[KIND] == "custom_model_development"
    assert experiment_id_of(mc, "fresh") == made

    older = mc.create_experiment("made-before-the-tag")  # as bp made them until now, or a user by hand
    assert KIND not in mc.get_experiment(older).tags
    assert experiment_id_of(mc, "made-before-the-tag") == older
    assert mc.get_experiment(older).tags[KIND] == "custom_model_development"

    chosen = mc.create_experiment("a-user-chose", tags={KIND: "genai_development"})
    assert experiment_id_of(mc, "a-user-chose") == chosen
    assert mc.get_experiment(chosen).tags[KIND] == "genai_development"
