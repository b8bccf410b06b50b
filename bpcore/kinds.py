"""Experiment kinds: one declaration per kind holds everything the pipeline looks up by ``kind``.

A kind names its config model, its data loader, the metrics a sweep can rank its runs by (with
the default metric and goal), and the curve a sweep's comparison plot draws. ``bp validate``,
``bp train``, ``bp sweep`` and ``bp reproduce`` find all of it here. Adding a kind is one
``register(Kind(...))`` call, plus its flow in ``flows.experiments.registry``: this module, like
the rest of bpcore, never imports Prefect or MLflow.

What is looked up by ``kind`` is done here too: a raw config validated by its kind's model
(``validate``, ``load_config``), and a config's data loaded through its kind's loader and its
per-process cache (``load``, ``fingerprint``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from bpcore.config.file import apply_override, describe, read_yaml
from bpcore.config.models import ChainConfig, Config, LinRegConfig, MnistConfig
from bpcore.data.mnist.load import load_mnist
from bpcore.data.table import load_line_data
from bpcore.errors import ConfigError

Goal = Literal["minimize", "maximize"]


class Data(Protocol):
    """What a loader returns: anything with the data's ``source`` (path or description) and sha256 ``digest``."""

    source: str
    digest: str


@dataclass(frozen=True)
class Kind:
    """One experiment kind.

    name: the config's ``kind``; config: its pydantic model (with ``kind: Literal[name]``);
    load: config -> Data (per-process cached where loading is costly, raising DataError);
    metrics: the single-valued metrics its finished runs log, the default sweep metric first;
    goal: whether the default metric is minimised or maximised;
    curve: (metric whose history a sweep plots per child, label of its step axis);
    processes: whether its points are worth worker processes: a sweep given no ``--parallel`` trains
    them on as many processes as cores, else one at a time in the bp process (a line fit trains in
    a fraction of a second: starting processes costs it more than they give).
    """

    name: str
    config: type[BaseModel]
    load: Callable[[Any], Data]
    metrics: tuple[str, ...]
    goal: Goal
    curve: tuple[str, str]
    processes: bool = False

    @property
    def metric(self) -> str:
        """The default metric a sweep ranks children by."""
        return self.metrics[0]


_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Declare a kind (again: the new declaration replaces the old one)."""
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget the kind called ``name`` (a kind a test declared for itself)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Kind | None:
    """The kind called ``name``, or None."""
    return _REGISTRY.get(name)


def names() -> list[str]:
    """Every declared kind's name, in declaration order."""
    return list(_REGISTRY)


def validate(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw dict into its kind's config model; errors become one ConfigError line."""
    kind = raw.get("kind")
    if kind is None:
        raise ConfigError(f"{source}: kind: required key is missing (one of: {', '.join(names())})")
    declared = get(kind) if isinstance(kind, str) else None
    if declared is None:
        raise ConfigError(f"{source}: kind = {kind!r}: unknown experiment (one of: {', '.join(names())})")
    try:
        return declared.config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc)}") from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply ``KEY=VALUE`` overrides, validate by its kind. Raises ConfigError."""
    raw = read_yaml(path)
    for item in overrides:
        apply_override(raw, item)
    return validate(raw, source=str(path))


def load(config: Config):
    """The data ``config`` trains on, as its kind's loader returns it. Raises DataError naming the file."""
    return get(config.kind).load(config)


def fingerprint(config: Config) -> tuple[str, str]:
    """Load (or find cached) the data ``config`` trains on; returns its (source, sha256 digest)."""
    data = load(config)
    return data.source, data.digest


@dataclass(frozen=True)
class Inline:
    """Data that lives in the config itself (the chain's one example): its JSON is the source."""

    values: dict[str, Any]

    @property
    def source(self) -> str:
        return "inline:" + json.dumps(self.values, sort_keys=True)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.removeprefix("inline:").encode()).hexdigest()


def _load_line(config):
    return load_line_data(config.data, config.seed)


def _load_digits(config):
    return load_mnist(config.data, config.seed, config.trainer.dtype)


def _load_example(config):
    return Inline(config.data.model_dump(mode="json"))


def _declare_builtin() -> None:
    register(Kind("linreg", LinRegConfig, _load_line,
                  ("final_cost", "intercept", "slope", "train_seconds"), "minimize", ("excess_cost", "iteration")))
    register(Kind("mnist", MnistConfig, _load_digits,
                  ("best_val_accuracy", "final_cost", "val_accuracy", "train_accuracy", "test_accuracy",
                   "train_seconds"), "maximize", ("cost", "epoch"), processes=True))
    register(Kind("chain", ChainConfig, _load_example,
                  ("final_cost",), "minimize", ("cost", "iteration")))


_declare_builtin()
