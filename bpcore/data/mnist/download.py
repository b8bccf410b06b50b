"""The four standard MNIST IDX files, fetched from a mirror by pooch and checked against their md5s."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bpcore.errors import DataError, causes, one_line

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# identity: requests would otherwise undo a gzip Content-Encoding, and the md5 is of the bytes as served
_HEADERS = {"User-Agent": "bp-pipeline (pooch)", "Accept-Encoding": "identity"}


def download(mirror: str, directory: Path, files: dict[str, str] = MNIST_FILES, timeout: float = 60.0) -> list[Path]:
    """Fetch each of ``files`` (name -> md5) from ``mirror`` into ``directory`` (created if needed).

    A file already there with the right md5 is kept without a request. Otherwise pooch streams it
    into a temporary file beside its target, it is checked against its md5 and only then moved
    into place, so an interrupted or bad download never leaves a file under the final name.
    Returns the paths in the order of ``files``.
    """
    import pooch  # imported here: it (and requests, which it brings) is only needed for a download

    pooch.get_logger().setLevel("WARNING")  # its "Downloading ..." info lines are not ours to print
    directory = Path(directory).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{directory}: cannot create the download directory: {exc.strerror or exc}") from None
    base = mirror.rstrip("/") + "/"
    paths = []
    for name, md5 in files.items():
        target = directory / name
        _retrieve(base + name, target, md5.lower(), timeout)
        paths.append(target)
    return paths


def file_md5(path: Path) -> str:
    """The md5 hex digest of the file's bytes (a checksum, not a security measure)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _retrieve(url: str, target: Path, md5: str, timeout: float) -> None:
    """``url`` saved as ``target`` unless ``target`` already has ``md5``; every failure a one-line DataError."""
    import pooch
    import requests

    http = pooch.HTTPDownloader(progressbar=False, timeout=timeout, chunk_size=1 << 16, headers=_HEADERS)

    def checked(url: str, tmp: str, instance) -> None:
        # checked here, where the md5 that arrived is known, so the error can say what it was;
        # pooch deletes the temporary file whatever is raised, and checks the md5 again before the move
        http(url, tmp, instance)
        got = file_md5(Path(tmp))
        if got != md5:
            raise DataError(f"{url}: checksum mismatch: expected md5 {md5}, got {got} (not saved as {target})")

    try:
        pooch.retrieve(url, known_hash=f"md5:{md5}", fname=target.name, path=target.parent, downloader=checked,
                       progressbar=False)
    except requests.HTTPError as exc:
        if exc.response is None:
            raise DataError(f"{url}: download failed: {_cause(exc)}") from None
        exc.response.close()
        raise DataError(f"{url}: download failed: HTTP {exc.response.status_code} "
                        f"{' '.join(str(exc.response.reason or '').split())}") from None
    except (requests.RequestException, ValueError) as exc:  # ValueError: a bad URL, or pooch's own md5 check
        raise DataError(f"{url}: download failed: {_cause(exc)}") from None
    except OSError as exc:
        raise DataError(f"{target}: cannot save the download: {exc.strerror or exc}") from None


def _cause(exc: BaseException) -> str:
    """The innermost error under requests' and urllib3's wrappers, e.g. ``[Errno 111] Connection refused``."""
    *_, innermost = causes(exc)
    return one_line(innermost)
