"""Every config key of every kind, read from the pydantic models, as the Markdown of docs/config-reference.md.

    python tools/config_reference.py > docs/config-reference.md

A test holds the committed page to what this prints, so the reference cannot drift from the models. It
documents the library rather than being part of it, so it lives beside ``bpcore`` and reads this checkout's.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

if __name__ == "__main__":  # run as a script: the bpcore of the checkout it stands in, installed or not
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpcore import kinds  # noqa: E402
from bpcore.config.models import ExperimentConfig  # noqa: E402

SECTIONS = ("sweep", "schedule")  # optional sections every kind shares: described once, after the kinds


def reference() -> str:
    """The whole page: one table per kind, then the shared ``sweep`` and ``schedule`` sections."""
    out = ["# Config reference", "",
           "Every key a config file takes, by kind, generated from the pydantic models "
           "(`python tools/config_reference.py > docs/config-reference.md`). Unknown keys are errors. "
           "[Configs](configs.md) explains them with examples.", ""]
    for name in kinds.names():
        model = kinds.get(name).config
        out += [f"## `kind: {name}`", "", _summary(model), "", *_table(model, skip=SECTIONS), ""]
    for section in SECTIONS:
        model = _model_of(ExperimentConfig.model_fields[section].annotation)
        out += [f"## `{section}` (every kind, optional)", "", _summary(model), "",
                *_table(model, prefix=f"{section}."), ""]
    return "\n".join(out)


def _summary(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split("\n\n")[0].split())


def _table(model: type[BaseModel], prefix: str = "", skip: tuple[str, ...] = ()) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, field in _leaves(model, prefix, skip):
        rows.append(f"| `{key}` | {_cell(_type(field))} | {_cell(_default(field))} | {_cell(_meaning(field))} |")
    return rows


def _leaves(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()):
    """(dotted key, field) of every leaf, a nested block's keys under its own name."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        nested = _model_of(field.annotation)
        if nested is not None:
            yield from _leaves(nested, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config block a field holds (``Sweep`` of ``Sweep | None``), or None for a value."""
    candidates = [a for a in (get_args(annotation) if _is_union(annotation) else (annotation,)) if a is not type(None)]
    if len(candidates) == 1 and isinstance(candidates[0], type) and issubclass(candidates[0], BaseModel):
        return candidates[0]
    return None


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _type(field: FieldInfo) -> str:
    return _name(field.annotation) + _bounds(field.metadata)


def _name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _name(args[0]) + _bounds(args[1:])
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if _is_union(annotation):
        return " or ".join("null" if a is type(None) else _name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__} of " + ", ".join(_name(a) for a in args)
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


_SIGNS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >=", "max_length": "length <="}


def _bounds(metadata) -> str:
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found += [_bounds(item.metadata).strip(" ()")]
        elif isinstance(item, annotated_types.BaseMetadata):
            found += [f"{_SIGNS[key]} {value:g}" if isinstance(value, float) else f"{_SIGNS[key]} {value}"
                      for key in _SIGNS if (value := getattr(item, key, None)) is not None]
    found = [f for f in found if f]
    return f" ({', '.join(found)})" if found else ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return "null" if value is None else f"`{json.dumps(value)}`"  # as JSON, which YAML reads alike


def _meaning(field: FieldInfo) -> str:
    return " ".join((field.description or "").split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(reference())
