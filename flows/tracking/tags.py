"""The names of the tags bp sets on MLflow runs and model versions (docs/tracking.md has the glossary).

Every run: STATUS (finished, diverged, failed, killed, running), FAILURE_REASON when it did not
finish, KIND, CONFIG_DIGEST, DATA_DIGEST, DATA_SOURCE, WORKER (``host:pid``), GIT_DIRTY beside
MLflow's commit tag; FLOW_RUN (the Prefect flow run that trained it), DEPLOYMENT when a deployment
started it, REPRODUCES on a run ``bp reproduce`` made, RESUMED and RESUMED_AT on a run ``bp resume``
reopened. Sweeps: SWEEP (``parent`` or ``child``), POINT on a child, AT_ONCE on the parent, and on it
BEST_CHILD, BEST_POINT, the best score under ``bp.<metric>`` on the registered version, REGISTERED_MODEL,
REGISTRY, CHAMPION_MOVED. Every experiment bp creates: EXPERIMENT_KIND set to TRAINING (MLflow's own tag).
"""

STATUS = "bp.status"
FAILURE_REASON = "bp.failure_reason"
KIND = "bp.kind"
CONFIG_DIGEST = "bp.config_digest"
DATA_DIGEST = "bp.data_digest"
DATA_SOURCE = "bp.data_source"
WORKER = "bp.worker"
GIT_DIRTY = "bp.git_dirty"
FLOW_RUN = "bp.flow_run"
DEPLOYMENT = "bp.deployment"
REPRODUCES = "bp.reproduces"
RESUMED = "bp.resumed"  # how many times bp resume reopened the run
RESUMED_AT = "bp.resumed_at"  # when it last did, in ms since the epoch: the start of its current process's work
SWEEP = "bp.sweep"
POINT = "bp.point"  # a sweep child's point: its index in the grid, or its trial number
AT_ONCE = "bp.at_once"  # on a sweep's parent: how many points trained at a time (a search's round size)
BEST_CHILD = "bp.best_child"
BEST_POINT = "bp.best_point"
REGISTERED_MODEL = "bp.registered_model"
REGISTRY = "bp.registry"
CHAMPION_MOVED = "bp.champion_moved"
# MLflow's UI opens an experiment on its GenAI overview or its training runs after this tag
EXPERIMENT_KIND, TRAINING = "mlflow.experimentKind", "custom_model_development"


def score(metric: str) -> str:
    """The tag a registered version carries its sweep's best ``metric`` under (``bp.best_val_accuracy``)."""
    return f"bp.{metric}"
