"""A run that is one point of a sweep on a pool: whether its sweep is still on, and the data digest the
points agree on (a Prefect variable, when the machine that submitted the sweep had no copy of the data)."""

from __future__ import annotations

from flows.tracking import runs
from flows.tracking import tags as tag


def agreed_digest(key: str, digest: str) -> str:
    """The digest the sweep's first child to read the data recorded under ``key`` (this one, if it is first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_variable(VariableCreate(name=key, value=digest, tags=["bp", "sweep-data"]))
            return digest
        except ObjectAlreadyExists:
            return str(client.read_variable_by_name(key).value)


def forget_digest(key: str) -> str | None:
    """The digest recorded under ``key`` (None if no child recorded one), removed now that the sweep is over."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        variable = client.read_variable_by_name(key)
        if variable is None:
            return None
        client.delete_variable_by_name(key)
        return str(variable.value)


def digest_key(parent_run_id: str) -> str:
    """The Prefect variable a sweep's children agree on their data's digest under."""
    return f"bp-sweep-{parent_run_id}-data"


def sweep_gone(tags: dict[str, str], tracking_uri: str) -> str | None:
    """Why a child's sweep is over before the child began (its flow run final, or its MLflow run ended), or None."""
    from prefect.client.orchestration import get_client

    flow_run_id = tags.get(tag.SWEEP_FLOW_RUN)
    if flow_run_id:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
        if state is not None and state.is_final():
            return f"its sweep's flow run {flow_run_id} ended {state.name} before this point started"
    parent = tags.get("mlflow.parentRunId")
    if parent:
        status = runs.client(tracking_uri).get_run(parent).info.status
        if status != "RUNNING":
            return f"its sweep's MLflow run {parent} ended {status} before this point started"
    return None
