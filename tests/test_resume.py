"""A fit killed mid-training resumes from its checkpoints to the uninterrupted result; its run is KILLED."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from forecast.data import synthetic

ARGS = ["--horizon", "6", "--folds", "1", "--max-epochs", "6", "--models", "moving_average,fusion",
        "--no-progress", "--seed", "3"]


def fit_cmd(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "forecast", "fit", "--sales", str(data / "sales.csv"),
            "--products", str(data / "products.csv"), *ARGS, *extra]


def run_statuses(folder: Path) -> list[str]:
    with sqlite3.connect(folder / "mlruns" / "mlflow.db", timeout=60) as con:
        return [s for (s,) in con.execute(  # the fit's own runs, not its models' child runs
            "select status from runs where run_uuid not in (select run_uuid from tags where key = 'mlflow.parentRunId') "
            "order by start_time")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume_data")
    synthetic.write(folder, n_items=120, n_periods=80, n_new=4, seed=4, launch_window=0.9)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("straight")
    proc = subprocess.run(fit_cmd(data, "--model", "fusion"), cwd=folder, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_csv(folder / "forecast.csv")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_fit_resumes_to_the_same_forecast(tmp_path, data, uninterrupted, sig):
    proc = subprocess.Popen(fit_cmd(data, "--model", "fusion"), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list(tmp_path.glob("checkpoints/work/*/fusion-*/checkpoints/fusion/last.ckpt")):
            break  # at least one epoch is checkpointed: kill mid-training
        time.sleep(0.05)
    assert proc.poll() is None, "fit finished before it could be killed"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not (tmp_path / "forecast.csv").exists()  # nothing half-written where the planner looks
    if sig == signal.SIGTERM:
        assert run_statuses(tmp_path) == ["KILLED"]
        assert "Traceback" not in err

    resumed = subprocess.run(fit_cmd(data, "--model", "fusion", "--resume"), cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume:" in resumed.stderr
    statuses = run_statuses(tmp_path)
    assert statuses == ["KILLED", "FINISHED"]  # a SIGKILLed run is marked KILLED by the next fit
    result = pd.read_csv(tmp_path / "forecast.csv")
    ranges = ["units_lo", "units_hi"]
    pd.testing.assert_frame_equal(result.drop(columns=ranges), uninterrupted.drop(columns=ranges),
                                  check_exact=False, rtol=1e-5, atol=1e-4)
    # The ranges come from the backtest's errors; a backtest training resumed mid-way is not bit-identical
    # to an uninterrupted one (seen: half-widths ~0.15 units apart), so they are only close.
    pd.testing.assert_frame_equal(result[ranges], uninterrupted[ranges], check_exact=False, rtol=0.05, atol=0.5)
    assert not list(tmp_path.glob("checkpoints/work/*"))  # the work directory is cleaned after success
