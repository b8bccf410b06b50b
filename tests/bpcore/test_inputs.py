"""Hostile input: each case is exit 2 with one line naming the file, key or URI at fault, before Prefect starts."""

from __future__ import annotations

import time

import pytest
from support import REPO, light_bp, refused

LINREG = str(REPO / "configs" / "linreg.yaml")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.learning_rate=true"], "trainer.learning_rate = True: a boolean is not a number"),
        (["trainer.iterations=1.0e+23"], "trainer.iterations = 99999999999999991611392: Input should be less "
                                         "than or equal to 1000000"),
        (["data.rows=100000000000"], "data.rows = 100000000000: Input should be less than or equal to 10000000"),
        (["seed=false"], "seed = False: a boolean is not a number"),
    ],
)
def test_values_that_must_not_pass(overrides, expected):
    args = [a for o in overrides for a in ("--set", o)]
    refused(light_bp("train", LINREG, *args), f"{LINREG}: {expected}")
    refused(light_bp("validate", LINREG, *args), expected)


def test_a_key_given_twice_is_an_error(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("kind: linreg\ntrainer:\n  learning_rate: 0.0001\n  iterations: 10\n  learning_rate: 0.1\n")
    refused(light_bp("validate", str(path)), f"{path}: line 5: invalid YAML: duplicate key 'learning_rate'")


def test_an_empty_experiment_name_is_an_error():
    refused(light_bp("train", LINREG, "--experiment", ""), "--experiment: the experiment name must not be empty")


def test_validate_refuses_a_directory_as_the_csv(tmp_path):
    refused(light_bp("validate", LINREG, "--set", f"data.path={tmp_path}"), f"{tmp_path}: is a directory")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,c\n1,2,3\n4,5,6\n", "column 'a' is listed twice in data.features"),
        ("x;y\n1;2\n3;4\n", "the separator looks like ';'"),
        ("x,y\n1,2\n1e308,4\n", "line 3, column 'x': value 1e+308 is too large"),
    ],
)
def test_bad_csv_files(tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    extra = ["--set", "data.features=[0,0]"] if "twice" in expected else []
    refused(light_bp("train", LINREG, "--set", f"data.path={path}", *extra), f"bp: {path}: {expected}")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1:9", "tracking URI http://127.0.0.1:9: "),
        ("sqlite:////sys/m.db", "tracking URI sqlite:////sys/m.db: "),
        ("notascheme://x", "tracking URI notascheme://x: "),
    ],
)
def test_a_bad_tracking_uri_is_refused_within_seconds(uri, expected, tmp_path):
    start = time.monotonic()
    refused(light_bp("train", LINREG, "--tracking-uri", uri, cwd=tmp_path), expected)
    assert time.monotonic() - start < 15  # it used to retry for minutes
