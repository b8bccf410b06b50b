"""The fixtures every test may use: the seed's data, one MLflow store and one Prefect test server per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import SEED_DATA, forget_loaded_data


@pytest.fixture(autouse=True)
def cold_load_caches():
    """Every test starts with nothing loaded: none passes or fails by what an earlier test read."""
    forget_loaded_data()
    yield
    forget_loaded_data()


@pytest.fixture(scope="session")
def seed_csv() -> Path:
    assert SEED_DATA.is_file(), f"the seed's data.csv is expected beside the checkout at {SEED_DATA}"
    return SEED_DATA


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """A session working directory holding the tracking database and its mlruns/ artifacts."""
    return tmp_path_factory.mktemp("bp-work")


@pytest.fixture(scope="session")
def tracking_uri(workdir) -> str:
    # not ./mlflow.db, so a run that ignored --tracking-uri would not land in it by accident
    return f"sqlite:///{workdir / 'tracking.db'}"


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect API for the whole session (its first start creates a database: ~20 s)."""
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # as bp does with a temporary server: no heartbeat thread, whose stop costs each flow run up to 1 s
    with prefect_test_harness(server_startup_timeout=180), \
            temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    """Run the test from the session working directory (MLflow puts artifacts under ./mlruns)."""
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return workdir
