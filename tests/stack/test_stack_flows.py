"""The flows on real servers: Postgres, the MLflow server, the Prefect server and two workers, started once
per session by ``bp stack up`` on free 127.0.0.1 ports (tests/support/stack.py): scheduled runs, bp serve,
sweeps on the pool's Dask workers, 32 points with a worker process killed mid-point, the MLflow server restarted
mid-run, and reproduction here of a worker's child."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import BP, REPO, bp, python_env
from support.procs import killed_if_left
from support.stack import prefect_client, prefect_settings

pytestmark = pytest.mark.stack

LINREG = str(REPO / "configs" / "linreg.yaml")
LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")
# the scheduler looks for due runs every 60 s, a worker for work every 10 s: too slow for a test
FAST_SERVICES = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_WORKER_QUERY_SECONDS": "2"}


@pytest.fixture(scope="module")
def servers(stack, tmp_path_factory):
    """The session's ``bp stack up`` (two workers, on the private Postgres), as the environment a client needs.

    This module runs after tests/stack/test_stack.py (file order): it kills a worker and restarts the MLflow
    server, which that module's checks of the running stack must not see.
    """
    where = tmp_path_factory.mktemp("clients")
    return {"env": {**python_env(), **FAST_SERVICES, **stack.env}, "dir": stack.dir, "cwd": where, **stack.env}


def last_run_id(done: subprocess.CompletedProcess) -> str:
    assert done.returncode in (0, 1), done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("run_id: "), done.stdout[-2000:]
    return last.removeprefix("run_id: ")


def client(servers) -> MlflowClient:
    return MlflowClient(servers["MLFLOW_TRACKING_URI"])


def runs_of(mc: MlflowClient, experiment: str, where: str = "") -> list:
    found = mc.get_experiment_by_name(experiment)
    return mc.search_runs([found.experiment_id], where) if found else []


def test_stack_up_made_the_automation_that_crashes_silent_flow_runs(servers):
    from prefect.automations import Automation
    from prefect.settings import temporary_settings

    from flows.server.automations import ZOMBIE_AUTOMATION

    with temporary_settings(updates=prefect_settings(servers)):
        automation = Automation.read(name=ZOMBIE_AUTOMATION)  # (through the same settings as prefect_client)
    assert automation.enabled and automation.trigger.posture == "Proactive"
    assert automation.trigger.after == {"prefect.flow-run.heartbeat"}
    assert automation.actions[0].state.value == "CRASHED"


def test_deploy_moves_deployments_of_the_old_flat_layout_to_the_new_module_paths(servers, tmp_path):
    """A server holding deployments registered before flows/ had packages (``flows.linreg.linreg``, ...): bp deploy
    points them at the modules that exist now, and deletes the sweep child deployment (``sweep-child-<pool>``) that
    earlier versions ran sweep points as (they are sweep workers' background tasks now)."""
    line, sweep = tmp_path / "moved.yaml", tmp_path / "moved_sweep.yaml"
    line.write_text(Path(LINREG).read_text())
    sweep.write_text(Path(LINREG_SWEEP).read_text())
    old = {("linreg", "moved"): "flows.linreg.linreg", ("sweep", "moved_sweep"): "flows.sweep.sweep",
           ("linreg", "sweep-child-moved"): "flows.linreg.linreg"}
    made = bp("deploy", str(line), "--pool", "moved", "--create-pool", env=servers["env"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    try:
        with prefect_client(servers) as prefect:
            for (flow_name, name), entrypoint in old.items():
                prefect.create_deployment(prefect.create_flow_from_name(flow_name), name, entrypoint=entrypoint,
                                          work_pool_name="moved")
            assert prefect.read_deployment_by_name("linreg/moved").entrypoint == "flows.linreg.linreg"
        deployed = bp("deploy", str(line), str(sweep), "--pool", "moved", env=servers["env"], cwd=tmp_path)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        from prefect.exceptions import ObjectNotFound

        with prefect_client(servers) as prefect:
            now = {}
            for key in old:
                with contextlib.suppress(ObjectNotFound):
                    now[key] = prefect.read_deployment_by_name("/".join(key)).entrypoint
    finally:  # the other tests see the session's server with its one pool, bp
        from prefect.exceptions import ObjectNotFound

        with prefect_client(servers) as prefect:
            for key in old:
                with contextlib.suppress(ObjectNotFound):
                    prefect.delete_deployment(prefect.read_deployment_by_name("/".join(key)).id)
            prefect.delete_work_pool("moved")
    assert now == {("linreg", "moved"): "flows.experiments.linreg.linreg",
                   ("sweep", "moved_sweep"): "flows.sweep.flow.sweep"}


def test_a_scheduled_run_is_trained_by_a_worker(servers, tmp_path):
    config = tmp_path / "every_few_seconds.yaml"
    config.write_text(Path(LINREG).read_text() + "schedule:\n  interval: 10\n")
    deployed = bp("deploy", str(config), "--set", "experiment=scheduled", env=servers["env"], cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert "linreg/every_few_seconds: every 10 s, overlapping runs skipped, work pool 'bp'" in deployed.stdout
    again = bp("deploy", str(config), "--set", "experiment=scheduled", env=servers["env"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]

    mc, deadline, finished = client(servers), time.monotonic() + 180, []
    while not finished and time.monotonic() < deadline:
        finished = runs_of(mc, "scheduled", "attributes.status = 'FINISHED'")
        time.sleep(2)
    assert finished, "no scheduled run finished within 3 minutes"
    run = finished[0]
    assert run.data.tags["bp.deployment"] == "every_few_seconds" and run.data.tags["bp.status"] == "finished"
    assert [m.step for m in mc.get_metric_history(run.info.run_id, "cost")] == list(range(1001))
    assert any(m.model_id for m in (run.outputs.model_outputs if run.outputs else []))

    with prefect_client(servers) as prefect:
        deployments = [d for d in prefect.read_deployments() if d.name == "every_few_seconds"]
        assert len(deployments) == 1 and len(deployments[0].schedules) == 1  # deployed twice: updated
        # overlap: skip (the default): one run at a time, a due run cancelled while the previous one runs
        limit = deployments[0].concurrency_limit or getattr(deployments[0], "global_concurrency_limit", None)
        assert getattr(limit, "limit", limit) == 1, limit
        assert deployments[0].concurrency_options.collision_strategy.value == "CANCEL_NEW"
        prefect.pause_deployment(deployments[0].id)  # stop the schedule for the other tests (deleting it under a
        # running flow run makes the server fail to release the run's concurrency slot)


def test_bp_serve_runs_schedules_and_stops_on_sigterm(servers, tmp_path):
    """Quick chains finish; a long network is running when SIGTERM comes: exit 143 within seconds, its flow run
    cancelled and its MLflow run KILLED, no process left; bp deploy's deployment of the same config untouched."""
    import yaml
    from support.procs import alive, children_of

    chain, net = tmp_path / "served.yaml", tmp_path / "served_net.yaml"
    for path, base, changes in ((chain, "chain", {"experiment": "served", "schedule": {"interval": 10}}),
                                (net, "mnist", {"experiment": "served-net", "schedule": {"interval": 3600},
                                                "data": {"limit": 1000}})):
        config = {**yaml.safe_load((REPO / "configs" / f"{base}.yaml").read_text()), **changes}
        config["trainer"] = {**config["trainer"], **({"iterations": 20} if base == "chain" else {"epochs": 500})}
        path.write_text(yaml.safe_dump(config))
    deployed = bp("deploy", str(chain), env=servers["env"], cwd=tmp_path)  # the same config on the pool
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    try:
        serve = subprocess.Popen([*BP, "serve", str(chain), str(net)], env=servers["env"],
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        mc, deadline, finished, training, asked = client(servers), time.monotonic() + 240, [], [], False
        try:
            while not (finished and training) and time.monotonic() < deadline and serve.poll() is None:
                finished = runs_of(mc, "served", "attributes.status = 'FINISHED' and tags.`bp.deployment` = "
                                                 "'served-served'")
                if finished and not asked:  # the served network, on demand: the runner in bp serve takes it
                    from prefect.deployments import run_deployment
                    from prefect.settings import temporary_settings

                    with temporary_settings(updates=prefect_settings(servers)):
                        run_deployment("mnist/served_net-served", timeout=0)
                    asked = True
                training = [r for r in runs_of(mc, "served-net", "attributes.status = 'RUNNING'")
                            if mc.get_metric_history(r.info.run_id, "cost")]
                time.sleep(1)
            started = children_of(serve.pid)
            serve.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            out, err = serve.communicate(timeout=120)
            took = time.monotonic() - sent
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
        assert finished and training, err[-3000:]
        assert serve.returncode == 128 + signal.SIGTERM and took < 30, (serve.returncode, took, err[-3000:])
        assert "bp: serving chain/served-served: every 10 s, overlapping runs skipped" in err
        killed = mc.get_run(training[0].info.run_id)
        assert killed.info.status == "KILLED" and killed.data.tags["bp.failure_reason"] == "stopped by SIGTERM"
        time.sleep(2)
        assert not [pid for pid in started if alive(pid)], "a process bp serve started outlived it"
        with prefect_client(servers) as prefect:
            by_name = {d.name: d for d in prefect.read_deployments() if d.name.startswith("served")}
            assert by_name["served"].work_pool_name == "bp" and not by_name["served"].paused  # bp deploy's, untouched
            assert by_name["served-served"].paused  # the served one, paused as its server stopped
            state = prefect.read_flow_run(killed.data.tags["bp.flow_run"]).state
            assert state.is_cancelled() or state.is_crashed(), state
    finally:
        # no schedule left for the other tests, whatever happened: paused, which removes its scheduled runs
        # (deleting it under a running flow run makes the server fail that run's end, 500 "Failed to release
        # concurrency slots")
        with prefect_client(servers) as prefect:
            prefect.pause_deployment(prefect.read_deployment_by_name("chain/served").id)


def sweep_workers(servers) -> dict[int, dict]:
    """The stack's sweep workers by pid."""
    from flows.stack.procs import read_records

    return {r["pid"]: r for r in read_records(servers["dir"]) if "sweep_worker" in r}


def test_a_sweep_on_the_pool_uses_both_workers(servers):
    done = bp("sweep", LINREG_SWEEP, "--pool", "bp", "--set", "experiment=pool-sweep", env=servers["env"],
              cwd=servers["cwd"])
    parent = last_run_id(done)
    assert done.returncode == 0, done.stderr[-3000:]
    mc = client(servers)
    children = runs_of(mc, "pool-sweep", f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 8
    status = {c.data.params["trainer.learning_rate"]: c.data.tags["bp.status"] for c in children}
    # 4e-4 diverges; 5e-4 too when a worker took it before that was seen, else the sweep skipped it untrained
    assert status["0.0004"] == "diverged" and status["0.0005"] in ("diverged", "skipped"), status
    trained = [c for c in children if c.data.tags["bp.status"] != "skipped"]
    pids = {int(c.data.tags["bp.worker"].rsplit(":", 1)[1]) for c in trained}
    nannies = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in pids}
    assert nannies == set(sweep_workers(servers)), pids  # both sweep workers trained some, in their worker processes
    tags = mc.get_run(parent).data.tags
    assert tags["bp.best_point"] == "lr=0.0003" and tags["bp.registry"].startswith("registered linreg-line")
    counts = mc.get_run(parent).data.metrics
    assert counts["diverged"] == list(status.values()).count("diverged")
    assert counts["diverged"] + counts.get("skipped", 0) == 2
    assert "| WARNING | " in done.stderr and "diverged at iteration" in done.stderr, done.stderr[-4000:]  # followed
    assert "Traceback" not in done.stderr and "Created task run" not in done.stderr  # no line per point's bookkeeping


def test_reproduce_here_a_child_trained_on_a_worker(servers):
    mc = client(servers)
    child = runs_of(mc, "pool-sweep", "tags.`bp.status` = 'finished'")[0]
    done = bp("reproduce", child.info.run_id, env=servers["env"], cwd=servers["cwd"])  # here, not on a worker
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-2] == "identical"


def restart(record: dict) -> dict:
    """Stop a stack process (its whole session) and start it again exactly as it was; its new record."""
    from flows.stack.procs import start_time

    pid = record["pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    env = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    cwd = os.readlink(f"/proc/{pid}/cwd")
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the server is away a while, as in a real restart
    with open(record["log"], "ab") as log:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return {**record, "pid": proc.pid, "start": start_time(proc.pid)}


def test_the_mlflow_server_restarted_mid_run_loses_no_step(servers):
    from flows.stack.procs import read_records, write_records

    argv = ["train", str(REPO / "configs" / "mnist.yaml"), "--set", "experiment=restarted", "--set",
            "trainer.epochs=12", "--set", "data.limit=1500"]
    train = subprocess.Popen([*BP, *argv], env=servers["env"], cwd=servers["cwd"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mc, deadline, run = client(servers), time.monotonic() + 240, None
    while run is None and time.monotonic() < deadline:
        running = runs_of(mc, "restarted", "attributes.status = 'RUNNING'")
        if running and len(mc.get_metric_history(running[0].info.run_id, "cost")) >= 2:
            run = running[0]
        time.sleep(0.5)
    assert run is not None, "training did not start"
    records = read_records(servers["dir"])
    records = [restart(r) if r["name"] == "mlflow" else r for r in records]
    write_records(servers["dir"], records)  # so bp stack down stops the new server
    out, err = train.communicate(timeout=600)
    assert train.returncode == 0, err[-3000:]
    run = mc.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    for key in ("cost", "train_accuracy", "val_accuracy"):
        assert sorted(m.step for m in mc.get_metric_history(run.info.run_id, key)) == list(range(1, 13)), key


def kill_worker_process(victim) -> None:
    """SIGKILL the Dask worker process that trains the MLflow run ``victim`` (its memory exhausted, say): its sweep
    worker's nanny starts a fresh one, and the scheduler trains the point again."""
    os.kill(int(victim.data.tags["bp.worker"].rsplit(":", 1)[1]), signal.SIGKILL)


def sweep_losing_a_worker(servers, args: list[str], victim_of) -> tuple[int, str, str, object]:
    """``bp sweep ARGS`` on the pool, whose worker training the run ``victim_of()`` returns (polled until it returns
    one) is killed (``kill_worker_process``): exit code, stdout, stderr, the victim."""
    sweep = subprocess.Popen([*BP, "sweep", *args], env=servers["env"],
                             cwd=servers["cwd"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, victim = time.monotonic() + 300, None
    with killed_if_left(sweep):
        while victim is None:
            if sweep.poll() is not None:
                raise AssertionError(f"the sweep ended before a point trained: {sweep.stderr.read()[-3000:]}")
            assert time.monotonic() < deadline, "no point trained in 300 s"
            victim = victim_of()
            time.sleep(0.1)
        kill_worker_process(victim)
        out, err = sweep.communicate(timeout=900)
    return sweep.returncode, out, err, victim


def sweep_task_runs(servers, flow_run: str) -> list:
    """Every task run of the flow run ``flow_run``, page by page."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with prefect_client(servers) as prefect:
        task_runs, page = [], None
        while page is None or len(page) == 200:
            page = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run])),
                                          limit=200, offset=len(task_runs))
            task_runs += page
    return task_runs


def test_32_points_on_two_sweep_workers_lose_none_when_one_is_killed(servers):
    """A sweep worker's process SIGKILLed while it trains a point: Dask trains the point again, in the lost attempt's
    run, and every point ends one FINISHED child with its full cost history (each step once), recorded in Prefect as
    a task run of the sweep's flow run."""
    rates = "[" + ", ".join(f"{1.0e-5 * (1 + i):.6g}" for i in range(32)) + "]"
    names = sorted(f"lr={1.0e-5 * (1 + i):g}" for i in range(32))
    mc = client(servers)

    def mid_sweep():  # a point running once 4 have finished
        if len(runs_of(mc, "killed-worker", "attributes.status = 'FINISHED'")) < 4:
            return None
        running = runs_of(mc, "killed-worker", "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'")
        return running[0] if running else None

    returncode, out, err, victim = sweep_losing_a_worker(
        servers, [LINREG_SWEEP, "--pool", "bp", "--set", "experiment=killed-worker", "--set", "sweep.model_name=null",
                  "--set", f"sweep.grid.trainer.learning_rate={rates}"], mid_sweep)
    assert returncode == 0, err[-3000:]
    parent = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    children = runs_of(mc, "killed-worker", f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert not [c for c in children if c.info.status == "RUNNING"]
    killed = mc.get_run(victim.info.run_id)  # its point went on in it (a line fit, from the start)
    assert (killed.info.status, killed.data.tags["bp.resumed"]) == ("FINISHED", "1"), killed.data.tags
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(c.info.run_name for c in finished) == names  # every point, once
    assert len(children) == 32  # the lost attempt's run is the point's
    for child in finished:
        assert [m.step for m in mc.get_metric_history(child.info.run_id, "cost")] == list(range(1001))
    assert parent.data.metrics["finished"] == 32


    sweep_flow_run = parent.data.tags["bp.flow_run"]
    deadline = time.monotonic() + 30  # Prefect records task runs' states from their events, a little after
    while True:  # what the Prefect UI shows under the sweep's flow run
        task_runs = sweep_task_runs(servers, sweep_flow_run)
        points = [t for t in task_runs if t.name.startswith("child ")]
        completed = sorted(t.name for t in points if t.state.is_completed())
        if completed == [f"child {n}" for n in names] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert completed == [f"child {n}" for n in names], [
        (t.name, t.state.name, t.state.timestamp) for t in points if not t.state.is_completed()]
    # each point's flow code ran in the sweep's flow run, its tasks nested under the task run that trained it
    trainings = [{p.id for p in t.task_inputs.get("__parents__", [])} for t in task_runs
                 if t.task_key.startswith("train-")]
    for child in finished:
        assert child.data.tags["bp.flow_run"] == sweep_flow_run
    nested = sorted(sum(point.id in parents for parents in trainings) for point in points if point.state.is_completed())
    assert nested in ([1] * 32, [1] * 31 + [2]), nested  # the point trained again: both attempts in its task run


def test_a_pruned_search_survives_a_killed_worker_and_ends_as_it_does_in_process(servers):
    """A worker process SIGKILLed mid-trial of a TPE search with median pruning: the trial goes on in its run from its
    checkpoint on the other worker (its pruner told the epochs before again), and the search ends with the trials,
    prunings and results of the same search run in-process (the study never saw the loss)."""
    search = [MNIST_SEARCH, "--set", "sweep.trials=6", "--set", "trainer.epochs=12", "--set", "sweep.prune=median"]
    mc = client(servers)

    def mid_trial():
        running = runs_of(mc, "killed-search", "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'")
        epochs = [r for r in running if "val_accuracy" in r.data.metrics]  # an epoch logged
        return epochs[0] if epochs else None

    returncode, _, err, victim = sweep_losing_a_worker(
        servers, [*search, "--pool", "bp", "--parallel", "2", "--set", "experiment=killed-search"], mid_trial)
    assert returncode == 0, err[-3000:]
    killed = mc.get_run(victim.info.run_id)
    assert (killed.info.status, killed.data.tags["bp.resumed"]) == ("FINISHED", "1"), killed.data.tags
    here = subprocess.run([*BP, "sweep", *search, "--parallel", "2", "--set",
                           "experiment=killed-search-here"], env=servers["env"], cwd=servers["cwd"],
                          capture_output=True, text=True, timeout=900)
    assert here.returncode == 0, here.stderr[-3000:]

    def trials(experiment: str) -> list:
        kids = runs_of(mc, experiment, "tags.`bp.sweep` = 'child' and attributes.status != 'FAILED'")
        return sorted((k.data.params["trainer.learning_rate"], k.data.tags["bp.status"],
                       [m.value for m in mc.get_metric_history(k.info.run_id, "val_accuracy")]) for k in kids)

    assert len(trials("killed-search")) == 6 and trials("killed-search") == trials("killed-search-here")
