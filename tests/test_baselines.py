"""Tests for forecast.models.baselines: per-series statistical models and the kNN launch baseline."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from forecast.models.baselines import statistical
from forecast.models.baselines.knn import knn_launch_forecast
from forecast.models.baselines.statistical import (
    BatchForecast,
    Mean,
    MovingAverage,
    Naive,
    SeasonalNaive,
    SeriesModel,
    forecast_many,
)
from forecast.core.config import RunConfig
from forecast.core.errors import ConfigError
from forecast.models import registry

M = 52  # weekly season


def configured(name: str, window: int = 4) -> SeriesModel:
    """The per-series model (with its fallback chain) that the registry builds for `name`."""
    cfg = RunConfig().updated({"baselines.moving_average_window": window, "models": [name]})
    return registry.build(name, cfg).model


def one(y, model: str | SeriesModel, horizon: int = 8, season_length: int = M, window: int = 4) -> BatchForecast:
    model = configured(model, window) if isinstance(model, str) else model
    return forecast_many([np.asarray(y, dtype=float)], horizon, season_length, model, n_jobs=1, progress=False)


def many(series, horizon: int, model: str, n_jobs: int) -> BatchForecast:
    return forecast_many(series, horizon, M, configured(model), n_jobs=n_jobs, progress=False)


def seasonal_series(n_seasons: int, m: int = M, level: float = 10.0, amplitude: float = 5.0):
    t = np.arange(n_seasons * m)
    return level + amplitude * np.sin(2 * np.pi * t / m)


# ------------------------------------------------------------------ simple models


def test_seasonal_naive_is_exact_on_a_pure_seasonal_series():
    y = seasonal_series(2)
    y = np.r_[y, y[:3]]  # 2 seasons + 3 weeks: the forecast must continue the phase
    result = one(y, "seasonal_naive", horizon=60)
    truth = np.resize(np.r_[y[3:M], y[:3]], 60)
    np.testing.assert_allclose(result.values[0], truth)
    assert result.fallbacks == []


def test_moving_average_is_the_mean_of_the_last_k_periods():
    y = [5.0, 1.0, 2.0, 3.0, 10.0, 0.0]
    np.testing.assert_allclose(one(y, "moving_average", horizon=3).values[0], [3.75] * 3)
    np.testing.assert_allclose(
        one(y, "moving_average", horizon=3, window=2).values[0], [5.0] * 3
    )
    # a window longer than the history averages all of it, no fallback
    result = one(y[:2], "moving_average", horizon=2, window=4)
    np.testing.assert_allclose(result.values[0], [3.0, 3.0])
    assert result.fallbacks == []


# ------------------------------------------------------------ statsmodels models


@pytest.mark.parametrize("model", ["ets", "theta"])
def test_level_is_recovered_on_a_noisy_constant_series(model):
    rng = np.random.default_rng(1)
    y = 20.0 + rng.normal(0.0, 1.0, 40)
    result = one(y, model, horizon=8)
    assert result.fallbacks == []
    np.testing.assert_allclose(result.values[0], y.mean(), atol=1.5)


@pytest.mark.parametrize("model", ["ets", "theta"])
def test_a_linear_trend_is_followed(model):
    rng = np.random.default_rng(2)
    n, h = 40, 8
    y = 10.0 + 2.0 * np.arange(n) + rng.normal(0.0, 1.0, n)
    forecast = one(y, model, horizon=h).values[0]
    truth = 10.0 + 2.0 * np.arange(n, n + h)
    assert np.all(np.diff(forecast) > 0), "the forecast should keep rising"
    assert forecast[0] > y[-5:].mean()
    # theta extrapolates half the drift by design: "roughly" is 15 %
    np.testing.assert_allclose(forecast, truth, rtol=0.15)


def test_ets_captures_the_seasonal_shape_with_three_seasons():
    rng = np.random.default_rng(3)
    y = seasonal_series(3) + rng.normal(0.0, 0.5, 3 * M)
    forecast = one(y, "ets", horizon=M).values[0]
    truth = seasonal_series(1)
    assert np.corrcoef(forecast, truth)[0, 1] > 0.9


def test_theta_deseasonalises_with_two_seasons():
    rng = np.random.default_rng(4)
    y = seasonal_series(3) + rng.normal(0.0, 0.5, 3 * M)
    forecast = one(y, "theta", horizon=M).values[0]
    assert np.corrcoef(forecast, seasonal_series(1))[0, 1] > 0.9


def test_sarimax_works_on_a_short_seasonal_series():
    rng = np.random.default_rng(5)
    m = 4
    y = seasonal_series(3, m=m) + rng.normal(0.0, 0.3, 3 * m)
    result = one(y, "sarimax", horizon=2 * m, season_length=m)
    assert result.fallbacks == []
    forecast = result.values[0]
    assert np.all(np.isfinite(forecast))
    assert np.corrcoef(forecast, seasonal_series(2, m=m))[0, 1] > 0.8


def test_sarimax_non_seasonal_path_stays_near_the_level():
    rng = np.random.default_rng(6)
    y = 5.0 + rng.normal(0.0, 1.0, 30)
    result = one(y, "sarimax", horizon=6)
    assert result.fallbacks == []
    np.testing.assert_allclose(result.values[0], y.mean(), atol=2.0)


def _direct_ets_seasonal(y, h, m):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    return ExponentialSmoothing(y, trend="add", damped_trend=True, seasonal="add", seasonal_periods=m,
                                initialization_method="heuristic").fit(use_brute=False).forecast(h)


def _direct_ets_damped(y, h, m):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    return ExponentialSmoothing(y, trend="add", damped_trend=True,
                                initialization_method="estimated").fit(use_brute=False).forecast(h)


def _direct_ets_simple(y, h, m):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    return ExponentialSmoothing(y, initialization_method="estimated").fit(use_brute=False).forecast(h)


def _direct_theta(y, h, m):
    from statsmodels.tsa.forecasting.theta import ThetaModel

    seasonal = len(y) >= 2 * m
    return ThetaModel(y, period=m if seasonal else 1, deseasonalize=seasonal).fit().forecast(h)


def _direct_sarimax(y, h, m):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    if len(y) >= 2 * m:
        model = SARIMAX(y, order=(1, 0, 1), seasonal_order=(0, 1, 0, m))
    else:
        model = SARIMAX(y, order=(1, 1, 1))
    return model.fit(disp=False, maxiter=statistical.SARIMAX_MAXITER).forecast(h)


def _trending_seasonal(n: int, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 30.0 + 0.2 * t + 6.0 * np.sin(2 * np.pi * t / m) + rng.normal(0.0, 1.0, n)


@pytest.mark.parametrize("model,direct,n,m", [
    ("ets", _direct_ets_seasonal, 3 * 13, 13),
    ("ets", _direct_ets_damped, 30, 52),
    ("ets", _direct_ets_simple, statistical.MIN_TREND_HISTORY - 1, 52),
    ("theta", _direct_theta, 3 * 13, 13),
    ("theta", _direct_theta, 30, 52),
    ("sarimax", _direct_sarimax, 3 * 8, 8),
    ("sarimax", _direct_sarimax, 30, 52),
], ids=["ets-seasonal", "ets-damped", "ets-simple", "theta-seasonal", "theta-plain", "sarimax-seasonal",
        "sarimax-plain"])
def test_statsmodels_baselines_equal_statsmodels_called_directly(model, direct, n, m):
    """Each configured baseline is the documented statsmodels model on the same series (same settings,
    tolerance 1e-6), not a fallback; a naive forecast would fail it (the reference is none of them)."""
    y = _trending_seasonal(n, m, seed=n + m)
    h = 8
    reference = np.asarray(direct(y, h, m), dtype=float)
    result = one(y, model, horizon=h, season_length=m)
    assert result.fallbacks == []
    np.testing.assert_allclose(result.values[0], reference, rtol=1e-6, atol=1e-6)
    for naive in (y[-1], y.mean(), y[-4:].mean()):  # last value, mean, moving average: each fails the check above
        assert np.abs(reference - naive).max() > 0.01


# --------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("length", [1, 2, 5])
def test_seasonal_naive_on_a_short_history_falls_back_to_naive(length):
    y = np.arange(1.0, length + 1)
    result = one(y, "seasonal_naive", horizon=3)
    np.testing.assert_allclose(result.values[0], [y[-1]] * 3)
    (record,) = result.fallbacks
    assert (record.series_index, record.model, record.used) == (0, "seasonal_naive", "naive")
    assert f"history {length} < 1 season ({M})" in record.reason


def test_a_batch_names_its_stand_in_only_when_one_fallback_forecast_every_series():
    short, long = np.arange(1.0, 11.0), np.arange(1.0, 2 * M + 1)
    assert many([short, short + 1], 3, "seasonal_naive", n_jobs=1).stand_in() == "naive"
    assert many([short, long], 3, "seasonal_naive", n_jobs=1).stand_in() is None  # one seasonal forecast
    assert many([long], 3, "seasonal_naive", n_jobs=1).stand_in() is None  # no fallback at all
    assert many([np.array([2.0])], 3, "ets", n_jobs=1).stand_in() == "moving_average"


@pytest.mark.parametrize("model", ["ets", "theta", "sarimax"])
@pytest.mark.parametrize("length", [1, 2])
def test_model_fits_on_a_tiny_history_fall_back_to_moving_average(model, length):
    y = np.array([4.0, 2.0])[:length]
    result = one(y, model, horizon=3)
    np.testing.assert_allclose(result.values[0], [y.mean()] * 3)
    (record,) = result.fallbacks
    assert record.model == model and record.used == "moving_average"
    assert f"history {length} <" in record.reason


def test_sarimax_on_five_points_falls_back_to_ets():
    result = one([3.0, 0.0, 1.0, 4.0, 2.0], "sarimax", horizon=3)
    (record,) = result.fallbacks
    assert record.used == "ets" and "history 5 < 10" in record.reason
    assert np.all(np.isfinite(result.values)) and np.all(result.values >= 0)


@pytest.mark.parametrize("model", ["seasonal_naive", "moving_average", "ets", "theta", "sarimax"])
def test_all_zero_series_gives_zeros(model):
    result = one(np.zeros(30), model, horizon=5)
    np.testing.assert_array_equal(result.values, np.zeros((1, 5)))


class Broken(SeriesModel):
    name = "ets"

    def forecast(self, y, horizon, season_length):
        raise RuntimeError("optimizer exploded")


class NotFinite(SeriesModel):
    name = "theta"

    def forecast(self, y, horizon, season_length):
        return np.full(horizon, np.nan)


def test_a_failing_model_falls_back_and_records_why():
    result = one([1.0, 2.0, 3.0, 4.0, 5.0], Broken(fallback=MovingAverage(window=4)), horizon=2)
    np.testing.assert_allclose(result.values[0], [3.5, 3.5])
    (record,) = result.fallbacks
    assert record.used == "moving_average"
    assert "RuntimeError: optimizer exploded" in record.reason


def test_a_non_finite_forecast_falls_back():
    result = one([2.0, 4.0], NotFinite(fallback=Mean()), horizon=2)
    np.testing.assert_allclose(result.values[0], [3.0, 3.0])
    assert result.fallbacks[0].used == "mean"
    assert "non-finite" in result.fallbacks[0].reason


def test_a_chain_that_runs_dry_gives_zeros():
    result = one([5.0], SeasonalNaive(fallback=Broken()), horizon=2)
    np.testing.assert_array_equal(result.values, np.zeros((1, 2)))
    assert result.fallbacks[0].used == "zero"


def test_the_registry_builds_the_documented_chains():
    chains = {name: [m.name for m in configured(name).chain()] for name in
              ("seasonal_naive", "moving_average", "ets", "theta", "sarimax")}
    assert chains == {"seasonal_naive": ["seasonal_naive", "naive", "mean"],
                      "moving_average": ["moving_average", "mean"],
                      "ets": ["ets", "moving_average", "mean"],
                      "theta": ["theta", "ets", "moving_average", "mean"],
                      "sarimax": ["sarimax", "ets", "moving_average", "mean"]}
    assert configured("theta", window=7).chain()[2] == MovingAverage(window=7, fallback=Mean())
    assert SeasonalNaive(fallback=Naive(fallback=Mean())) == configured("seasonal_naive")


def test_fallbacks_are_logged_at_debug_level(caplog):
    with caplog.at_level("DEBUG", logger="forecast.models.baselines.statistical"):
        one([1.0], "ets", horizon=2)
    assert any("ets -> moving_average" in message for message in caplog.messages)


# --------------------------------------------------------------- many series


def intermittent_series(count: int, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 42, count)
    return [rng.poisson(rng.gamma(0.5, 1.0), n).astype(float) for n in lengths]


@pytest.mark.parametrize("model", ["seasonal_naive", "moving_average", "ets", "theta"])
def test_outputs_are_finite_and_non_negative_on_intermittent_series(model):
    series = intermittent_series(40)
    result = many(series, 12, model, n_jobs=1)
    assert result.values.shape == (40, 12)
    assert np.all(np.isfinite(result.values)) and np.all(result.values >= 0)
    assert all(r.model == model and r.used != model and r.reason for r in result.fallbacks)


class SpyPool(ProcessPoolExecutor):
    created = 0

    def __init__(self, *args, **kwargs):
        type(self).created += 1
        super().__init__(*args, **kwargs)


def test_parallel_results_equal_in_process_results(monkeypatch):
    monkeypatch.setattr(statistical, "ProcessPoolExecutor", SpyPool)
    series = intermittent_series(100, seed=8)
    serial = many(series, 6, "ets", n_jobs=1)
    parallel = many(series, 6, "ets", n_jobs=2)
    assert SpyPool.created == 1, "100 series with n_jobs=2 should use the process pool"
    np.testing.assert_array_equal(parallel.values, serial.values)
    assert parallel.fallbacks == serial.fallbacks
    assert serial.fallbacks, "some of these short series should have fallen back"


def test_small_batches_run_in_process(monkeypatch):
    monkeypatch.setattr(statistical, "ProcessPoolExecutor", SpyPool)
    SpyPool.created = 0
    many(intermittent_series(10), 3, "moving_average", n_jobs=2)
    assert SpyPool.created == 0


def test_bad_arguments_are_rejected():
    with pytest.raises(ConfigError, match="unknown model 'prophet'"):
        registry.build("prophet", RunConfig())
    with pytest.raises(ValueError, match="window"):
        MovingAverage(window=0)
    with pytest.raises(ValueError, match="horizon"):
        many([np.ones(3)], 0, "ets", n_jobs=1)
    with pytest.raises(ValueError, match="series 1"):
        many([np.ones(3), np.array([1.0, np.nan])], 2, "ets", n_jobs=1)
    with pytest.raises(ValueError, match="series 0"):
        many([np.array([])], 2, "ets", n_jobs=1)


# -------------------------------------------------------------------------- knn


def test_knn_with_k1_returns_the_curve_of_an_identical_reference():
    rng = np.random.default_rng(9)
    refs = rng.normal(size=(20, 8))
    curves = rng.poisson(5.0, size=(20, 6)).astype(float)
    forecast = knn_launch_forecast(refs[[3, 11]] * 2.5, refs, curves, k=1)  # scale-free
    np.testing.assert_array_equal(forecast, curves[[3, 11]])


def test_knn_averages_the_k_nearest_and_ignores_nans():
    refs = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [-1.0, 0.0]])
    curves = np.array(
        [[1.0, np.nan, np.nan], [3.0, 4.0, np.nan], [5.0, 8.0, np.nan], [100.0, 100.0, 7.0]]
    )
    forecast = knn_launch_forecast(np.array([[1.0, 0.0]]), refs, curves, k=3)
    # step 0: mean of 1, 3, 5; step 1: NaN ignored -> mean of 4, 8;
    # step 2: no neighbour observed it -> mean over all references that did (7)
    np.testing.assert_allclose(forecast, [[3.0, 6.0, 7.0]])


def test_knn_step_observed_by_nobody_is_zero():
    refs = np.eye(3)
    curves = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]])
    forecast = knn_launch_forecast(np.array([[1.0, 0.0, 0.0]]), refs, curves, k=2)
    assert forecast[0, 1] == 0.0


def test_knn_weighted_leans_towards_the_more_similar_neighbour():
    refs = np.array([[1.0, 0.0], [0.0, 1.0]])
    curves = np.array([[10.0], [0.0]])
    query = np.array([[3.0, 1.0]])  # cosine 0.95 to the first, 0.32 to the second
    plain = knn_launch_forecast(query, refs, curves, k=2)
    weighted = knn_launch_forecast(query, refs, curves, k=2, weighted=True)
    assert plain[0, 0] == pytest.approx(5.0)
    assert weighted[0, 0] == pytest.approx(10.0 * 3 / 4, rel=1e-6)


def test_knn_k_larger_than_references_uses_all_of_them():
    refs = np.eye(2)
    curves = np.array([[2.0], [4.0]])
    forecast = knn_launch_forecast(np.array([[1.0, 1.0], [1.0, 0.0]]), refs, curves, k=10)
    np.testing.assert_allclose(forecast, [[3.0], [3.0]])


def test_knn_query_blocks_do_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(10)
    refs = rng.normal(size=(30, 4))
    curves = rng.poisson(3.0, size=(30, 5)).astype(float)
    curves[rng.random(curves.shape) < 0.3] = np.nan
    queries = rng.normal(size=(11, 4))
    whole = knn_launch_forecast(queries, refs, curves, k=4, weighted=True)
    monkeypatch.setattr("forecast.models.retrieval.QUERY_BLOCK", 3)
    np.testing.assert_array_equal(knn_launch_forecast(queries, refs, curves, k=4, weighted=True), whole)
    assert knn_launch_forecast(np.zeros((0, 4)), refs, curves, k=3).shape == (0, 5)


def test_knn_shape_errors():
    refs, curves = np.ones((4, 3)), np.ones((4, 5))
    with pytest.raises(ValueError, match="dimension"):
        knn_launch_forecast(np.ones((2, 2)), refs, curves, k=3)
    with pytest.raises(ValueError, match="4 reference embeddings but 3"):
        knn_launch_forecast(np.ones((2, 3)), refs, np.ones((3, 5)), k=3)
    with pytest.raises(ValueError, match="no reference"):
        knn_launch_forecast(np.ones((2, 3)), np.ones((0, 3)), np.ones((0, 5)), k=3)
    with pytest.raises(ValueError, match="2-D"):
        knn_launch_forecast(np.ones(3), refs, curves, k=3)
    with pytest.raises(ValueError, match="k must be"):
        knn_launch_forecast(np.ones((2, 3)), refs, curves, k=0)
