"""CSV loading and the generated line: what loads, and the one-line errors for what does not."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from support import REPO

from bpcore.config.models import LineData
from bpcore.data.table import check_path, generated_line, load_line_data
from bpcore.errors import DataError


def write(tmp_path, text: str, name: str = "d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path, **kw):
    return load_line_data(LineData(path=str(path), **kw))


def test_seed_file_without_header(seed_csv):
    table = load(seed_csv)
    assert table.X.shape == (100, 1) and table.y.shape == (100,)
    assert table.feature_names == ("x",) and table.target_name == "y"
    assert not table.X.flags.writeable
    assert len(table.digest) == 64 and table.source == str(seed_csv)


def test_header_detected_and_columns_by_name_and_position(tmp_path):
    path = write(tmp_path, "a,b,c,score\n1,2,3,10\n4,5,6,20\n7,8,9,31\n")
    table = load(path)
    assert table.feature_names == ("a", "b", "c") and table.target_name == "score"
    by_name = load(path, features=["c", "a"], target="score")
    assert by_name.feature_names == ("c", "a")
    np.testing.assert_array_equal(by_name.X[:, 0], [3, 6, 9])
    by_pos = load(path, features=[1], target=0)
    assert by_pos.feature_names == ("b",) and by_pos.target_name == "a"
    np.testing.assert_array_equal(by_pos.y, [1, 4, 7])


def test_forced_header_setting(tmp_path):
    path = write(tmp_path, "1,2\n3,4\n5,6\n")
    assert load(path, header=True).X.shape == (2, 1)
    assert load(path, header=False).X.shape == (3, 1)


@pytest.mark.parametrize(
    ("text", "kw", "expected"),
    [
        ("", {}, "file is empty"),
        ("x,y\n", {}, "needs at least 2 data rows, found 0"),
        ("x,y\n1,2\n", {}, "needs at least 2 data rows, found 1"),
        ("x,y\n1,2\n3,abc\n5,6\n", {}, "line 3, column 'y': not a number: 'abc'"),
        ("1,2\n3,4\nfoo,6\n", {}, "line 3, column 'x': not a number: 'foo'"),
        ("x,y\n1,2\n3,\n5,6\n", {}, "line 3, column 'y': missing or NaN value"),
        ("x,y\n1,2\n3,nan\n", {}, "line 3, column 'y': missing or NaN value"),
        ("x,y\n1,2\n3,4\ninf,6\n", {}, "line 4, column 'x': infinite value inf"),
        ("x,y\n1,2\n3,4\n", {"target": "z"}, "no target column named 'z' (columns: 'x', 'y')"),
        ("x,y\n1,2\n3,4\n", {"features": ["q"]}, "no feature column named 'q'"),
        ("x,y\n1,2\n3,4\n", {"features": [5]}, "feature column 5 is out of range (the file has 2 columns)"),
        ("x,y\n1,2\n3,4\n", {"features": ["y"], "target": "y"}, "column 'y' is both a feature and the target"),
        ("1,2,3\n4,5,6\n", {"features": [0, 0]}, "column 'x1' is listed twice in data.features"),
        ("x,z,y\n1,2,3\n4,5,6\n", {"features": ["x", "x"]}, "column 'x' is listed twice in data.features"),
        ("x,z,y\n1,2,3\n4,5,6\n", {"features": ["z", 1]}, "column 'z' is listed twice in data.features"),
        ("x,y\n1,2\n3,1e308\n", {}, "line 3, column 'y': value 1e+308 is too large: its square overflows float64"),
        ("x,y\n1,2\n-2e154,1e300\n", {}, "line 3, column 'x': value -2e+154 is too large: its square overflows"),
        # each square fits, their sum over the rows does not: the cost at step 0 would be inf
        ("x,y\n1,1e154\n2,1.2e154\n", {}, "line 3, column 'y': value 1.2e+154 is too large: the column's sum"),
        ("y\n1\n2\n", {}, "no feature columns (the file has only the target column 'y')"),
    ],
)
def test_bad_csv_names_file_and_place(tmp_path, text, kw, expected):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load(path, **kw)
    message = str(err.value)
    assert message.startswith(str(path.resolve()) + ": ")
    assert expected in message
    assert "\n" not in message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such data file"):
        load(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=f"^{tmp_path}: is a directory, not a CSV file$"):
        load(tmp_path)


def test_check_path_reads_nothing_and_imports_no_pandas(tmp_path):
    path = write(tmp_path, "not, even: csv\x00")
    code = (
        "import sys\n"
        "from bpcore.data.table import check_path\n"
        "from bpcore.errors import DataError\n"
        f"print(check_path({str(path)!r}))\n"
        f"for bad in ({str(tmp_path)!r}, {str(tmp_path / 'nope.csv')!r}):\n"
        "    try:\n"
        "        check_path(bad)\n"
        "    except DataError as exc:\n"
        "        print(exc)\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=True)
    assert done.stdout.splitlines() == [
        str(path),
        f"{tmp_path}: is a directory, not a CSV file",
        f"{tmp_path / 'nope.csv'}: no such data file",
        "False",
    ]
    assert check_path(tmp_path / "." / path.name) == path


COMPRESSORS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
}


def zipped(data: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", data)
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
@pytest.mark.parametrize("headered", [False, True], ids=["seed", "header"])
def test_compressed_file_is_the_same_table(tmp_path, seed_csv, suffix, headered):
    data = seed_csv.read_bytes()
    if headered:
        data = b"hours,score\n" + data
    plain = tmp_path / "data.csv"
    plain.write_bytes(data)
    packed = tmp_path / f"data.csv{suffix}"
    packed.write_bytes(zipped(data) if suffix == ".zip" else COMPRESSORS[suffix](data))
    expected, table = load(plain), load(packed)
    assert table.X.shape == (100, 1)  # not 99: the first data row is no header
    np.testing.assert_array_equal(table.X, expected.X)
    np.testing.assert_array_equal(table.y, expected.y)
    assert (table.feature_names, table.target_name) == (expected.feature_names, expected.target_name)
    assert table.feature_names == (("hours",) if headered else ("x",))
    assert table.digest == hashlib.sha256(packed.read_bytes()).hexdigest() != expected.digest
    assert table.source == str(packed)


def test_compression_is_told_by_content_not_name(tmp_path, seed_csv):
    gzipped = tmp_path / "data.csv"  # gzip bytes under a plain name
    gzipped.write_bytes(gzip.compress(seed_csv.read_bytes()))
    np.testing.assert_array_equal(load(gzipped).y, load(seed_csv).y)
    plain = tmp_path / "plain.csv.gz"  # plain text under a gzip name
    plain.write_bytes(seed_csv.read_bytes())
    np.testing.assert_array_equal(load(plain).y, load(seed_csv).y)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("cut.csv.gz", gzip.compress(b"x,y\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(2000)))[:900],
         "corrupt gzip data: "),
        ("junk.csv.gz", b"\x1f\x8bnot gzip at all", "corrupt gzip data: "),
        ("two.zip", None, "a zip file must hold exactly one CSV file; it holds 2"),
        ("d.csv.zst", b"\x28\xb5\x2f\xfd" + b"junk", "zstd"),  # needs zstandard, or is corrupt
    ],
    ids=["truncated-gzip", "not-gzip", "zip-of-two", "zstd"],
)
def test_bad_compressed_file(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.csv", "x,y\n1,2\n3,4\n")
            archive.writestr("b.csv", "x,y\n1,2\n3,4\n")
    else:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("x;y\n1;2\n3;4\n", "';'"),
        ("1;2\n3;4", "';'"),
        ("1;2\n", "';'"),
        ("x\ty\n1\t2\n3\t4\n", "a tab"),
        ("1\t2\n3\t4\n", "a tab"),
    ],
)
@pytest.mark.parametrize("header", [None, False])
def test_other_separator_is_named(tmp_path, text, shown, header):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load(path, header=header)
    assert str(err.value) == (
        f"{path}: the separator looks like {shown}, but only ',' is read (the file parses as a single column)"
    )


@pytest.mark.parametrize("big", ["1e6", "1e100", "-1e150", "1e153"])
def test_large_values_still_load(tmp_path, big):
    table = load(write(tmp_path, f"x,y\n1,{big}\n2,3\n"))
    assert table.y[0] == float(big)


def test_binary_file(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"\xff\xfe\x00\x81\x82\n\x90\x91\n")
    with pytest.raises(DataError, match=r"b\.csv: "):
        load(path)


def test_cache_sees_a_changed_file(tmp_path):
    path = write(tmp_path, "x,y\n1,2\n3,4\n")
    first = load(path)
    assert load(path) is first
    write(tmp_path, "x,y\n1,2\n3,5\n7,8\n")
    second = load(path)
    assert second.X.shape == (3, 1) and second.digest != first.digest


def test_generated_line_is_seeded_and_shaped_like_the_seed():
    a, b = generated_line(100, 0), generated_line(100, 0)
    assert a.X.tobytes() == b.X.tobytes() and a.digest == b.digest
    assert generated_line(100, 1).digest != a.digest
    x = a.X[:, 0]
    assert 25 <= x.min() and x.max() <= 70
    slope = np.polyfit(x, a.y, 1)[0]
    assert 1.0 < slope < 1.6
    assert load_line_data(LineData(), seed=0).digest == a.digest
