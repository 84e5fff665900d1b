"""Forecast ranges: split-conformal ranges sized per item from the backtest's errors, their coverage
in every volume band, their quantile columns, and the level travelling to predict and trends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.evaluation.backtest import run_backtest
from forecast.core.config import EvalConfig, RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.evaluation.intervals import (Calibration, bounds, calibrate, conformal_quantile, evaluate, held_out, load,
                                range_columns, save, with_range)
from forecast.models import registry
from forecast.models.base import Prediction


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    errors = np.arange(1.0, 10.0)  # 9 errors: the ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(errors, 0.8) == 8.0
    assert conformal_quantile(np.array([3.0, np.nan]), 0.8) == 3.0  # too few: the largest, NaN ignored
    assert np.isnan(conformal_quantile(np.array([np.nan]), 0.8))


@pytest.mark.parametrize("score", ["absolute", "sqrt", "scaled"])
def test_ranges_are_never_negative_and_hold_the_forecast(score) -> None:
    forecast = np.array([[0.5, 4.0], [100.0, 0.0]])
    lower, upper = bounds(score, forecast, np.full((2, 2), 2.0))
    assert (lower >= 0).all() and (lower <= forecast).all() and (forecast <= upper).all()


def test_the_sqrt_and_scaled_ranges_grow_with_the_forecast_the_absolute_one_does_not() -> None:
    forecast = np.array([[1.0], [100.0]])
    widths = {s: np.subtract(*bounds(s, forecast, np.full((2, 1), 1.0))[::-1]).ravel()
              for s in ("absolute", "sqrt", "scaled")}
    assert widths["absolute"][0] == widths["absolute"][1]
    assert widths["sqrt"][1] > 5 * widths["sqrt"][0] and widths["scaled"][1] > 5 * widths["scaled"][0]


def test_one_fold_has_nothing_to_hold_out() -> None:
    truth = [np.ones((3, 2))]
    assert held_out("sqrt", truth, truth, (0.8,)) is None and evaluate(truth, truth, (0.8,)) == {}


def volume_noise_folds(seed: int = 0, folds: int = 3, items: int = 400, horizon: int = 3):
    """(truth, forecast) per fold of a panel whose noise grows with volume: item levels spread from
    0.3 to 300 units a period, demand gamma-Poisson around them (sd about level / 1.4), forecast = level."""
    rng = np.random.default_rng(seed)
    truth, forecasts = [], []
    for _ in range(folds):
        level = np.exp(rng.uniform(np.log(0.3), np.log(300), items))
        truth.append(rng.poisson(rng.gamma(2.0, level[:, None] / 2.0, (items, horizon))).astype(float))
        forecasts.append(np.repeat(level[:, None], horizon, axis=1))
    return truth, forecasts


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_one_width_for_every_item_fails_the_volume_bands_and_the_chosen_method_holds_in_each(level) -> None:
    truth, forecasts = volume_noise_folds()
    results = evaluate(truth, forecasts, (level,))
    by_band = {m: {b["band"]: b["coverage"] for b in r["bands"]} for m, r in results.items()}
    assert by_band["absolute"]["q1"] > level + 0.05  # slow sellers: too wide
    assert by_band["absolute"]["top5"] < level - 0.3  # best sellers: far too narrow
    assert results["absolute"]["gap"] > 0.05
    from forecast.evaluation.intervals import choose

    chosen = choose({m: (r["gap"], r["wql"]) for m, r in results.items()})
    assert chosen != "absolute"
    assert all(abs(c - level) <= 0.05 for c in by_band[chosen].values()), by_band[chosen]
    assert results[chosen]["wql"] < results["absolute"]["wql"]


def test_coverage_above_nominal_forced_by_zero_sale_weeks_is_no_gap() -> None:
    from forecast.evaluation.intervals import worst_band_gap

    def band(cov: float, zeros: float) -> dict:
        return {"level": 0.8, "coverage": cov, "zero_share": zeros, "n": 100}

    assert worst_band_gap([band(0.86, 0.86), band(0.78, 0.1)]) == pytest.approx(0.02)  # 86 % of weeks sold 0
    assert worst_band_gap([band(0.86, 0.50), band(0.78, 0.1)]) == pytest.approx(0.06)  # over-covered: a gap
    assert worst_band_gap([band(0.70, 0.90)]) == pytest.approx(0.10)  # under-covered is always a gap


def heteroscedastic_csv(folder, items: int = 120, periods: int = 40, seed: int = 0) -> tuple[str, str]:
    """Sales and products CSVs of steady items whose noise grows with their volume (0.3 to 300 a week)."""
    rng = np.random.default_rng(seed)
    level = np.exp(np.linspace(np.log(0.3), np.log(300), items))
    units = rng.poisson(rng.gamma(2.0, level[:, None] / 2.0, (items, periods)))
    dates = pd.date_range("2023-01-02", periods=periods, freq="W-MON").strftime("%Y-%m-%d")
    ids = [f"I{k:03d}" for k in range(items)]
    sales = pd.DataFrame({"item_id": np.repeat(ids, periods), "date": np.tile(dates, items), "units": units.ravel()})
    products = pd.DataFrame({"item_id": ids, "description": [f"plain item {k}" for k in range(items)]})
    sales.to_csv(folder / "sales.csv", index=False)
    products.to_csv(folder / "products.csv", index=False)
    return str(folder / "sales.csv"), str(folder / "products.csv")


def test_the_backtest_chooses_a_per_item_method_on_volume_dependent_noise(tmp_path) -> None:
    panel = build_panel(load_tables(*heteroscedastic_csv(tmp_path)))
    cfg = RunConfig().updated({"baselines.n_jobs": 1, "train.progress": False})
    evaluation = EvalConfig(horizon=2, folds=6, step=2, interval=0.8)
    result = run_backtest(panel, {"moving_average": lambda: registry.build("moving_average", cfg)}, evaluation)
    row = result.summary().set_index("group").loc["history"]
    assert row["interval_method"] != "absolute"
    bands = result.bands[result.bands["level"] == 0.8]
    old = bands[bands["method"] == "absolute"].set_index("band")["coverage"]
    assert old["top5"] < 0.7 and old["q1"] > 0.9  # one width for all: best sellers under, slow sellers over
    assert np.isfinite(row[["coverage", "interval_width", "msis", "wql"]].astype(float)).all()
    calibration = result.calibrations("moving_average")["history"]
    assert calibration.method == row["interval_method"]


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
    quantile = result.calibrations("moving_average")["history"].quantile[level]
    assert quantile.shape[1] == 4 and (quantile > 0).all()


@pytest.mark.parametrize("method", ["absolute", "sqrt+bands", "scaled"])
def test_quantile_columns_bracket_the_forecast_and_are_non_negative(method) -> None:
    truth, forecasts = volume_noise_folds(items=100, horizon=2)
    calibrations = {"history": calibrate(method, truth, forecasts, (0.8, 0.9)),
                    "new": calibrate(method, truth, forecasts, (0.8, 0.9))}
    units = np.array([[0.0, 0.4], [3.0, 2.0], [250.0, 260.0]])
    prediction = Prediction("m", np.arange(3), np.zeros(3, dtype=int), units)
    ranged = with_range(prediction, np.array([True, True, False]), calibrations)
    assert list(ranged.quantiles) == [0.1, 0.9, 0.05, 0.95]  # the headline level's pair first
    q = ranged.quantiles
    assert (q[0.05] >= 0).all() and (q[0.05] <= q[0.1]).all() and (q[0.1] <= units).all()
    assert (units <= q[0.9]).all() and (q[0.9] <= q[0.95]).all()
    assert prediction.quantiles == {}  # the caller's prediction is left as it was


def test_the_level_and_method_travel_with_the_saved_model(tmp_path) -> None:
    truth, forecasts = volume_noise_folds(items=60, horizon=2)
    saved = {"history": calibrate("scaled+bands", truth, forecasts, (0.9,))}
    save(tmp_path, (0.9,), saved)
    loaded = load(tmp_path)
    assert loaded["history"].method == "scaled+bands" and list(loaded["history"].quantile) == [0.9]
    units = np.array([[5.0, 50.0]])
    prediction = Prediction("m", np.arange(1), np.zeros(1, dtype=int), units)
    again, first = (with_range(prediction, np.array([True]), c).quantiles for c in (loaded, saved))
    assert list(again) == [0.05, 0.95] and all(np.array_equal(again[q], first[q]) for q in first)


def test_a_file_of_the_earlier_version_reads_as_absolute_half_widths(tmp_path) -> None:
    (tmp_path / "intervals.json").write_text('{"level": 0.8, "half_width": {"history": [2.0, 3.0]}}')
    calibration = load(tmp_path)["history"]
    assert isinstance(calibration, Calibration) and calibration.method == "absolute"
    lower, upper = calibration.ranges(np.array([[10.0, 1.0]]))[0.8]
    assert lower.tolist() == [[8.0, 0.0]] and upper.tolist() == [[12.0, 4.0]]


def test_the_range_level_is_read_from_the_column_names() -> None:
    assert range_columns(["units", "units_p10", "units_p90", "units_p5", "units_p95"]) == ("units_p10", "units_p90",
                                                                                          0.8)
    assert range_columns(["units", "units_p2.5", "units_p97.5"]) == ("units_p2.5", "units_p97.5", 0.95)
    assert range_columns(["units", "units_p10"]) is None  # half a range is no range


def test_fit_at_90_percent_then_trends_reads_90_percent_ranges(tmp_path, monkeypatch) -> None:
    from forecast.cli import main
    from forecast.pipeline import load_panel
    from forecast.outputs.trends import read_forecast, trend_report

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sales, products = synthetic.write(tmp_path, n_items=40, n_periods=40, n_new=0, seed=1, launch_window=0.3)
    data = ["--sales", sales, "--products", products]
    assert main(["fit", *data, "--models", "moving_average", "--horizon", "6", "--folds", "2", "--step", "6",
                 "--interval", "0.9", "--no-progress"]) == 0
    export = pd.read_csv(tmp_path / "forecast.csv", dtype={"item_id": str})
    assert list(export.columns[6:9]) == ["units", "units_p5", "units_p95"]
    assert main(["trends", *data, "--min-products", "2"]) == 0
    report = pd.read_csv(tmp_path / "trends.csv")
    cfg = RunConfig().updated({"data.sales": sales, "data.products": products})
    panel = load_panel(cfg)
    read = read_forecast(tmp_path / "forecast.csv", panel)
    at_90, at_80 = (trend_report(panel, read, cfg.output.trend_threshold, 2, level) for level in (0.9, 0.8))
    columns = ["forecast_lo", "forecast_hi", "change_lo", "change_hi"]
    np.testing.assert_allclose(report[columns], at_90[columns], atol=1e-3)
    assert not np.allclose(report[columns], at_80[columns], atol=1e-3)
