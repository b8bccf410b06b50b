"""A data file's compression, told by its leading bytes, and its first line as pandas will decompress it.

Sniffing the bytes (rather than letting pandas go by the name) means the header check and pandas
always decompress the same way.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import sys
import zipfile
import zlib
from pathlib import Path

from bpcore.errors import DataError, one_line

# leading bytes of the compressed formats pandas reads, and pandas' names for them
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip", b"\x28\xb5\x2f\xfd": "zstd"}


DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


def compression_of(path: Path) -> str | None:
    """pandas' name for the file's compression (from its first bytes), or None for plain text."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def first_line(path: Path, compression: str | None) -> bytes:
    """The first line of the file's content, decompressed as pandas will decompress it."""
    try:
        with contextlib.ExitStack() as stack:
            if compression == "zip":
                archive = stack.enter_context(zipfile.ZipFile(path))
                names = archive.namelist()
                if len(names) != 1:  # pandas reads a zip only when it holds one file
                    raise DataError(f"{path}: a zip file must hold exactly one CSV file; it holds {len(names)}")
                fh = stack.enter_context(archive.open(names[0]))
            elif compression == "zstd":
                fh = stack.enter_context(_zstd_open(path))
            else:
                opener = {None: open, "gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[compression]
                fh = stack.enter_context(opener(path, "rb"))
            line = fh.readline()
    except DECOMPRESS_ERRORS as exc:
        raise unreadable(path, compression, exc) from None
    except Exception as exc:  # zstandard.ZstdError: its module is imported (by _zstd_open) only when it is there
        zstandard = sys.modules.get("zstandard")
        if zstandard is None or not isinstance(exc, zstandard.ZstdError):
            raise
        raise unreadable(path, compression, exc) from None
    if line[257:262] == b"ustar" and b"\0" in line[:257]:  # a tar archive's first "line" is a header block
        raise DataError(f"{path}: a tar archive; give the CSV file itself (compressed or not)")
    return line


def _zstd_open(path: Path):
    """A binary reader of the decompressed file (zstandard is optional, as it is for pandas)."""
    try:
        import zstandard
    except ImportError:
        raise DataError(f"{path}: zstd-compressed; reading it needs the zstandard package") from None
    return io.BufferedReader(zstandard.open(path, "rb"))  # zstandard's own reader has no readline


def unreadable(path: Path, compression: str | None, exc: Exception) -> DataError:
    reason = one_line(exc)
    if compression is None:
        return DataError(f"{path}: cannot read data file: {reason}")
    return DataError(f"{path}: corrupt {compression} data: {reason}")
