"""The per-kind deployment a sweep submits its children to: each kind's flow on the pool, no schedule."""

from __future__ import annotations

from flows.experiments.registry import flow_for

CHILD_DEPLOYMENT = "sweep-child-{pool}"  # each kind's flow, deployed on demand for a sweep's children on a pool


def ensure_child_deployments(kind_names: set[str], pool: str) -> dict[str, str]:
    """Each kind's flow deployed on ``pool`` as ``sweep-child-<pool>`` (no schedule: its runs come from sweeps).

    Returns kind -> ``flow-name/sweep-child-<pool>``, what ``run_deployment`` takes.
    """
    from prefect.deployments.runner import EntrypointType

    names = {}
    for kind in sorted(kind_names):
        flow = flow_for(kind)
        name = CHILD_DEPLOYMENT.format(pool=pool)
        flow.to_deployment(name=name, entrypoint_type=EntrypointType.MODULE_PATH, work_pool_name=pool,
                           tags=["bp", kind, "sweep-child"],
                           description=f"bp: one {kind} sweep child per run").apply(work_pool_name=pool)
        names[kind] = f"{flow.name}/{name}"
    return names
