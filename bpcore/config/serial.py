"""A resolved config as plain data: a dict, YAML, dotted keys (what a tracked run's parameters are), a digest.

Any config model works here (the functions ask only for pydantic's dump), so this module sits below the
models and the sections that flatten their nested keys use its ``flatten``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import yaml
from pydantic import BaseModel


def to_dict(config: BaseModel) -> dict[str, Any]:
    """The resolved config as plain JSON-able values (what config.yaml holds); no ``sweep`` or ``schedule``
    when it has none, so a run without them records neither."""
    return config.model_dump(mode="json", exclude={k for k in ("sweep", "schedule") if getattr(config, k) is None})


def to_yaml(config: BaseModel) -> str:
    """The resolved config as YAML, keys in model order; a search's ranges on one line each, as a config writes
    them (``trainer.learning_rate: {log_uniform: [0.0001, stable]}``)."""
    tree = to_dict(config)
    space = (tree.get("sweep") or {}).get("space")
    if space:
        tree["sweep"]["space"] = {key: _OneLine(span) for key, span in space.items()}
    return yaml.dump(tree, Dumper=_Dumper, sort_keys=False)


class _OneLine(dict):
    """A mapping YAML writes in flow style."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_OneLine, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))


def _nested(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def flatten(tree: dict[str, Any], section: Callable[[Any], bool] = _nested) -> dict[str, Any]:
    """Dotted keys of a nested dict: ``{"trainer": {"learning_rate": 1}}`` -> ``{"trainer.learning_rate": 1}``.

    ``section(value)`` says which values are sections whose keys are flattened in turn (by default every
    non-empty dict); every other value is a leaf, kept as it is.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if section(value):
            flat.update({f"{key}.{k}": v for k, v in flatten(value, section).items()})
        else:
            flat[str(key)] = value
    return flat


def digest(config: BaseModel) -> str:
    """sha256 of the resolved config's canonical JSON: equal configs, equal digests."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
