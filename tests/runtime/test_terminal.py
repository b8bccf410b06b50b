"""What a bp process shows on its terminal: bp's own lines; Prefect's engine log only with --verbose."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from support import BP, REPO, python_env

from flows.runtime import terminal


def record(name: str, level: int, marked: bool = False) -> logging.LogRecord:
    return logging.makeLogRecord({"name": name, "levelno": level, "levelname": logging.getLevelName(level),
                                  "msg": "text", **({terminal.MARK: True} if marked else {})})


def test_only_bp_lines_and_other_libraries_warnings_pass():
    only = terminal.BpLinesOnly()
    assert only.filter(record("prefect.flow_runs", logging.INFO, marked=True))
    assert only.filter(record("prefect.task_runs", logging.WARNING, marked=True))
    assert not only.filter(record("prefect.task_runs", logging.INFO))  # "Finished in state Completed()"
    assert not only.filter(record("prefect.flow_runs", logging.ERROR))  # "Finished in state Failed(...)"
    assert only.filter(record("distributed.worker", logging.WARNING))
    assert not only.filter(record("distributed.worker", logging.INFO))


def test_quiet_filters_prefects_console_handlers_unless_verbose(monkeypatch):
    from prefect.logging.handlers import PrefectConsoleHandler

    console = PrefectConsoleHandler()
    logger = logging.getLogger("bp-test-terminal")
    logger.addHandler(console)
    try:
        monkeypatch.setenv(terminal.VERBOSE, "1")
        terminal.quiet()
        assert not console.filters
        monkeypatch.delenv(terminal.VERBOSE)
        terminal.quiet()
        terminal.quiet()  # once is enough: a second call adds nothing
        assert [type(f) for f in console.filters] == [terminal.BpLinesOnly]
    finally:
        logger.removeHandler(console)


@pytest.mark.slow  # Prefect's temporary server and a local Dask cluster
def test_a_parallel_sweep_prints_bp_lines_from_its_workers_and_no_engine_log(tmp_path: Path):
    env = {**python_env(), "PREFECT_HOME": str(Path.home() / ".prefect")}
    env.pop("PREFECT_API_URL", None)
    env.pop(terminal.VERBOSE, None)
    done = subprocess.run([*BP, "sweep", str(REPO / "configs" / "linreg_lr_sweep.yaml"),
                           "--parallel", "2", "--tracking-uri", f"sqlite:///{tmp_path / 't.db'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "8 children, 2 at a time" in err and "best: lr=0.0003" in err
    assert err.count("' - finished: ") == 6  # each child's own line, printed by the worker that trained it
    assert "lr=0.0004' - diverged at iteration" in err
    for engine in ("Beginning flow run", "Finished in state", "Created task run", "Task run failed"):
        assert engine not in err, err
    assert "Successfully registered" not in err and "registered linreg-line version" in done.stdout
