"""Sweeps and tracking on a shared database: a throwaway PostgreSQL server (the Debian ``postgresql``
package: ``initdb`` into a temp folder, listening on 127.0.0.1 only) holds one Optuna study that two
``tune`` workers share, and is the backend store of an ``mlflow server`` to which two concurrent
``fit`` runs log over HTTP.

Skipped (with the reason) only where the PostgreSQL server binaries or psycopg2 are absent, and
never in CI (``CI=true``): there a missing binary is a failure. ``.ci/run`` installs both.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import cli_env, free_port, mlflow_runs

FAST = ["--horizon", "6", "--folds", "1", "--max-epochs", "1", "--no-progress"]


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI must run this test (.ci/run installs it)")
    pytest.skip(reason)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else (Path(shutil.which("initdb")) if shutil.which("initdb") else None)
    if initdb is None:
        _missing("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    return initdb.resolve().parent


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its commands as the 'postgres' system user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> str:
    """A PostgreSQL server for this module: 'postgresql+psycopg2://forecast@127.0.0.1:PORT' (+ '/db')."""
    try:
        import psycopg2  # noqa: F401  (SQLAlchemy's PostgreSQL driver, for Optuna and the MLflow server)
    except ImportError:
        _missing("psycopg2 is not installed (the test extra's psycopg2-binary)")
    bin_dir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="forecast-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    run = lambda *cmd: subprocess.run(_as_postgres_user([str(bin_dir / cmd[0]), *cmd[1:]]), check=True,
                                      capture_output=True, text=True)
    run("initdb", "-D", str(data), "-U", "forecast", "--auth=trust", "-E", "UTF8")
    run("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "start",
        "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off")
    try:
        for db in ("optuna", "mlflow"):
            run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "forecast", db)
        yield f"postgresql+psycopg2://forecast@127.0.0.1:{port}"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _run_together(commands: list[list[str]], cwd: Path) -> None:
    """Start every command at once; each must succeed."""
    procs = [subprocess.Popen([sys.executable, "-m", "forecast", *cmd], cwd=cwd, env=cli_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for cmd in commands]
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[str, str]:
    from forecast.data import synthetic

    return synthetic.write(tmp_path_factory.mktemp("data"), n_items=30, n_periods=70, n_new=3, seed=5)


def test_two_tune_workers_share_one_study_on_postgres(postgres, data, tmp_path):
    import optuna

    sales, products = data
    storage = f"{postgres}/optuna"
    (tmp_path / "space.yaml").write_text("neural.hidden_size: {type: categorical, choices: [16, 32]}\n")
    tune = ["tune", "--sales", sales, "--products", products, "--trials", "2", "--search-space", "space.yaml",
            "--storage", storage, "--study-name", "shared", "--models", "moving_average,fusion", *FAST]
    _run_together([tune + ["--best-config", f"best{k}.yaml", "--export", f"out{k}.csv"] for k in (1, 2)], tmp_path)
    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 2 <= len(finished) <= 3  # both workers stop at the shared target (one may overshoot by a trial)
    assert (tmp_path / "best1.yaml").is_file() and (tmp_path / "best2.yaml").is_file()


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory) -> str:
    """``mlflow server`` on 127.0.0.1 with the PostgreSQL database as backend store, local artifacts."""
    artifacts, port = tmp_path_factory.mktemp("artifacts"), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"{postgres}/mlflow",
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not answer within 120 s"
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_two_concurrent_fits_log_complete_runs_to_an_mlflow_server(mlflow_server, data, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    sales, products = data
    fit = ["fit", "--sales", sales, "--products", products, "--tracking-uri", mlflow_server,
           "--experiment", "team", "--models", "moving_average,sequence", *FAST]
    # each analyst's own checkpoint folder: two identical fits in one folder would share a work directory
    _run_together([fit + ["--run-name", f"analyst{k}", "--export", f"forecast{k}.csv", "--checkpoint-dir", f"ck{k}"]
                   for k in (1, 2)], tmp_path)
    _, parents, children = mlflow_runs(mlflow_server, "team")
    assert sorted(r.info.run_name for r in parents) == ["analyst1", "analyst2"]
    for run in parents:
        assert run.info.status == "FINISHED"
        models = {r.info.run_name: r for r in children if r.data.tags.get("mlflow.parentRunId") == run.info.run_id}
        assert {"moving_average", "sequence"} <= set(models)
        assert all("history/wape" in models[m].data.metrics for m in ("moving_average", "sequence"))
        assert any("train/loss" in key for key in models["sequence"].data.metrics)  # curves reached the server
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"forecast1.csv", "forecast2.csv"} & artifacts and "config.yaml" in artifacts