"""A run that is one point of a sweep: what it is told of its sweep (an explicit flow parameter), whether the
sweep is still on, and the data digest the points agree on (a Prefect variable, when the machine that
submitted the sweep had no copy of the data)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from flows.server import busy
from flows.tracking import tags as tag


class SweepMember(BaseModel):
    """A training flow's ``sweep`` parameter: the run is a child of the sweep's MLflow run ``parent_run_id``.

    ``flow_run_id``: the sweep's Prefect flow run, when its points run on a pool's workers;
    ``data_key``: the Prefect variable under which the points agree on their data's digest, when the
    machine that submitted the sweep could not read the data.
    """

    parent_run_id: str
    flow_run_id: str | None = None
    data_key: str | None = None

    def tags(self) -> dict[str, str]:
        """The child run's tags that place it in its sweep (MLflow's parent link, the compare view's)."""
        return {"mlflow.parentRunId": self.parent_run_id, tag.SWEEP: "child",
                **({tag.SWEEP_FLOW_RUN: self.flow_run_id} if self.flow_run_id else {})}


def agreed_digest(key: str, digest: str) -> str:
    """The digest the sweep's first child to read the data recorded under ``key`` (this one, if it is first)."""
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    with busy.client() as client:
        try:
            client.create_variable(VariableCreate(name=key, value=digest, tags=["bp", "sweep-data"]))
            return digest
        except ObjectAlreadyExists:
            return str(client.read_variable_by_name(key).value)


def forget_digest(key: str) -> str | None:
    """The digest recorded under ``key`` (None if no child recorded one), removed now that the sweep is over."""
    with busy.client() as client:
        variable = client.read_variable_by_name(key)
        if variable is None:
            return None
        client.delete_variable_by_name(key)
        return str(variable.value)


def digest_key(parent_run_id: str) -> str:
    """The Prefect variable a sweep's children agree on their data's digest under."""
    return f"bp-sweep-{parent_run_id}-data"


def sweep_gone(member: SweepMember, mc: MlflowClient) -> str | None:
    """Why a child's sweep is over before the child began (its flow run final, or its MLflow run ended), or None."""
    if member.flow_run_id:
        with busy.client() as client:
            state = client.read_flow_run(member.flow_run_id).state
        if state is not None and state.is_final():
            return f"its sweep's flow run {member.flow_run_id} ended {state.name} before this point started"
    status = mc.get_run(member.parent_run_id).info.status
    if status != "RUNNING":
        return f"its sweep's MLflow run {member.parent_run_id} ended {status} before this point started"
    return None


def parent_ended(member: SweepMember, mc: MlflowClient) -> str | None:
    """Why a pool point must not open its run (its sweep's MLflow run has ended), or None; MLflow only, so
    it answers while the Prefect server is away."""
    status = mc.get_run(member.parent_run_id).info.status
    return None if status == "RUNNING" else f"its sweep's MLflow run {member.parent_run_id} ended {status}"
