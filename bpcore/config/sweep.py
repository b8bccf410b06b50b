"""A config's ``sweep`` section: many runs of one config, a grid of values or a search space of ranges.

``Sweep`` checks what it can alone (one kind of range, keys that may be swept, what each search
needs); ``bpcore.search`` checks the space against the config and expands or samples it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from bpcore.config.fields import POOL_NAME, Number, Strict, Whole
from bpcore.config.serial import flatten

RANGE_KINDS = ("log_uniform", "uniform", "int", "choice")
STABLE = "stable"  # a range's upper end that stands for the learning rate's stability limit


class Range(Strict):
    """One key's range in a search space (``sweep.space``): exactly one of its four kinds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    log_uniform: list[Number | Literal["stable"]] | None = Field(
        None, description="[low, high], sampled uniformly in log space (low > 0); high may be `stable`"
    )
    uniform: list[Number | Literal["stable"]] | None = Field(
        None, description="[low, high], sampled uniformly; high may be `stable`"
    )
    int_: list[Whole] | None = Field(None, alias="int", description="[low, high], whole numbers, both included")
    choice: list[Any] | None = Field(None, min_length=1, description="the values to choose among")

    @model_validator(mode="after")
    def _one_kind(self) -> Range:
        given = [kind for kind in RANGE_KINDS if self.of(kind) is not None]
        if len(given) != 1:
            raise ValueError(f"{'/'.join(RANGE_KINDS)}: give exactly one kind of range (got "
                             f"{', '.join(given) or 'none'})")
        kind = given[0]
        if kind == "choice":
            texts = [json.dumps(_numbers_alike(v), sort_keys=True) for v in self.choice]
            if len(set(texts)) != len(texts):
                raise ValueError("choice: the values must differ")
            return self
        bounds = self.of(kind)
        if len(bounds) != 2:
            raise ValueError(f"{kind}: needs [low, high], two values (got {len(bounds)})")
        low, high = bounds
        if low == STABLE:
            raise ValueError(f"{kind}: only the upper end may be 'stable'")
        if high != STABLE and not low < high:
            raise ValueError(f"{kind}: low must be below high (got [{low:g}, {high:g}])")
        if kind == "log_uniform" and low <= 0:
            raise ValueError(f"log_uniform: a log range must stay above zero (got low = {low:g})")
        return self

    @model_serializer(mode="plain")
    def _as_written(self) -> dict[str, list[Any]]:
        """The range as a config writes it, ``{log_uniform: [0.0001, stable]}``: its one kind, by its key's name."""
        return {self.kind: list(self.of(self.kind))}

    def of(self, kind: str) -> list[Any] | None:
        """The value given for range kind ``kind`` (one of RANGE_KINDS), or None."""
        return getattr(self, "int_" if kind == "int" else kind)

    @property
    def kind(self) -> str:
        """Which of RANGE_KINDS this range is."""
        return next(kind for kind in RANGE_KINDS if self.of(kind) is not None)

    def bounds(self) -> tuple[Any, Any] | None:
        """(low, high) of a numeric range (high may be ``stable``); None for a choice."""
        return None if self.choice is not None else tuple(self.of(self.kind))


def _numbers_alike(value: Any) -> Any:
    """``value`` with whole floats as ints (1.0 as 1), so that two choices a key would read as one number are
    seen as the same."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_numbers_alike(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_alike(v) for k, v in value.items()}
    return value


class Sweep(Strict):
    """Many runs of one config: ``bp sweep`` trains the Cartesian product of ``grid``'s value lists, or
    ``trials`` points of ``space`` drawn by a sampler (``search``)."""

    search: Literal["grid", "random", "tpe"] = Field(
        "grid", description="grid: every combination of `grid`; random or tpe (Optuna's samplers): `trials` "
        "points of `space`, seeded by `seed`"
    )
    grid: dict[str, list[Any]] | None = Field(
        None, min_length=1, description="dotted config key -> list of values, e.g. trainer.learning_rate: [1e-4, 2e-4] "
        "(what a grid search trains)"
    )
    space: dict[str, Range] | None = Field(
        None, min_length=1, description="dotted config key -> range: {log_uniform: [lo, hi]}, {uniform: [lo, hi]}, "
        "{int: [lo, hi]} or {choice: [...]}; hi may be `stable` for trainer.learning_rate (the stability limit at "
        "the start: 2 / the top Hessian eigenvalue, times 1 + momentum)"
    )
    trials: Whole | None = Field(None, ge=1, le=10_000, description="points a random or tpe search trains")
    prune: Literal["none", "median", "halving"] = Field(
        "none", description="stop a network trial early when its per-epoch val_accuracy falls behind (Optuna's "
        "median or successive-halving pruner; random and tpe searches): the child ends pruned, a result"
    )
    skip_above_divergence: bool = Field(
        True, description="in a grid over trainer.learning_rate: once a rate diverges, the larger rates with the "
        "same other values are not trained (children skipped, naming the rate)"
    )
    metric: str | None = Field(
        None, min_length=1, description="what picks the best child; null = final_cost (line fit, chain) "
        "or best_val_accuracy (network)"
    )
    goal: Literal["minimize", "maximize"] | None = Field(
        None, description="null = maximize for accuracies, minimize otherwise"
    )
    model_name: str | None = Field(
        None, min_length=1, description="register the best child's model under this name, and move the alias "
        "`champion` to it, only when it beats every version trained on the same data; null = no registry"
    )
    pool: str | None = Field(
        None, min_length=1, description="the Prefect work pool bp sweep submits the sweep to: one of its workers "
        "runs the sweep's flow, its points train on the pool's sweep workers (bp sweep-worker); null = where bp sweep "
        "runs (--pool overrides)"
    )

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, pool: str | None) -> str | None:
        if pool is not None and not re.match(POOL_NAME, pool):
            raise PydanticCustomError("pool", "not a work pool name (it must not be empty nor hold / % & > <)")
        return pool

    @field_validator("grid", mode="before")
    @classmethod
    def _dotted(cls, grid: Any) -> Any:
        """Nested sections (as ``--set sweep.grid.trainer.learning_rate=[...]`` writes) become dotted keys."""
        return flatten(grid) if isinstance(grid, dict) else grid

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        for key, values in (grid or {}).items():
            if not values:
                raise ValueError(f"{key}: needs at least one value")
            _sweepable(key)
        return grid

    @field_validator("space", mode="before")
    @classmethod
    def _dotted_space(cls, space: Any) -> Any:
        """Nested sections become dotted keys, down to the ranges (a mapping of range kinds to values; a
        mapping of mappings is a section)."""
        return flatten(space, _space_section) if isinstance(space, dict) else space

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space: dict[str, Range] | None) -> dict[str, Range] | None:
        for key, span in (space or {}).items():
            _sweepable(key)
            if STABLE in (span.bounds() or ()) and key != "trainer.learning_rate":
                raise ValueError(f"{key}: only trainer.learning_rate's range may end at 'stable'")
        return space

    @model_validator(mode="after")
    def _search_has_what_it_needs(self) -> Sweep:
        if self.search == "grid":
            if self.grid is None:
                raise ValueError("grid: required key is missing (bp sweep needs a grid of values)")
            if self.prune != "none":
                raise ValueError("prune: only a random or tpe search prunes its trials (sweep.search is grid)")
            for key in ("space", "trials"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only a random or tpe search samples a space (sweep.search is grid)")
            return self
        if self.grid is not None:
            raise ValueError(f"grid: a {self.search} search samples sweep.space, not a grid")
        for key in ("space", "trials"):
            if getattr(self, key) is None:
                raise ValueError(f"{key}: required key is missing (a {self.search} search needs sweep.space and "
                                 "sweep.trials)")
        return self


def _sweepable(key: str) -> None:
    if key.split(".")[0] in ("kind", "experiment", "sweep", "schedule"):
        raise ValueError(f"{key}: cannot be swept (a sweep is one experiment of one kind)")


def _space_section(value: Any) -> bool:
    """Whether a value of ``sweep.space`` is a section of keys rather than a range: a non-empty mapping of mappings
    none of whose keys is a range kind."""
    return isinstance(value, dict) and bool(value) and not set(value) & set(RANGE_KINDS) and all(
        isinstance(v, dict) for v in value.values())
