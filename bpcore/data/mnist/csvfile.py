"""Digits in CSV text: 785 whole numbers a line (a label 0-9 and 784 pixels 0-255), gzipped or not.

Errors name the file line and column, counted as a text editor counts them.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from bpcore.data.mnist.digits import PIXELS, Digits, frozen, read_bytes
from bpcore.data.table import is_number
from bpcore.errors import DataError, excerpt, one_line

COLUMNS = PIXELS + 1


def load_csv(path: Path) -> Digits:
    """Digits from a CSV file (gzipped or not), one per line: the label, then its 784 pixels (0-255).

    A first line that is not all numbers is taken as a header. Errors name the file line.
    """
    path = Path(path).expanduser().resolve()
    data, sha = read_bytes(path)
    images, labels = parse_csv(path, data, label_col=0)
    return Digits(images, labels, str(path), sha)


def parse_csv(path: Path, data: bytes, label_col: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 784) uint8, labels (n,) int64), both read-only, from CSV text with 785 columns.

    ``label_col`` is 0 (the label, then the pixels) or 784 (the pixels, then the label); ``path``
    only names the file in errors.
    """
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
    return frozen(pixels, np.uint8), frozen(labels, np.int64)


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
        raise DataError(f"{path}: not a valid CSV file: {one_line(exc)}") from None
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
                                f"not a number: {excerpt(text.iloc[row])}")
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
