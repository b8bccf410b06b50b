"""MNIST's IDX files: ``<split>-images-idx3-ubyte`` and ``<split>-labels-idx1-ubyte``, gzipped or raw."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from bpcore.data.mnist.digits import PIXELS, SIDE, Digits, combined_digest, frozen, read_bytes
from bpcore.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
SPLITS = ("train", "t10k")

_KINDS = {IMAGES_MAGIC: "IDX images", LABELS_MAGIC: "IDX labels"}


def read_idx(path: Path, expect: int | None = None) -> np.ndarray:
    """One IDX file of unsigned bytes, gzipped or raw (told apart by its first two bytes).

    Returns (n, 28, 28) uint8 for images (magic 0x00000803) or (n,) uint8 for labels
    (magic 0x00000801), read-only. ``expect`` (one of those two magics) rejects the other kind.
    """
    path = Path(path).expanduser()
    data, _ = read_bytes(path)
    return _parse_idx(path, data, expect)


def load_idx(directory: Path, split: str = "train") -> Digits:
    """The ``train`` or ``t10k`` digits of a directory holding ``<split>-images-idx3-ubyte[.gz]``
    and ``<split>-labels-idx1-ubyte[.gz]`` (the .gz file is preferred when both are there)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    directory = _directory(directory)
    image_path = _find(directory, f"{split}-images-idx3-ubyte")
    label_path = _find(directory, f"{split}-labels-idx1-ubyte")
    image_bytes, image_sha = read_bytes(image_path)
    images = _parse_idx(image_path, image_bytes, IMAGES_MAGIC)
    label_bytes, label_sha = read_bytes(label_path)
    labels = _parse_idx(label_path, label_bytes, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{image_path}: holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if len(labels) == 0:
        raise DataError(f"{image_path}: holds no images")
    if labels.max() > 9:
        i = int(np.argmax(labels > 9))
        raise DataError(f"{label_path}: label {labels[i]} at index {i} is not a digit 0-9")
    return Digits(images.reshape(len(images), PIXELS), frozen(labels, np.int64), str(directory),
                  combined_digest(image_sha, label_sha))


def idx_names(split: str) -> list[str]:
    """Every file name ``load_idx`` may read for ``split``, gzipped and raw."""
    bases = (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte")
    return [base + ext for base in bases for ext in (".gz", "")]


def _parse_idx(path: Path, data: bytes, expect: int | None) -> np.ndarray:
    """Check an IDX header against the data that follows it; the array is a read-only view of ``data``."""
    if len(data) < 4:
        raise DataError(f"{path}: truncated header: expected at least 8 bytes, found {len(data)}")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _KINDS or (expect is not None and magic != expect):
        kind = f" ({_KINDS[magic]})" if magic in _KINDS else ""
        wanted = " or ".join(f"0x{m:08x} ({_KINDS[m]})" for m in _KINDS if expect in (None, m))
        raise DataError(f"{path}: bad magic number 0x{magic:08x}{kind}, expected {wanted}")
    ndim = data[3]
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{path}: truncated header: expected {start} bytes, found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:start])
    if ndim == 3 and dims[1:] != (SIDE, SIDE):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]} pixels, expected {SIDE}x{SIDE}")
    what = f"{dims[0]} images of {SIDE}x{SIDE}" if ndim == 3 else f"{dims[0]} labels"
    need, found = math.prod(dims), len(data) - start
    if found < need:
        raise DataError(f"{path}: truncated data: expected {need} bytes for {what}, found {found}")
    if found > need:
        raise DataError(f"{path}: {found - need} trailing bytes after the {need} data bytes for {what}")
    return np.frombuffer(data, dtype=np.uint8, count=need, offset=start).reshape(dims)


def _directory(directory: Path) -> Path:
    directory = Path(directory).expanduser().resolve()
    if not directory.exists():
        raise DataError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    return directory


def _find(directory: Path, base: str) -> Path:
    for name in (base + ".gz", base):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: no {base}.gz (or uncompressed {base}) in this directory")
