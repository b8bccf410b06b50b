"""CSV loading and the generated line: what loads, and the one-line errors for what does not."""

from __future__ import annotations

import numpy as np
import pytest

from bpcore.config import LineData
from bpcore.data import generated_line, load_line_data
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
        ("x,y\n1,2\n3,4\n", {"target": "z"}, "no target column named 'z' (columns: x, y)"),
        ("x,y\n1,2\n3,4\n", {"features": ["q"]}, "no feature column named 'q'"),
        ("x,y\n1,2\n3,4\n", {"features": [5]}, "feature column 5 is out of range (the file has 2 columns)"),
        ("x,y\n1,2\n3,4\n", {"features": ["y"], "target": "y"}, "column 'y' is both a feature and the target"),
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
    with pytest.raises(DataError, match="not a file"):
        load(tmp_path)


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
