"""Config models, YAML loading and --set overrides: strict, and errors that name the key."""

from __future__ import annotations

import pytest

from bpcore.config.serial import digest, flatten, to_dict
from bpcore.errors import ConfigError
from bpcore.kinds import load_config

LINREG = "configs/linreg.yaml"


@pytest.fixture(autouse=True)
def repo_cwd(monkeypatch):
    from support import REPO

    monkeypatch.chdir(REPO)


def test_shipped_config_loads():
    config = load_config(LINREG)
    assert config.kind == "linreg" and config.trainer.learning_rate == 1e-4
    assert config.trainer.iterations == 1000 and config.data.path is None


def test_overrides_coerce_types_and_nest():
    config = load_config(LINREG, ["trainer.learning_rate=2e-4", "trainer.iterations=50",
                                  "data.features=[0]", "data.path=some.csv", "seed=3"])
    assert config.trainer.learning_rate == 2e-4 and config.trainer.iterations == 50
    assert config.data.features == [0] and config.data.path == "some.csv" and config.seed == 3
    assert load_config(LINREG, ["data.path=null"]).data.path is None


def test_flatten_gives_dotted_leaves():
    params = flatten(to_dict(load_config(LINREG)))
    assert params["trainer.learning_rate"] == 1e-4
    assert params["data.path"] is None and "data" not in params


def test_digest_follows_the_resolved_config():
    assert digest(load_config(LINREG)) == digest(load_config(LINREG))
    assert digest(load_config(LINREG)) != digest(load_config(LINREG, ["trainer.iterations=999"]))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.learning_rate=-1"], "trainer.learning_rate = -1: Input should be greater than 0"),
        (["trainer.learning_rate=0"], "trainer.learning_rate = 0: Input should be greater than 0"),
        (["trainer.iterations=0"], "trainer.iterations = 0: Input should be greater than or equal to 1"),
        (["trainer.iterations=ten"], "trainer.iterations = 'ten': Input should be a valid integer"),
        (["trainer.learnin_rate=1"], "trainer.learnin_rate: unknown key"),
        (["extra=1"], "extra: unknown key"),
        (["trainer.method=slow"], "trainer.method = 'slow': Input should be 'fast' or 'direct'"),
        (["kind=nope"], "kind = 'nope': unknown experiment"),
        (["trainer.learning_rate.x=1"], "--set trainer.learning_rate.x: trainer.learning_rate is a value"),
        (["trainer.learning_rate"], "--set 'trainer.learning_rate': expected KEY=VALUE"),
        (["trainer.learning_rate=[1"], "--set trainer.learning_rate: cannot parse value"),
    ],
)
def test_bad_values_name_key_value_and_rule(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(LINREG, overrides)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_required_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: linreg\ntrainer:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: trainer\.iterations: required key is missing"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "config file is empty"),
        ("- a\n- b\n", "a config must be a mapping"),
        ("kind: linreg\ntrainer: [1,\n", "line 3: invalid YAML"),
        ("trainer: {}\n", "kind: required key is missing"),
    ],
)
def test_bad_files(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
