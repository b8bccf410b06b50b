"""Tabular data for the line fit: CSV files read with pandas, or a generated noisy line.

Every failure is a DataError whose one line names the file and, where there is one, the line
and column at fault. A file compressed with gzip, bzip2, xz, zip or zstd (told by its leading
bytes, not its name) reads as the same table as the plain file. Loaded tables are cached per
process (keyed by the file's path, size and modification time), so the command line's
pre-flight check and the flow's load task read a file once between them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpcore.config.models import LineData
from bpcore.data.cache import LoadCache
from bpcore.data.compressed import DECOMPRESS_ERRORS, compression_of, first_line, unreadable
from bpcore.data.root import confine
from bpcore.errors import DataError, excerpt


@dataclass(frozen=True)
class Table:
    """Features and target of a regression problem.

    X: (n, d) float64, read-only; y: (n,) float64, read-only. ``source`` is the absolute file
    path (or a description of the generated data) and ``digest`` the sha256 of the file's bytes
    (or of the generated arrays).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str
    source: str
    digest: str

    def to_frame(self, rows: int | None = None, target: bool = True):
        """The first ``rows`` rows (all when None) as a pandas DataFrame with the column names."""
        import pandas as pd

        df = pd.DataFrame(self.X[:rows], columns=list(self.feature_names))
        if target:
            df[self.target_name] = self.y[:rows]
        return df


_CACHE: LoadCache[Table] = LoadCache(4)


def load_line_data(cfg: LineData, seed: int = 0) -> Table:
    """The table a line-fit config asks for: its CSV file, or the generated line when path is null."""
    if cfg.path is None:
        key: tuple = ("generated", cfg.rows, seed)
    else:
        path, stat = _checked(cfg.path)
        key = (str(path), stat.st_size, stat.st_mtime_ns, cfg.model_dump_json(exclude={"rows"}))
    table = _CACHE.get(key)
    if table is None:
        table = _CACHE.put(key, generated_line(cfg.rows, seed) if cfg.path is None else read_csv(path, cfg))
    return table


def generated_line(rows: int, seed: int) -> Table:
    """A seeded noisy line shaped like the seed's data: hours studied (25-70) vs test score."""
    rng = np.random.default_rng(seed)
    hours = rng.uniform(25.0, 70.0, size=rows)
    score = 8.0 + 1.3 * hours + rng.normal(0.0, 10.0, size=rows)
    X = _frozen(hours.reshape(-1, 1))
    y = _frozen(score)
    sha = hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest()
    return Table(X, y, ("hours",), "score", f"generated:line?rows={rows}&seed={seed}", sha)


def read_csv(path: Path, cfg: LineData) -> Table:
    """Read a numeric CSV; columns chosen by name or position per ``cfg``."""
    import pandas as pd

    compression = compression_of(path)
    header = cfg.header if cfg.header is not None else _has_header(path, compression)
    try:
        df = pd.read_csv(path, header=0 if header else None, skip_blank_lines=False, compression=compression)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a valid CSV file: {str(exc).strip()}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file (cannot decode it as UTF-8)") from None
    except DECOMPRESS_ERRORS as exc:  # a damaged archive may only show past the first line
        raise unreadable(path, compression, exc) from None
    first_line = 2 if header else 1
    if not header:
        df.columns = _default_names(df.shape[1])
    _check_separator(path, df)
    columns = [str(c) for c in df.columns]
    target = _column(path, columns, cfg.target, "target")
    if cfg.features is None:
        features = [c for c in columns if c != target]
    else:
        features = [_column(path, columns, f, "feature") for f in cfg.features]
        twice = next((f for i, f in enumerate(features) if f in features[:i]), None)
        if twice is not None:  # pandas would hand back a frame for the name and fail on it
            raise DataError(f"{path}: column {excerpt(twice)} is listed twice in data.features")
    if not features:
        raise DataError(f"{path}: no feature columns (the file has only the target column {excerpt(target)})")
    if target in features:
        raise DataError(f"{path}: column {excerpt(target)} is both a feature and the target")
    if len(df) < 2:
        raise DataError(f"{path}: needs at least 2 data rows, found {len(df)}")
    df.columns = columns
    values = _numeric(path, df[features + [target]], first_line)
    X = _frozen(values[:, :-1])
    y = _frozen(values[:, -1])
    return Table(X, y, tuple(features), target, str(path), file_digest(path))


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes as stored (compressed files are hashed compressed)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_path(path: str | Path) -> Path:
    """The line fit's CSV path, resolved, or a DataError saying why it cannot be read.

    Cheap enough for ``bp validate``: a stat and an access check; it reads nothing and imports
    no pandas.
    """
    return _checked(path)[0]


def _checked(path: str | Path) -> tuple[Path, os.stat_result]:
    resolved = confine(path)
    if resolved.is_dir():
        raise DataError(f"{resolved}: is a directory, not a CSV file")
    return resolved, check_file(resolved)


def check_file(path: Path) -> os.stat_result:
    """The file's stat, or a DataError saying why it cannot be read."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read data file: {exc.strerror}") from None
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot read data file: permission denied")
    return stat


def _has_header(path: Path, compression: str | None) -> bool:
    """A header is a first line none of whose cells parses as a number."""
    first = first_line(path, compression).decode("utf-8", errors="replace")
    cells = [c.strip() for c in first.split(",")]
    return bool(first.strip()) and not any(is_number(c) for c in cells)


def _check_separator(path: Path, df) -> None:
    """A file that parses as one column whose cells hold ';' or tabs was written with another
    separator: say so, rather than complain later about a lone target column."""
    if df.shape[1] != 1:
        return
    sample = [str(df.columns[0])] + [v for v in df.iloc[:100, 0] if isinstance(v, str)]
    counts = {sep: sum(text.count(sep) for text in sample) for sep in (";", "\t")}
    sep = max(counts, key=counts.get)
    if counts[sep]:
        shown = "';'" if sep == ";" else "a tab"
        raise DataError(
            f"{path}: the separator looks like {shown}, but only ',' is read (the file parses as a single column)"
        )


def is_number(text: str) -> bool:
    """Whether a CSV cell parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _default_names(count: int) -> list[str]:
    """Names for a headerless file: ``x, y`` for two columns, else ``x1 .. x(d), y``."""
    if count == 2:
        return ["x", "y"]
    return [f"x{i + 1}" for i in range(count - 1)] + ["y"]


def _column(path: Path, columns: list[str], ref: str | int, role: str) -> str:
    if isinstance(ref, int):
        if not -len(columns) <= ref < len(columns):
            raise DataError(f"{path}: {role} column {ref} is out of range (the file has {len(columns)} columns)")
        return columns[ref]
    if ref not in columns:
        raise DataError(f"{path}: no {role} column named {excerpt(ref)} (columns: {_listed(columns)})")
    return ref


def _listed(columns: list[str], most: int = 8) -> str:
    """A file's column names for a message: each an excerpt, at most ``most`` of them."""
    shown = ", ".join(excerpt(c) for c in columns[:most])
    return shown + (f", ... ({len(columns)} columns)" if len(columns) > most else "")


def _numeric(path: Path, df, first_line: int) -> np.ndarray:
    """The frame as float64, or a DataError naming the first bad cell by file line and column."""
    import pandas as pd

    for name in df.columns:
        col = df[name]
        if not pd.api.types.is_numeric_dtype(col):
            parsed = pd.to_numeric(col, errors="coerce")
            bad = parsed.isna() & col.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{path}: line {row + first_line}, column {excerpt(name)}: "
                    f"not a number: {excerpt(col.iloc[row])}"
                )
    values = df.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        cell = values[row, col]
        what = "missing or NaN value" if np.isnan(cell) else f"infinite value {cell}"
        raise DataError(f"{path}: line {row + first_line}, column {excerpt(df.columns[col])}: {what}")
    _check_magnitude(path, list(df.columns), values, first_line)
    return values


# Beyond this a value's square is inf in float64 (about 1.34e154).
_SQUARE_MAX = float(np.sqrt(np.finfo(np.float64).max))


def _check_magnitude(path: Path, names: list[str], values: np.ndarray, first_line: int) -> None:
    """DataError naming the first cell whose square overflows, or the largest cell of a column
    whose sum of squares does: the fit's moments and starting cost would be inf, and it would
    report that as divergence at iteration 0. values: (n, d), all finite."""
    peak = np.maximum(values.max(axis=0), -values.min(axis=0))  # (d,), no (n, d) temporary
    with np.errstate(over="ignore"):
        bound = values.shape[0] * peak * peak
    if np.isfinite(bound).all():
        return  # the common case: even n times the largest square fits
    big = np.argwhere(np.abs(values) > _SQUARE_MAX)
    if big.size:
        row, col = big[0]
        why = "its square overflows float64"
    else:
        with np.errstate(over="ignore"):
            sums = np.einsum("ij,ij->j", values, values)
        if np.isfinite(sums).all():
            return
        col = int(np.flatnonzero(~np.isfinite(sums))[0])
        row = int(np.argmax(np.abs(values[:, col])))
        why = "the column's sum of squares overflows float64"
    raise DataError(
        f"{path}: line {row + first_line}, column {excerpt(names[col])}: value {values[row, col]:g} is too large: {why}"
    )


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.flags.writeable = False
    return a
