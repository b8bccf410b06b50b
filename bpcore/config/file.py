"""From a YAML file to the raw dict a config model validates: reading, ``--set`` overrides, and the one-line
message a validation error becomes.

Which model validates the dict is the kind's: ``bpcore.kinds.validate`` and ``bpcore.kinds.load_config``
look it up. Every failure is one ConfigError line naming the file, the dotted key, the bad value and the
rule it broke.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bpcore.errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The config file as a dict; every failure is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeys)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(raw).__name__}")
    return raw


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error, not last-wins."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (a later value would silently win)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` in place; the value is parsed as a YAML scalar or list."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. trainer.learning_rate=0.0002")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value {text!r} as YAML (quote a string that starts with "
                          f"* & ! or %: --set '{key}=\"{text}\"')") from None
    set_key(raw, key, value, f"--set {key}")


def set_key(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set a dotted key in place, making missing sections; ``where`` prefixes the error."""
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"{where}: {prefix} is a value ({child!r}), not a section")
        node = child
    node[parts[-1]] = value


def describe(exc: ValidationError) -> str:
    """One line per pydantic error, joined: ``key = value: rule``."""
    parts = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key (value {err['input']!r})")
        elif err["type"] == "value_error":  # our validators' messages start with the sub-key at fault
            parts.append(f"{key}.{err['msg'].removeprefix('Value error, ')}")
        else:
            parts.append(f"{key} = {err['input']!r}: {err['msg']}")
    return "; ".join(parts)
