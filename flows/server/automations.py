"""The automation that marks a flow run Crashed when its heartbeats stop (a worker killed or lost)."""

from __future__ import annotations

from datetime import timedelta

ZOMBIE_AUTOMATION = "bp: crash flow runs whose heartbeats stopped"


# workers send a heartbeat every 30 s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set by bp stack up and the
# compose file); three missed in a row mean the process running the flow is gone
HEARTBEAT_GRACE = timedelta(seconds=90)


def ensure_zombie_automation() -> None:
    """The automation that marks a flow run Crashed once its heartbeats stop (created once, by name).

    A worker killed outright cannot report its flow run's end: without this the run stays Running
    for ever (Prefect's own issue #16746) and a sweep waiting on it never finishes.
    """
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
        return
    except ValueError:  # not there yet
        pass
    final = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}
    Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat", *final},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1, within=HEARTBEAT_GRACE),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {HEARTBEAT_GRACE.seconds} s: the process running "
                                            "this flow run is gone (worker killed or machine lost)")],
    ).create()
