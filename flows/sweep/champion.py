"""The sweep's best model in MLflow's registry: registered, and made the champion, only when it beats
every version trained on the same data."""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from bpcore.search import grid
from flows.runtime import terminal
from flows.sweep.child import Child
from flows.tracking import tags as tag

CHAMPION = "champion"


@task(cache_policy=NO_CACHE)  # no retries: a retry after the version was created would register it twice
def register_best(mc: MlflowClient, parent_id: str, name: str, best: Child, metric: str, goal: str,
                  data_digest: str) -> str:
    """Register the best child's model under ``name`` and make it the champion, only if it beats every version
    trained on the same data (``bp.data_digest``): a model fitted to other data is no yardstick.

    A version's score is its run's value of the same metric; one whose run lacks that metric is beaten
    by any score. Returns one line saying what happened.
    """
    rival, previous, others = _best_on_same_data(mc, name, metric, goal, data_digest)
    moved = grid.better(best.score, previous, goal)
    mc.set_tag(parent_id, tag.CHAMPION_MOVED, str(moved).lower())
    same = f"trained on the same data (sha256 {data_digest[:12]})"
    if not moved:
        note = (f"not registered: {best.point.name} ({metric} {best.score:.6g}) does not beat {name} version "
                f"{rival.version} ({metric} {previous:.6g}), the best {same}")
    else:
        uri = _model_uri(mc, best.run_id)
        version = _register(mc, name, uri, best.run_id, {tag.SWEEP: parent_id, tag.score(metric): str(best.score),
                                                         tag.DATA_DIGEST: data_digest})
        mc.set_tag(parent_id, tag.REGISTERED_MODEL, f"{name}/{version.version}")
        beaten = (f"beats version {rival.version} ({metric} {previous:.6g}), the best {same}" if rival is not None
                  else f"the first version {same}")
        clash = _other_inputs(mc, name, uri)
        if clash:
            moved = False
            mc.set_tag(parent_id, tag.CHAMPION_MOVED, "false")
            note = (f"registered {name} version {version.version} without the alias {CHAMPION} ({metric} "
                    f"{best.score:.6g}: {beaten}): {clash}, and the consumers of {name}@{CHAMPION} send those; "
                    f"to move it all the same: MlflowClient().set_registered_model_alias({name!r}, {CHAMPION!r}, "
                    f"{version.version}), or Aliases on the version's page in the MLflow UI")
        else:
            mc.set_registered_model_alias(name, CHAMPION, version.version)
            note = f"registered {name} version {version.version} as {CHAMPION} ({metric} {best.score:.6g}): {beaten}"
        if others:
            note += f"; {others} version(s) trained on other data not compared"
    mc.set_tag(parent_id, tag.REGISTRY, note)
    terminal.logger().info(note)
    return note


def _other_inputs(mc: MlflowClient, name: str, uri: str) -> str | None:
    """How the model at ``uri`` differs from ``name``'s champion in what it takes or gives (its signature), in a
    few words; None when it does not (or there is no champion yet)."""
    from mlflow.models import get_model_info

    try:
        current = mc.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet
        return None
    new = get_model_info(uri).signature
    try:
        old = get_model_info(f"models:/{name}/{current.version}").signature
    except Exception:  # the champion's model is gone or unreadable: its consumers fail already, nothing to keep
        return None
    for part, verb in (("inputs", "takes"), ("outputs", "gives")):
        ours, theirs = (_schema_text(getattr(sig, part, None) if sig else None) for sig in (new, old))
        if ours != theirs:
            return f"its model {verb} {ours} where version {current.version}, the {CHAMPION}, {verb} {theirs}"
    if (new and new.to_dict()) != (old and old.to_dict()):
        return f"its model's signature differs from version {current.version}'s, the {CHAMPION}'s"
    return None


def _schema_text(schema) -> str:
    """``columns x (double)``, ``a tensor int64 (-1,)``, or ``no declared schema``."""
    if schema is None:
        return "no declared schema"
    if schema.has_input_names():
        return "columns " + ", ".join(f"{c.name} ({getattr(c.type, 'name', c.type)})" for c in schema.inputs)
    return "a tensor " + ", ".join(f"{spec.type} {tuple(spec.shape)}" for spec in schema.inputs)


def _best_on_same_data(mc, name: str, metric: str, goal: str, data_digest: str):
    """(version, its score, how many versions were trained on other data) among ``name``'s versions."""
    try:
        versions = mc.search_model_versions(f"name = '{name}'")
    except MlflowException:  # no such model yet
        return None, None, 0
    best, score, others = None, None, 0
    for version in versions:
        run = mc.get_run(version.run_id)
        if run.data.tags.get(tag.DATA_DIGEST) != data_digest:
            others += 1
            continue
        value = run.data.metrics.get(metric)
        if value is not None and (score is None or grid.better(value, score, goal)):
            best, score = version, value
        elif best is None:
            best = version
    return best, score, others


def _register(mc: MlflowClient, name: str, uri: str, run_id: str, tags: dict[str, str]):
    """A new version of ``name`` (made first if needed) from the model at ``uri``, through the run's client: what
    ``mlflow.register_model`` does, without its lines on stderr (bp says what happened in one)."""
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        mc.create_registered_model(name)
    except MlflowException as exc:  # another sweep made it first, or an earlier one
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    if uri.startswith("models:/"):  # a logged model: the version is linked to it
        return mc.create_model_version(name, uri, run_id=run_id, tags=tags, model_id=uri.removeprefix("models:/"))
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    return mc.create_model_version(name, RunsArtifactRepository.get_underlying_uri(uri), run_id=run_id, tags=tags)


def _model_uri(mc, run_id: str) -> str:
    """The run's logged model (``models:/m-...``; MLflow 3 keeps it outside the run's artifacts)."""
    outputs = mc.get_run(run_id).outputs
    models = outputs.model_outputs if outputs is not None else []
    return f"models:/{models[0].model_id}" if models else f"runs:/{run_id}/model"
