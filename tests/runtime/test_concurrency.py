"""Several bp train at once on a tracking file that does not exist yet: all finish, and so do later runs."""

from __future__ import annotations

import subprocess

import pytest
from mlflow.tracking import MlflowClient
from support import BP, REPO, prefect_api_env


@pytest.mark.usefixtures("prefect_server")
def test_four_trains_at_once_on_a_new_sqlite_file(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    argv = [*BP, "train", str(REPO / "configs" / "chain.yaml"), "--tracking-uri", uri,
            "--set", "trainer.iterations=20"]
    procs = [subprocess.Popen(argv + ["--set", f"seed={i}"], cwd=tmp_path, env=prefect_api_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert [code for code, _, _ in outcomes] == [0] * 4, [err[-1500:] for _, _, err in outcomes]
    later = subprocess.run(argv, cwd=tmp_path, env=prefect_api_env(), capture_output=True, text=True, timeout=300)
    assert later.returncode == 0, later.stderr[-1500:]

    mc = MlflowClient(uri)
    runs = mc.search_runs([mc.get_experiment_by_name("chain").experiment_id])
    assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "0", "1", "2", "3"]
