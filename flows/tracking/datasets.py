"""A run's training data as an MLflow dataset: name, source, bp's digest, schema and targets."""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source_registry import resolve_dataset_source

from bpcore.data.table import Table


def table_dataset(table: Table) -> Dataset:
    """A regression table as an MLflow dataset (name, source, our digest, schema, targets)."""
    name, source = _dataset_source(table.source)
    return mlflow.data.from_pandas(table.to_frame(), source=source, name=name,
                                   targets=table.target_name, digest=table.digest[:16])


def array_dataset(X: np.ndarray, y: np.ndarray, source: str, digest: str) -> Dataset:
    """Feature and label arrays as an MLflow dataset, named and sourced like a table."""
    name, src = _dataset_source(source)
    return mlflow.data.from_numpy(X, source=src, targets=y, name=name, digest=digest[:16])


def _dataset_source(source: str):
    """(name, DatasetSource) for a file or directory path, or for a ``scheme:...`` description."""
    if not Path(source).is_absolute():  # generated:..., bundled:...
        return source.split("?")[0], CodeDatasetSource({"source": source})
    # MLflow registers its local-file source twice and warns that a path is ambiguous between
    # the two (identical) classes; the resolution itself is right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Path(source).name, resolve_dataset_source(Path(source).as_uri())
