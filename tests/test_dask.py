"""Baselines on a cluster: the per-series models on a Dask ``LocalCluster`` (2 worker processes on
127.0.0.1) give the local run's forecasts and the same counted fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.models.baselines.statistical import ETS, Mean, MovingAverage, Theta, forecast_many
from tests.conftest import refused

distributed = pytest.importorskip(
    "distributed", reason="dask is not installed: pip install -c constraints.txt -e '.[test,dask]' (.ci/run does)")


@pytest.fixture(scope="module")
def scheduler():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _series() -> list[np.ndarray]:
    """80 weekly series; every 5th has 2 points, too short for Theta and ETS: they fall back on the worker."""
    rng = np.random.default_rng(3)
    return [rng.poisson(5, 2 if i % 5 == 0 else 60).astype(float) for i in range(80)]


def test_dask_cluster_gives_the_local_forecasts_and_fallbacks(scheduler):
    model = Theta(fallback=ETS(fallback=MovingAverage(window=4, fallback=Mean())))
    local = forecast_many(_series(), 6, 52, model, n_jobs=1, progress=False)
    remote = forecast_many(_series(), 6, 52, model, progress=False, engine="dask", scheduler=scheduler)
    np.testing.assert_array_equal(remote.values, local.values)
    assert remote.fallbacks == local.fallbacks
    assert [r.series_index for r in remote.fallbacks] == list(range(0, 80, 5))
    assert {r.used for r in remote.fallbacks} == {"moving_average"}


def test_fit_through_the_cli_on_the_cluster(scheduler, workdir, synthetic_csv, caplog):
    from forecast.cli import main

    sales, products = synthetic_csv
    code = main(["fit", "--sales", sales, "--products", products, "--models", "moving_average,theta",
                 "--horizon", "6", "--folds", "1", "--no-progress", "--engine", "dask", "--scheduler", scheduler])
    assert code == 0 and (workdir / "forecast.csv").is_file()


def test_dask_engine_needs_its_scheduler(workdir, capsys):
    refused(capsys, ["fit", "--engine", "dask"], "baselines.scheduler")
