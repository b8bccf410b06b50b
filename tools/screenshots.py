"""The documentation's pictures, taken again from real runs of the configs on this checkout's code.

    pip install playwright      # the browser driver; the browser is Debian's chromium (apt-get install chromium)
    python tools/screenshots.py [--chromium /usr/bin/chromium]

In a scratch directory: ``bp sweep configs/linreg_lr_sweep.yaml`` on the seed's data, embedded, then the MLflow
UI's plot of its children's ``excess_cost`` (docs/images/mlflow-compare.png) and the parent's own overlay
``plots/sweep.png`` (docs/images/sweep-curves.png); then ``bp stack up`` on spare ports, the same sweep on its
pool, and the Prefect UI's page of that flow run (docs/images/prefect-pool-sweep.png); ``bp stack down``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
SWEEP = REPO / "configs" / "linreg_lr_sweep.yaml"
SEED = REPO.parent / "shared" / "data" / "data.csv"
BP = [sys.executable, "-m", "flows.cli"]
PORTS = {"ui": 5071, "prefect": 4371, "mlflow": 5371, "scheduler": 8871}
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def run(argv: list[str], cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def run_id(stdout: str) -> str:
    return stdout.strip().splitlines()[-1].removeprefix("run_id: ")


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{url} did not answer within {seconds:g} s")


def mlflow_pictures(page, scratch: Path) -> None:
    from mlflow.tracking import MlflowClient

    parent = run_id(run([*BP, "sweep", str(SWEEP), "--set", f"data.path={SEED}"], scratch))
    mc = MlflowClient(f"sqlite:///{scratch / 'mlflow.db'}")
    experiment = mc.get_run(parent).info.experiment_id
    children = [r.info.run_id for r in mc.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")]
    shutil.copy(mc.download_artifacts(parent, "plots/sweep.png", str(scratch)), IMAGES / "sweep-curves.png")
    ui = subprocess.Popen(["mlflow", "ui", "--backend-store-uri", "sqlite:///mlflow.db", "--host", "127.0.0.1",
                           "--port", str(PORTS["ui"])], cwd=scratch, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{PORTS['ui']}"
        wait_for(base + "/health")
        page.goto(base + "/#/experiments")
        page.get_by_text("Model training", exact=True).first.click()  # the sidebar as a training user sees it
        query = {"runs": json.dumps(children), "metric": json.dumps("excess_cost"),
                 "experiments": json.dumps([experiment]), "plot_metric_keys": json.dumps(["excess_cost"]),
                 "x_axis": "step", "y_axis_scale": "log", "line_smoothness": "1", "show_point": "false"}
        page.goto(f"{base}/#/metric?{urllib.parse.urlencode(query)}")
        page.wait_for_timeout(6000)
        assistant = page.get_by_role("button", name="Close")  # MLflow's assistant panel, open on a first visit
        if assistant.count():
            assistant.last.click()
            page.wait_for_timeout(1500)
        page.screenshot(path=str(IMAGES / "mlflow-compare.png"))
    finally:
        os.killpg(ui.pid, 15)


def prefect_picture(page, scratch: Path) -> None:
    (scratch / "configs").symlink_to(REPO / "configs")
    ports = [f"--{name}-port={PORTS[name]}" for name in ("prefect", "mlflow", "scheduler")]
    exports = run([*BP, "stack", "up", "--workers", "2", *ports], scratch)
    env = dict(os.environ)
    for line in exports.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip("'")
    try:
        parent = run_id(run([*BP, "sweep", "configs/linreg_lr_sweep.yaml", "--pool", "bp"], scratch, env))
        from mlflow.tracking import MlflowClient

        flow_run = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(parent).data.tags["bp.flow_run"]
        base = f"http://127.0.0.1:{PORTS['prefect']}"
        page.goto(base + "/login")
        page.locator("input").first.fill(env["PREFECT_API_AUTH_STRING"])
        page.keyboard.press("Enter")
        page.wait_for_timeout(3000)
        page.goto(f"{base}/runs/flow-run/{flow_run}")
        page.wait_for_timeout(6000)
        page.screenshot(path=str(IMAGES / "prefect-pool-sweep.png"))
    finally:
        run([*BP, "stack", "down"], scratch, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser to drive")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        mlflow_pictures(page, Path(one))
        prefect_picture(page, Path(two))
        browser.close()
    print(f"pictures written to {IMAGES}")


if __name__ == "__main__":
    main()
