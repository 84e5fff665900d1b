"""Shared fixtures: small generated data, an isolated MLflow store, a clean working dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from forecast.data import synthetic

torch.set_num_threads(1)  # tests run two at a time on two cores
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def no_inherited_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; an earlier in-process test must not
    send this test's runs (or its subprocesses' runs) to that test's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temp dir with its own ./mlruns, whatever MLFLOW_TRACKING_URI says outside."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(sales.csv, products.csv) from the documented generator: 60 items launching over 2 years, 8 new."""
    return synthetic.write(tmp_path_factory.mktemp("synthetic"), n_items=60, n_periods=104, n_new=8, seed=1,
                           launch_window=0.95)


def write_csv(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


# --- helpers shared by the test files (one home: running the CLI, refusals, reading MLflow) ---
def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of ``python -m forecast ARGV`` run in this process."""
    from forecast.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *needles: str, outputs: tuple[str, ...] = ("forecast.csv",)) -> None:
    """Exit 2 with one ``error:`` line holding every needle, no traceback, none of ``outputs`` written."""
    assert code == 2, err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(message) == 1, err
    for needle in needles:
        assert needle in message[0], message[0]
    for output in outputs:
        assert not Path(output).exists(), f"{output} was written"


def mlflow_runs(uri: str, experiment: str = "forecast") -> tuple[object, list, list]:
    """(experiment, parent runs, child runs) of an MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return found, parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def run_in_folder(folder: Path, argv: list[str]) -> tuple[int, list[str]]:
    """(exit code, the ``forecast`` log's messages at INFO and above) of ``python -m forecast ARGV`` run in
    this process in ``folder``, with its own ./mlruns: for module fixtures, which have no caplog."""
    import logging

    from forecast.cli import main

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger, level = logging.getLogger("forecast"), logging.getLogger("forecast").level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # e.g. fit's closing summary is an INFO line
    old = Path.cwd()
    os.chdir(folder)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        return main(argv), lines
    finally:
        os.chdir(old)
        logger.removeHandler(handler)
        logger.setLevel(level)
