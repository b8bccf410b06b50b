"""Configs as Prefect deployments: registered on a work pool (``bp deploy``) or served (``bp serve``).

The deployment's name is here, apart from ``deploy`` (which imports the flows, Prefect and MLflow): the command
line names and checks the configs before it imports any of them."""

from __future__ import annotations

from pathlib import Path


def deployment_name(path: str | Path) -> str:
    """A config file's deployment name: its stem (``configs/linreg.yaml`` -> ``linreg``)."""
    return Path(path).stem
