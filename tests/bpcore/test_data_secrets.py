"""What a data error may give away: a short excerpt of the file at most, and nothing outside the data root.

On a worker a data error becomes the flow run's state message, its logs and the MLflow run's
``bp.failure_reason``, read by whoever submitted the run.
"""

from __future__ import annotations

import os
import threading

import pytest

from bpcore.config.models import LineData, MnistData
from bpcore.data.mnist.load import load_mnist
from bpcore.data.table import load_line_data
from bpcore.errors import DataError, excerpt

SECRET = "s3cret-token-that-must-not-leak-0123456789"


def test_excerpt_is_short_and_printable():
    assert excerpt("abc") == "'abc'"
    assert excerpt("a\x00b\x1b[2J") == r"'a\x00b\x1b[2J'"
    long = excerpt("x" * 1000)
    assert long == "'" + "x" * 40 + "...' (1000 characters)"


def test_an_environment_file_is_not_quoted(monkeypatch, tmp_path):
    monkeypatch.setenv("BP_TEST_SECRET", SECRET)
    environ = tmp_path / "environ"  # what /proc/self/environ holds: one NUL-separated line
    shaped = {"HOME": "/root", "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin", "BP_TEST_SECRET": SECRET}
    environ.write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in sorted(shaped.items())))
    with pytest.raises(DataError) as caught:
        load_line_data(LineData(path=str(environ)))
    message = str(caught.value)  # one column, named by the whole line: quoted as a short excerpt
    assert SECRET not in message and "\x00" not in message and "characters)" in message, message
    # this process's own: which error depends on the machine's variables (a comma makes two columns)
    path = f"/proc/{os.getpid()}/environ"
    with pytest.raises(DataError) as caught:
        load_line_data(LineData(path=path))
    message = str(caught.value)
    assert SECRET not in message and "\x00" not in message and len(message) < 200 + len(path), message


def test_a_long_cell_is_cut(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text(f"a,b\n1,{SECRET * 3}\n2,3\n")
    with pytest.raises(DataError) as caught:
        load_line_data(LineData(path=str(path)))
    assert str(caught.value).endswith(f"line 2, column 'b': not a number: '{SECRET[:40]}...' (126 characters)")


def test_a_header_line_is_cut_in_the_list_of_columns(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"{SECRET}{i}" for i in range(30)) + "\n" + ",".join("1" * 30) + "\n" + ",".join("2" * 30))
    with pytest.raises(DataError) as caught:
        load_line_data(LineData(path=str(path), target="missing"))
    assert SECRET not in str(caught.value) and "(30 columns)" in str(caught.value)


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("BP_DATA_ROOT", str(root))
    return root


def test_outside_the_data_root_nothing_is_opened(root, tmp_path):
    fifo = tmp_path / "outside.csv"  # opening a FIFO blocks until a writer comes: the test would hang
    os.mkfifo(fifo)
    failed = []

    def attempt():
        try:
            load_line_data(LineData(path=str(fifo)))
        except DataError as exc:
            failed.append(str(exc))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the file outside the data root was opened"
    assert failed == [f"data.path {fifo}: outside the data root {root} (BP_DATA_ROOT): this machine reads data "
                      "only under it"]


def test_a_link_out_of_the_data_root_is_outside_it(root, tmp_path):
    secret = tmp_path / "shadow.csv"
    secret.write_text("x,y\n1,2\n3,4\n")
    (root / "link.csv").symlink_to(secret)
    with pytest.raises(DataError, match="outside the data root"):
        load_line_data(LineData(path=str(root / "link.csv")))
    for path in ("/etc/shadow", f"{root}/../shadow.csv"):
        with pytest.raises(DataError, match="outside the data root"):
            load_line_data(LineData(path=path))
    with pytest.raises(DataError, match="data.path /etc/passwd: outside the data root"):
        load_mnist(MnistData(path="/etc/passwd"), 0)
    with pytest.raises(DataError, match="data.cache_dir /tmp/mnist: outside the data root"):
        load_mnist(MnistData(download=True, cache_dir="/tmp/mnist"), 0)


def test_inside_the_data_root_data_loads(root):
    (root / "line.csv").write_text("x,y\n1,2\n3,4.5\n")
    assert load_line_data(LineData(path=str(root / "line.csv"))).y.tolist() == [2.0, 4.5]
    assert len(load_mnist(MnistData(limit=100), 0).train_y) == 90  # the bundled digits are no user path
