"""The bp command's input handling: validate, and exit code 2 with one line before Prefect starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import BP, REPO, light_bp, refused, run_bp

LINREG = str(REPO / "configs" / "linreg.yaml")
MNIST = str(REPO / "configs" / "mnist.yaml")
LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
CHAIN = str(REPO / "configs" / "chain.yaml")
LONG_NAME = "data.path: a name in the path is 304 bytes long, more than the 255 a file name may have here: 'aaaa"

def test_validate_prints_the_resolved_config_without_prefect_or_mlflow():
    done = light_bp("validate", LINREG, "--set", "trainer.learning_rate=0.0002", "--set", "seed=4")
    assert done.returncode == 0, done.stderr
    assert "learning_rate: 0.0002" in done.stdout and "seed: 4" in done.stdout
    assert "divergence_factor:" in done.stdout  # defaults are shown resolved


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "missing.yaml"], "missing.yaml: no such config file"),
        (["train", LINREG, "--set", "trainer.learning_rate=-1"], "trainer.learning_rate = -1"),
        (["train", LINREG, "--set", "trainer.lr=1"], "trainer.lr: unknown key"),
        (["train", LINREG, "--set", "data.path=/no/such.csv"], "/no/such.csv: no such data file"),
        (["train", LINREG, "--set", "data.path=" + LINREG], "linreg.yaml: not a valid CSV file"),
        (["validate", LINREG, "--set", "data.path=/no/such.csv"], "/no/such.csv: no such data file"),
        (["train", LINREG, "--bogus"], "unrecognized arguments: --bogus"),
        (["train", MNIST, "--set", "trainer.hidden=[0]"], "trainer.hidden.0 = 0: Input should be greater than"),
        (["train", MNIST, "--set", "trainer.activation=softsign"], "trainer.activation = 'softsign'"),
        (["train", MNIST, "--set", "data.path=/no/such/dir"], "/no/such/dir"),
        (["train", MNIST, "--set", f"data.path={REPO}"], "train-images-idx3-ubyte"),
        (["train", MNIST, "--set", "data.download=true", "--set", "data.mirror=http://127.0.0.1:9/",
          "--set", "data.cache_dir=/tmp/bp-test-no-mirror"], "http://127.0.0.1:9/"),
        (["train", CHAIN, "--set", "data.y=1.5"], "data.y = 1.5: Input should be less than 1"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["validate", LINREG, "--set", f"data.path=/tmp/{'a' * 300}.csv"], LONG_NAME),
        (["train", LINREG, "--set", f"data.path=/tmp/{'a' * 300}.csv"], LONG_NAME),
        (["train", MNIST, "--set", f"data.path=/tmp/{'a' * 304}"], LONG_NAME),
        (["sweep", str(REPO / "configs" / "linreg_lr_sweep.yaml"), "--pool", "bp", "--set",
          f"data.path=/tmp/{'a' * 300}.csv"], LONG_NAME),
        (["validate", LINREG, "--set", f"data.path=/tmp/{'/'.join(['b' * 200] * 25)}.csv"],
         "data.path: the path is 5033 bytes long, more than the 4095 a path may have here: '/tmp/bbb"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_prefect(argv, expected):
    refused(light_bp(*argv), expected)


@pytest.mark.parametrize("argv", [["train", LINREG], ["sweep", LINREG_SWEEP], ["sweep", LINREG_SWEEP, "--pool", "bp"],
                                  ["deploy", LINREG], ["serve", LINREG], ["reproduce", "0" * 32]])
def test_a_prefect_server_that_is_not_there_is_refused_before_prefect_mlflow_or_a_store(tmp_path, argv):
    """PREFECT_API_URL and its auth string set, nothing answering there: refused without Prefect's or MLflow's
    imports (they take seconds), and no tracking store made in the working directory."""
    from support.stack import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    done = light_bp(*argv, cwd=tmp_path, env={"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": "bp:secret"})
    refused(done, f"PREFECT_API_URL {url}: no server answers there")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("url", ["not a url", "   ", "ftp://127.0.0.1:9/api", "http://[::1", "http:///api"])
def test_a_prefect_api_url_that_is_not_one_is_one_line(tmp_path, url):
    done = light_bp("train", LINREG, cwd=tmp_path, env={"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": "bp:x"})
    refused(done, f"PREFECT_API_URL {url!r}: not an http(s) URL")


def test_a_tracking_uri_that_does_not_parse_is_one_line(tmp_path):
    refused(light_bp("train", LINREG, "--tracking-uri", "http://[::1", cwd=tmp_path),
            "tracking URI http://[::1: not a valid URL")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x,y\n1,2\n3,abc\n", "line 3, column 'y': not a number: 'abc'"),
        ("x,y\n1,2\n", "needs at least 2 data rows, found 1"),
        ("", "file is empty"),
        ("x,y\n1,2\n3,inf\n", "line 3, column 'y': infinite value inf"),
    ],
)
def test_bad_data_exits_2_naming_file_and_row(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    # the whole of stderr, exactly one line; the loader names the file resolved (tmp_path already is)
    line = refused(run_bp(["train", LINREG, "--set", f"data.path={path}"], capsys))
    assert line == f"bp: {path.resolve()}: {expected}"


def test_console_script_is_installed():
    done = subprocess.run(["bp", "validate", LINREG], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "kind: linreg" in done.stdout


def test_version_names_bp_and_the_libraries_it_runs_on_without_importing_them():
    from importlib.metadata import version

    code = ("import sys\nfrom flows.cli.main import main\ntry:\n    main(['--version'])\nexcept SystemExit as e:\n"
            "    print(sorted(m for m in ('prefect', 'mlflow') if m in sys.modules), file=sys.stderr)\n    raise\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stderr == "[]\n", done.stderr
    assert done.stdout == (f"bp {version('bp-pipeline')} (mlflow {version('mlflow')}, prefect {version('prefect')}, "
                           f"python {sys.version.split()[0]})\n")


def test_console_script_exits_with_mains_code_after_every_exit_hook(tmp_path):
    """``bp`` skips the interpreter's teardown, not what exit does first: exit hooks run, output is flushed."""
    script = ("import atexit, sys\n"
              "from flows.cli.main import entry\n"
              "atexit.register(lambda: print('exit hook ran', file=sys.stderr))\n"
              "sys.argv = ['bp', *sys.argv[1:]]\n"
              "entry()\n"
              "print('not reached')\n")
    ok = subprocess.run([sys.executable, "-c", script, "validate", LINREG], capture_output=True, text=True,
                        timeout=60, cwd=tmp_path)
    assert ok.returncode == 0 and ok.stderr == "exit hook ran\n"
    assert ok.stdout.startswith("kind: linreg") and "not reached" not in ok.stdout
    bad = subprocess.run([sys.executable, "-c", script, "validate", "missing.yaml"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == ["bp: missing.yaml: no such config file", "exit hook ran"]


@pytest.mark.parametrize("argv", [["validate", LINREG], ["stack", "status", "--dir", "{tmp}"]])
def test_a_reader_that_closes_stdout_early_ends_bp_quietly(tmp_path, argv):
    """``bp ... | head -1``: no BrokenPipeError traceback; the exit code a shell gives a Unix tool so stopped."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before bp writes a line
    try:
        done = subprocess.run([*BP, *[a.format(tmp=tmp_path) for a in argv]],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, cwd=REPO)
    finally:
        os.close(write)
    assert done.returncode == 141 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
