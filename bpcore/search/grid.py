"""Sweeps: a config's ``sweep.grid`` expanded into one validated child config per grid point (a search's
trials are drawn as it runs: ``bpcore.search.study``).

Pure config work (no Prefect, no MLflow): the flow in ``flows.sweep`` runs the children.
Every point is validated before anything runs, so a bad value in the grid is one error naming
the key and value, not a sweep that fails half-way.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from bpcore import kinds
from bpcore.config.file import set_key
from bpcore.config.models import Config
from bpcore.config.serial import to_dict
from bpcore.errors import ConfigError
from bpcore.kinds import validate

# short names for the keys swept most, as they appear in child run names ("lr=0.0002")
SHORT = {"trainer.learning_rate": "lr"}
HIGHER_IS_BETTER = ("accuracy",)  # other metric names containing these are maximised by default


class GridPoint(BaseModel):
    """One child of a sweep: its name, the swept values, and the full child config (no ``sweep``).

    Plain JSON values throughout, so a point can be a flow run's parameter; ``config`` is the
    child's resolved config as a dict (``validate`` gives the model back).
    """

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    values: dict[str, Any]
    config: dict[str, Any]

    def validated(self) -> Config:
        """The child's config as its kind's model."""
        return validate(self.config, source=f"sweep.grid point {self.name}")


def expand(config: Config, source: str = "config") -> list[GridPoint]:
    """The Cartesian product of ``config.sweep.grid``, in grid order, each point a validated config.

    Raises ConfigError naming ``source`` and the key when the config has no sweep, or when a
    grid value makes an invalid config.
    """
    if config.sweep is None:
        raise ConfigError(f"{source}: sweep.grid: required key is missing (bp sweep needs a grid of values)")
    if config.sweep.search != "grid":
        raise ConfigError(f"{source}: sweep.search = {config.sweep.search!r}: its trials are drawn as the sweep "
                          "runs (bpcore.search.study), not expanded")
    objective(config, source)
    base = base_config(config)
    keys = list(config.sweep.grid)
    names = short_names(keys)
    return [make_point(index, base, dict(zip(keys, combo)), names, source, "sweep.grid", "sweep.grid point")
            for index, combo in enumerate(itertools.product(*(config.sweep.grid[k] for k in keys)))]


def base_config(config: Config) -> dict[str, Any]:
    """The config a sweep's children start from: no ``sweep`` (and no ``schedule``: the sweep is what runs on
    one, not each child)."""
    base = to_dict(config)
    base.pop("sweep")
    base.pop("schedule", None)
    return base


def make_point(index: int, base: dict[str, Any], chosen: dict[str, Any], names: dict[str, str], source: str,
               section: str, label: str) -> GridPoint:
    """The point setting each dotted key of ``chosen`` in a copy of ``base``, validated; a bad value is a
    ConfigError naming the point (``label``: ``sweep.grid point``, ``sweep.space trial 3:``)."""
    raw = copy.deepcopy(base)
    for key, value in chosen.items():
        set_existing(raw, key, value, source, section)
    try:
        child = validate(raw, source=source)
    except ConfigError as exc:
        where = ", ".join(f"{k}={v!r}" for k, v in chosen.items())
        raise ConfigError(f"{exc} ({label} {where})") from None
    resolved = to_dict(child)  # names show values as validated: "1e-4" in YAML is a string until then
    values = {k: get_key(resolved, k) for k in chosen}
    name = ", ".join(f"{names[k]}={value_text(v)}" for k, v in values.items())
    return GridPoint(index=index, name=name, values=values, config=resolved)


RATE = "trainer.learning_rate"  # divergence is monotone in it: above a rate that diverged, the rest do too


def skips_above_divergence(config: Config) -> bool:
    """Whether the config's sweep is a grid over the learning rate whose rates above one that diverged are
    not trained (``sweep.skip_above_divergence``, on by default)."""
    sweep = config.sweep
    return bool(sweep and sweep.search == "grid" and sweep.skip_above_divergence and RATE in (sweep.grid or {}))


def by_rate(points: list[GridPoint]) -> list[GridPoint]:
    """The points in the order a divergence-aware grid trains them: smallest learning rate first (then grid
    order), so that a rate that diverges is met before the larger ones it rules out."""
    return sorted(points, key=lambda p: (float(p.values[RATE]), p.index))


def above(diverged: GridPoint, points: list[GridPoint]) -> list[GridPoint]:
    """The points with the same other swept values as ``diverged`` and a larger learning rate."""
    others = {k: v for k, v in diverged.values.items() if k != RATE}
    return [p for p in points if float(p.values[RATE]) > float(diverged.values[RATE])
            and {k: v for k, v in p.values.items() if k != RATE} == others]


def skip_reason(diverged: GridPoint) -> str:
    """Why a point above ``diverged`` is not trained: the rate that diverged, with the same other values."""
    others = ", ".join(f"{k}={value_text(v)}" for k, v in diverged.values.items() if k != RATE)
    rest = f" with the same {others}" if others else ""
    return (f"skipped: learning rate {value_text(diverged.values[RATE])} diverged{rest} "
            f"(sweep.skip_above_divergence)")


def objective(config: Config, source: str = "config") -> tuple[str, str]:
    """(metric, goal) that picks a sweep's best child: goal is ``minimize`` or ``maximize``."""
    sweep, kind = config.sweep, kinds.get(config.kind)
    metric = (sweep.metric if sweep is not None else None) or kind.metric
    if metric not in kind.metrics:
        raise ConfigError(f"{source}: sweep.metric = {metric!r}: not a metric a {config.kind} run logs "
                          f"(one of: {', '.join(kind.metrics)})")
    goal = sweep.goal if sweep is not None else None
    if goal is None and metric == kind.metric:
        goal = kind.goal
    elif goal is None:
        goal = "maximize" if any(word in metric for word in HIGHER_IS_BETTER) else "minimize"
    return metric, goal


def better(a: float, b: float | None, goal: str) -> bool:
    """Is ``a`` strictly better than ``b`` (None: nothing to beat)?"""
    if b is None:
        return True
    return a > b if goal == "maximize" else a < b


def set_existing(raw: dict[str, Any], key: str, value: Any, source: str, section: str = "sweep.grid") -> None:
    """Set a dotted key that must already exist in the resolved config (a typo is an error naming ``section``)."""
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"{source}: {section}.{key}: unknown key {prefix!r} in the config")
        node = node[part]
    set_key(raw, key, copy.deepcopy(value), f"{source}: {section}.{key}")


def get_key(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def short_names(keys: list[str]) -> dict[str, str]:
    """``trainer.learning_rate`` -> ``lr``; otherwise the last part, or the whole key if that clashes."""
    last = [SHORT.get(k, k.split(".")[-1]) for k in keys]
    return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def value_text(value: Any) -> str:
    """A grid value as it reads in a run name: ``0.0002``, ``[128, 64]``, ``relu``; a number exactly as it is
    (``0.1000001``, not the ``0.1`` six significant figures would make it)."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return str(value)
