"""Forecast ranges: split-conformal half-widths from the backtest's errors, their coverage, never negative."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.backtest import run_backtest
from forecast.config import EvalConfig, RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.intervals import bounds, conformal_quantile, leave_one_fold_out
from forecast.models import registry


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    errors = np.arange(1.0, 10.0)  # 9 errors: the ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(errors, 0.8) == 8.0
    assert conformal_quantile(np.array([3.0, np.nan]), 0.8) == 3.0  # too few: the largest, NaN ignored
    assert np.isnan(conformal_quantile(np.array([np.nan]), 0.8))


def test_ranges_are_never_negative_and_hold_the_forecast() -> None:
    lower, upper = bounds(np.array([[0.5, 4.0]]), np.array([2.0, 1.0]))
    assert lower.tolist() == [[0.0, 3.0]] and upper.tolist() == [[2.5, 5.0]]


def test_one_fold_has_no_held_out_coverage() -> None:
    truth = [np.ones((3, 2))]
    assert all(np.isnan(v) for v in leave_one_fold_out(truth, truth, 0.8))


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_backtest_coverage_is_near_nominal_on_the_synthetic_data(tmp_path, level) -> None:
    sales, products = synthetic.write(tmp_path, n_items=300, n_periods=60, n_new=0, seed=3, launch_window=0.3)
    panel = build_panel(load_tables(sales, products))
    cfg = RunConfig().updated({"baselines.n_jobs": 1, "train.progress": False})
    evaluation = EvalConfig(horizon=4, folds=4, step=4, interval=level)
    result = run_backtest(panel, {"moving_average": lambda: registry.build("moving_average", cfg)}, evaluation)
    row = result.summary().set_index("group").loc["history"]
    assert abs(row["coverage"] - level) < 0.04, row["coverage"]
    assert row["interval_width"] > 0
    widths = result.half_widths("moving_average")["history"]
    assert widths.shape == (4,) and (widths > 0).all()
