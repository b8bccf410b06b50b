"""A search's space (``sweep.space``): checked against the config before anything trains, described as ``bp
validate`` prints it, the stability limit its ``stable`` range ends stand for, and what a draw from it becomes
(a float range's value to six significant figures, a choice's exact text). ``bpcore.search.study`` draws from
it with Optuna.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from bpcore import kinds
from bpcore.config.models import Config
from bpcore.config.serial import digest
from bpcore.config.sweep import STABLE, Range
from bpcore.data.cache import LoadCache
from bpcore.errors import ConfigError
from bpcore.kinds import validate
from bpcore.search.grid import base_config, set_existing, value_text
from bpcore.train import stability

PRUNED_ON = "val_accuracy"  # the per-epoch figure a pruner compares network trials on (higher is better)


def needs_stable(config: Config) -> bool:
    """Whether a range of the config's space ends at the stability limit (``stable``)."""
    space = config.sweep.space if config.sweep is not None else None
    return any(STABLE in (r.bounds() or ()) for r in (space or {}).values())


_measured: LoadCache[float] = LoadCache(8)  # bp sweep's pre-flight check and its flow share one measurement


def stable_limit(config: Config) -> float | None:
    """The limit a search's ``stable`` range end stands for, measured on its base config (once a process, for the
    same config and data); None when no range ends there."""
    if not needs_stable(config):
        return None
    base = config.model_copy(update={"sweep": None})
    data = kinds.load(base)
    key = (digest(base), data.digest)
    found = _measured.get(key)
    return found if found is not None else _measured.put(key, stability.limit(base, data))


def check(config: Config, source: str = "config", stable: float | None = None) -> None:
    """Every key of the space exists in the config, and the config is valid at each range's ends and at
    each choice (one key at a time, the others as configured): a bad range is one error before
    anything trains, naming the key."""
    if config.sweep.prune != "none" and config.kind != "mnist":
        raise ConfigError(f"{source}: sweep.prune = {config.sweep.prune}: pruning stops network trials on their "
                          f"per-epoch {PRUNED_ON}; a {config.kind} run has no epochs (use prune: none)")
    base = base_config(config)
    for key, span in config.sweep.space.items():
        for value in _ends(key, span, stable, source):
            _valid_at(base, key, value, source)
        inside = _inside(key, span, stable, source)
        if inside is None:
            continue
        try:
            _valid_at(base, key, inside, source)
        except ConfigError:
            if not _takes(base, key, round(inside), source):
                raise
            low, high = span.bounds()
            raise ConfigError(f"{source}: sweep.space.{key}: a {span.kind} range draws fractions such as "
                              f"{value_text(inside)}, and {key} takes whole numbers: use {{int: "
                              f"[{math.ceil(low)}, {math.floor(high)}]}}") from None


def _valid_at(base: dict[str, Any], key: str, value: Any, source: str) -> None:
    """The base config with ``key`` set to ``value`` is valid; else a ConfigError naming the key and the value."""
    raw = copy.deepcopy(base)
    set_existing(raw, key, value, source, section="sweep.space")
    try:
        validate(raw, source=source)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (sweep.space.{key} at {value_text(value)})") from None


def _takes(base: dict[str, Any], key: str, value: Any, source: str) -> bool:
    try:
        _valid_at(base, key, value, source)
    except ConfigError:
        return False
    return True


def _inside(key: str, span: Range, stable: float | None, source: str) -> float | None:
    """A value a float range draws between its ends, with a fraction (what an integer key refuses); None for a
    choice, an int range, or a range whose ``stable`` end is not measured yet."""
    if span.kind not in ("uniform", "log_uniform") or (STABLE in span.bounds() and stable is None):
        return None
    low, high = (float(end) for end in resolved(key, span, stable, source))
    if span.kind == "log_uniform":
        value = math.exp(math.log(low) + 0.4321 * (math.log(high) - math.log(low)))
    else:
        value = low + 0.4321 * (high - low)
    value = float(f"{value:.{DRAWN_DIGITS}g}")
    return value if not value.is_integer() else value + (high - value) / 2


def describe(config: Config) -> str:
    """``tpe search: 12 trials of trainer.learning_rate log_uniform [0.0001, 3]; ...`` (what ``bp validate`` says)."""
    sweep = config.sweep
    spans = []
    for key, span in sweep.space.items():
        if span.choice is not None:
            spans.append(f"{key} choice {value_text(list(span.choice))}")
        else:
            low, high = span.bounds()
            spans.append(f"{key} {span.kind} [{value_text(low)}, {value_text(high)}]")
    pruning = f", {sweep.prune} pruning on {PRUNED_ON}" if sweep.prune != "none" else ""
    return f"{sweep.search} search: {sweep.trials} trials of {'; '.join(spans)}{pruning}"


DRAWN_DIGITS = 6  # significant figures a value drawn from a float range keeps


def significant(value: Any, distribution) -> Any:
    """A value drawn from a float range kept to DRAWN_DIGITS significant figures (within the range): a trial's
    name (``lr=0.0123457``) is then the exact value it trains with. Whole numbers are as drawn."""
    if not isinstance(value, float):
        return value
    return min(max(float(f"{value:.{DRAWN_DIGITS}g}"), distribution.low), distribution.high)


def choice_key(value: Any) -> str:
    """A choice as the study holds it: its exact JSON text (the range refuses two choices with the same text)."""
    return json.dumps(value, sort_keys=True)


def resolved(key: str, span: Range, stable: float | None, source: str) -> tuple[float, float]:
    """A numeric range's two ends, ``stable`` replaced by the limit; the range must not be empty."""
    low, high = span.bounds()
    if high == STABLE:
        if stable is None or not math.isfinite(stable):
            raise ConfigError(f"{source}: sweep.space.{key}: 'stable' needs the stability limit of the config's "
                              "starting weights, and it could not be measured")
        high = stable
        if low >= high:
            raise ConfigError(f"{source}: sweep.space.{key}: the range [{value_text(low)}, stable] is empty: the "
                              f"stability limit is {value_text(high)}")
    return low, high


def _ends(key: str, span: Range, stable: float | None, source: str) -> list[Any]:
    """The values a space is checked at: a range's two ends, every choice."""
    if span.choice is not None:
        return list(span.choice)
    if STABLE in span.bounds() and stable is None:
        return [span.bounds()[0]]  # the upper end is known once measured
    return list(resolved(key, span, stable, source))
