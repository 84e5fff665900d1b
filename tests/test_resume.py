"""A fit killed mid-training resumes from its checkpoints to the uninterrupted result; its run is KILLED.

What is compared is what was interrupted: the kill lands in the backtest fold's training,
so the resumed run's backtest metrics (read from its MLflow store) must equal the
uninterrupted run's, besides the final export.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from forecast.data import synthetic
from forecast.evaluation.metrics import METRICS
from tests.conftest import cli_env, mlflow_runs, store_uri

ARGS = ["--horizon", "6", "--folds", "1", "--max-epochs", "6", "--models", "moving_average,fusion",
        "--model", "fusion", "--no-progress", "--seed", "3"]
# Each process opens its own ./mlruns: never a store an earlier in-process test exported.
ENV = cli_env()


def fit_cmd(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "forecast", "fit", "--sales", str(data / "sales.csv"),
            "--products", str(data / "products.csv"), *ARGS, *extra]


def run_statuses(folder: Path) -> list[str]:
    """The statuses of the fits' own runs (not their models' child runs), oldest first."""
    return [run.info.status for run in mlflow_runs(store_uri(folder))[1]]


def backtest_metrics(folder: Path) -> dict[str, float]:
    """The finished fit's pooled backtest metrics from its model runs, e.g. {'fusion/history/wape': 0.28, ...}."""
    wanted = {f"{model}/{group}/{name}" for model in ("fusion", "moving_average") for group in ("history", "new")
              for name in METRICS}
    return {f"{run.info.run_name}/{key}": value for run in mlflow_runs(store_uri(folder))[2]
            if run.info.status == "FINISHED" for key, value in run.data.metrics.items()
            if f"{run.info.run_name}/{key}" in wanted}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume_data")
    synthetic.write(folder, n_items=120, n_periods=80, n_new=4, seed=4, launch_window=0.9)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data) -> tuple[pd.DataFrame, dict[str, float]]:
    folder = tmp_path_factory.mktemp("straight")
    proc = subprocess.run(fit_cmd(data), cwd=folder, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = backtest_metrics(folder)
    assert "fusion/history/wape" in metrics
    return pd.read_csv(folder / "forecast.csv"), metrics


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "Ctrl-C", "SIGKILL"])
def test_killed_fit_resumes_to_the_same_backtest_and_forecast(tmp_path, data, uninterrupted, sig):
    proc = subprocess.Popen(fit_cmd(data), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list(tmp_path.glob("checkpoints/work/*/fusion-*/checkpoints/fusion/last.ckpt")):
            break  # at least one epoch of the backtest fold is checkpointed: kill mid-training
        time.sleep(0.05)
    assert proc.poll() is None, "fit finished before it could be killed"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert not (tmp_path / "forecast.csv").exists()  # nothing half-written where the planner looks
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Lightning turns an interrupt into sys.exit(1): the CLI must still say what happened
        assert proc.returncode == 130, err[-3000:]
        assert err.rstrip().endswith("interrupted"), err[-3000:]
        assert "Traceback" not in err
        assert run_statuses(tmp_path) == ["KILLED"]

    resumed = subprocess.run(fit_cmd(data, "--resume"), cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume: fusion continues from" in resumed.stderr  # the interrupted fold was resumed, not redone
    assert run_statuses(tmp_path) == ["KILLED", "FINISHED"]  # a SIGKILLed run is marked KILLED by the next fit
    export, metrics = uninterrupted
    assert backtest_metrics(tmp_path) == pytest.approx(metrics, rel=1e-6, abs=1e-9)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "forecast.csv"), export, check_exact=False, rtol=1e-5,
                                  atol=1e-4)
    assert not list(tmp_path.glob("checkpoints/work/*"))  # the work directory is cleaned after success


def test_unreadable_checkpoint_is_trained_again(tmp_path, data, uninterrupted):
    """A resume that finds a broken checkpoint (a kill while it was written) says so and starts that training
    again, to the same result."""
    proc = subprocess.Popen(fit_cmd(data), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (found := list(tmp_path.glob("checkpoints/work/*/fusion-*/checkpoints/fusion/last.ckpt"))):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "fit finished before it could be killed"
    proc.kill()
    proc.wait(timeout=60)
    found[0].write_bytes(b"not a checkpoint")
    resumed = subprocess.run(fit_cmd(data, "--resume"), cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    warning = [line for line in resumed.stderr.splitlines() if "WARNING" in line and "unreadable" in line]
    assert warning and str(found[0].name) in warning[0] and "training it again" in warning[0], resumed.stderr[-3000:]
    assert backtest_metrics(tmp_path) == pytest.approx(uninterrupted[1], rel=1e-6, abs=1e-9)
