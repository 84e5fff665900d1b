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
