"""Configs as Prefect deployments: ``bp deploy`` (a work pool's workers run them), ``bp serve`` (this process does).

A deployment points at its flow by module path (``flows.experiments.linreg.linreg``): a worker runs it from the
installed package, on any machine, with no code to pull. Its parameters are the resolved config
(the sweep flow's for a config with a ``sweep`` section), and its schedule the config's
``schedule``. Registering again updates the deployment (Prefect keys it by flow and name): never
a duplicate. Registering also makes the zombie automation (``flows.server.automations``) and deletes
any ``sweep-child-<pool>`` deployment an earlier bp left on the pool (no sweep point runs as a deployment:
points are tasks, ``flows.sweep.point``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

from bpcore.config.models import Config
from bpcore.config.serial import to_dict
from flows.experiments.registry import FLOWS, flow_for
from flows.server.automations import ensure_zombie_automation
from flows.server.pools import ensure_pool
from flows.sweep.flow import sweep


def flow_and_parameters(config: Config, name: str):
    """The flow a config deploys as, and its parameters: the sweep flow for a sweep config, else its kind's."""
    if config.sweep is not None:
        return sweep, {"config": to_dict(config), "run_name": name}
    return flow_for(config.kind), {"config": to_dict(config)}


def schedules(config: Config) -> list:
    """The config's ``schedule`` as Prefect schedules (none: the deployment runs on demand)."""
    from prefect.schedules import Cron, Interval

    schedule = config.schedule
    if schedule is None:
        return []
    if schedule.cron is not None:
        return [Cron(schedule.cron, timezone=schedule.timezone)]
    return [Interval(timedelta(seconds=schedule.interval))]


def to_deployment(config: Config, name: str, pool: str | None = None):
    """A RunnerDeployment of ``config`` named ``name`` (on ``pool``, or to be served when None)."""
    from prefect.deployments.runner import EntrypointType

    flow, parameters = flow_and_parameters(config, name)
    return flow.to_deployment(name=name, parameters=parameters, schedules=schedules(config),
                              concurrency_limit=concurrency(config), work_pool_name=pool,
                              entrypoint_type=EntrypointType.MODULE_PATH, tags=["bp", config.kind],
                              description=f"bp: {config.kind} experiment from {name}.yaml")


def concurrency(config: Config):
    """``schedule.overlap`` as the deployment's concurrency limit: one run at a time, a due run skipped
    (``skip``) or queued (``queue``) while the previous one runs; no limit for ``allow`` or without a schedule."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    if config.schedule is None or config.schedule.overlap == "allow":
        return None
    strategy = {"skip": ConcurrencyLimitStrategy.CANCEL_NEW, "queue": ConcurrencyLimitStrategy.ENQUEUE}
    return ConcurrencyLimitConfig(limit=1, collision_strategy=strategy[config.schedule.overlap])


RUNNER_QUERY_SECONDS = 2.0  # how often bp serve asks the server for due runs, unless PREFECT_RUNNER_POLL_FREQUENCY


def served_name(name: str) -> str:
    """The deployment ``bp serve`` makes of a config: never the one ``bp deploy`` makes of it (``NAME-served``)."""
    return f"{name}-served"


def deploy(configs: list[tuple[str, Config]], pool: str, create_pool: bool = False) -> list[str]:
    """Register one deployment per (name, config) on ``pool``, with its schedule; returns their full names.

    Also the pool itself with ``create_pool`` and the zombie automation; the ``sweep-child-<pool>`` deployments
    of earlier bp versions are deleted (``retire_child_deployments``).
    """
    if create_pool:
        ensure_pool(pool)
    ensure_zombie_automation()
    names = []
    for name, config in configs:
        deployment = to_deployment(config, name, pool)
        deployment.apply(work_pool_name=pool)
        names.append(f"{deployment.flow_name}/{name}")
    retire_child_deployments(pool)
    return names


def retire_child_deployments(pool: str) -> list[str]:
    """Delete the ``<flow>/sweep-child-<pool>`` deployments of earlier bp versions; the names deleted."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    gone = []
    with get_client(sync_client=True) as client:
        for flow in FLOWS.values():
            name = f"{flow.name}/sweep-child-{pool}"
            try:
                client.delete_deployment(client.read_deployment_by_name(name).id)
                gone.append(name)
            except ObjectNotFound:
                pass
    return gone


def describe(config: Config) -> str:
    """``every 60 s, overlapping runs skipped``, ``cron '0 3 * * *' (Europe/Paris), ...``, or ``on demand``."""
    schedule = config.schedule
    if schedule is None:
        return "on demand"
    when = f"cron '{schedule.cron}' ({schedule.timezone})" if schedule.cron is not None else \
        f"every {schedule.interval:g} s"
    overlap = {"skip": "skipped", "queue": "queued", "allow": "allowed"}[schedule.overlap]
    return f"{when}, overlapping runs {overlap}"


def serve(configs: list[tuple[str, Config]], announce: Callable[[str], None] = print) -> str:
    """Run the configs' schedules from this process until it is stopped (Prefect's runner; no work pool);
    ``announce`` is told each deployment served, with its schedule.

    Returns the signal that stopped it (``SIGTERM``, ``SIGINT``). On SIGTERM Prefect's runner
    takes no more runs, cancels those it runs (their flows see the signal and mark their MLflow
    runs KILLED) and pauses the served deployments.
    """
    import asyncio

    from prefect.runner import Runner

    class _Runner(Runner):
        stopped_by = "SIGINT"

        def handle_sigterm(self, *args, **kwargs) -> None:
            self.stopped_by = "SIGTERM"
            super().handle_sigterm(*args, **kwargs)

    # Prefect's runner asks for due runs every 10 s (PREFECT_RUNNER_POLL_FREQUENCY); bp's pool workers every 2 s
    # (flows.stack.services): the same here, so a due or requested run starts within about 2 s. A value set wins.
    query = None if os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY") else RUNNER_QUERY_SECONDS
    runner = _Runner(pause_on_shutdown=True, query_seconds=query)
    for name, config in configs:
        deployment = to_deployment(config, served_name(name))
        announce(f"{deployment.flow_name}/{deployment.name}: {describe(config)}")
        runner.add_deployment(deployment)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        return "SIGINT"
    return runner.stopped_by

