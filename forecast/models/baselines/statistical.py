"""Per-series statistical baselines, fitted one series at a time.

Every model is a configured instance in the statsforecast style (``MovingAverage(window=4)``,
``ETS(fallback=...)``) with one small interface, ``forecast(y, horizon, season_length)``.
A model that cannot serve a series (history too short, an exception inside statsmodels,
a non-finite forecast) hands it to its ``fallback``, the next simpler model instance;
:func:`forecast_many` records every such hop in a :class:`FallbackRecord` so that a
backtest can say how often a model really ran. Which chains the configured models use
is one table, :mod:`forecast.models.registry`::

    SeasonalNaive -> Naive -> Mean
    MovingAverage -> Mean
    ETS           -> MovingAverage -> Mean
    Theta         -> ETS -> MovingAverage -> Mean
    SARIMAX       -> ETS -> MovingAverage -> Mean
    Croston       -> MovingAverage -> Mean        (also TSB, IMAPA)

``Mean`` (the mean of the history) cannot fail on a valid series; should a custom chain
still run dry, the series gets zeros and the record says ``used="zero"``.

Retail series are short and intermittent, so the models choose their own structure
from the history length ``n`` and the season length ``m``:

* seasonal terms only when ``n >= 2 * m`` (two full seasons), never for ``m < 2``;
* ``ETS``: additive seasonal + damped trend, else damped trend when ``n >= 10``, else
  simple exponential smoothing when ``n >= 3``, else fallback;
* ``Theta``: needs ``n >= 3``; deseasonalises (after statsmodels' seasonality test)
  only with two full seasons;
* ``SARIMAX``: needs ``n >= 10``; ARIMA(1,1,1), or (1,0,1)x(0,1,0,m) with two seasons;
* a constant series (all zeros included) long enough for the model is forecast as
  that constant without fitting.

The intermittent-demand models (``Croston``, ``TSB``, ``IMAPA``) follow statsforecast's
definitions and default smoothing parameters (``CrostonSBA``, ``TSB``, ``IMAPA`` in
``statsforecast/models.py``), on a numpy simple exponential smoothing (:func:`ses`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from statsmodels.tsa.forecasting.theta import ThetaModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from statsmodels.tsa.statespace.sarimax import SARIMAX as StatsmodelsSARIMAX
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

MIN_SMOOTHING_HISTORY = 3  # fewer points than this and a smoothing fit is just noise
MIN_TREND_HISTORY = 10  # a damped trend has 5 free parameters; HW's heuristic start needs 10
MIN_ARIMA_HISTORY = 10
SARIMAX_MAXITER = 50
POOL_MIN_SERIES = 64  # below this a process pool costs more than it saves
CHUNKS_PER_JOB = 4  # a few chunks per worker balance uneven series without per-task overhead


class InsufficientHistory(Exception):
    """Raised by a model whose history is too short for it: its fallback takes over."""


@dataclass(frozen=True, kw_only=True)
class SeriesModel:
    """A configured per-series model; ``fallback`` serves the series it cannot (None: none)."""

    name: ClassVar[str]  # its label in fallback records and logs
    fallback: SeriesModel | None = None

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        raise NotImplementedError

    def chain(self) -> tuple[SeriesModel, ...]:
        """This model followed by its fallbacks."""
        chain: list[SeriesModel] = []
        model: SeriesModel | None = self
        while model is not None:
            if any(m is model for m in chain):
                raise ValueError(f"fallback cycle in series models at {model.name!r}")
            chain.append(model)
            model = model.fallback
        return tuple(chain)


@dataclass
class FallbackRecord:
    """A series that was not forecast by the model asked for, and why."""

    series_index: int
    model: str
    used: str
    reason: str


@dataclass
class BatchForecast:
    """Forecasts for many series (rows in input order) and the fallbacks taken."""

    values: np.ndarray
    fallbacks: list[FallbackRecord]

    def stand_in(self) -> str | None:
        """The one model that forecast every series in place of the one asked for (``naive`` for a
        seasonal_naive given less than a season of history); None when the model forecast any itself."""
        used = {record.used for record in self.fallbacks}
        return used.pop() if len(self.fallbacks) == len(self.values) > 0 and len(used) == 1 else None


# --------------------------------------------------------------------------- models


@dataclass(frozen=True, kw_only=True)
class Mean(SeriesModel):
    """Flat mean of the whole history: the last resort, it cannot fail."""

    name = "mean"

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        return np.full(horizon, float(np.mean(y)))


@dataclass(frozen=True, kw_only=True)
class Naive(SeriesModel):
    """Flat last observed value (random-walk forecast)."""

    name = "naive"

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        return np.full(horizon, float(y[-1]))


@dataclass(frozen=True, kw_only=True)
class MovingAverage(SeriesModel):
    """Flat mean of the last `window` periods (all of them when the history is shorter)."""

    name = "moving_average"
    window: int

    def __post_init__(self) -> None:
        if int(self.window) != self.window or self.window < 1:
            raise ValueError(f"moving average window must be >= 1, got {self.window!r}")

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        return np.full(horizon, float(np.mean(y[-self.window:])))


@dataclass(frozen=True, kw_only=True)
class SeasonalNaive(SeriesModel):
    """The last full season repeated: exact on a purely seasonal series."""

    name = "seasonal_naive"

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        if len(y) < season_length:
            raise InsufficientHistory(f"history {len(y)} < 1 season ({season_length})")
        return np.resize(y[-season_length:], horizon).astype(float)


@dataclass(frozen=True, kw_only=True)
class ETS(SeriesModel):
    """Holt-Winters exponential smoothing, its structure chosen from the history length.

    Holt-Winters' ``ExponentialSmoothing`` with ``use_brute=False`` is used rather than
    ``ETSModel``: it gives the same point forecasts here at about half the cost
    (~11 ms vs ~21 ms for a damped trend on 30 points), and only point forecasts are
    needed.
    """

    name = "ets"

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        _require_history(y, MIN_SMOOTHING_HISTORY, "exponential smoothing")
        if _is_constant(y):
            return np.full(horizon, float(y[-1]))
        n = len(y)
        if _has_two_seasons(n, season_length):
            heuristic_ok = n >= 10 + 2 * (season_length // 2)  # statsmodels' requirement
            model = ExponentialSmoothing(
                y,
                trend="add",
                damped_trend=True,
                seasonal="add",
                seasonal_periods=season_length,
                # "estimated" would optimise m initial seasonals: far too slow for m = 52
                initialization_method="heuristic" if heuristic_ok else "estimated",
            )
        elif n >= MIN_TREND_HISTORY:
            model = ExponentialSmoothing(y, trend="add", damped_trend=True, initialization_method="estimated")
        else:
            model = ExponentialSmoothing(y, initialization_method="estimated")
        return np.asarray(model.fit(use_brute=False).forecast(horizon), dtype=float)


@dataclass(frozen=True, kw_only=True)
class Theta(SeriesModel):
    """The Theta method (SES with half the linear-trend drift, theta = 2)."""

    name = "theta"

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        _require_history(y, MIN_SMOOTHING_HISTORY, "theta")
        if _is_constant(y):
            return np.full(horizon, float(y[-1]))
        seasonal = _has_two_seasons(len(y), season_length)
        model = ThetaModel(y, period=season_length if seasonal else 1, deseasonalize=seasonal)
        return np.asarray(model.fit().forecast(horizon), dtype=float)


@dataclass(frozen=True, kw_only=True)
class SARIMAX(SeriesModel):
    """A small (S)ARIMA with bounded optimisation; slow, so opt-in.

    The seasonal part is a plain seasonal difference: a seasonal MA term at m = 52 puts
    ~50 states in the Kalman filter and costs seconds per series.
    """

    name = "sarimax"

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        _require_history(y, MIN_ARIMA_HISTORY, "sarimax")
        if _is_constant(y):
            return np.full(horizon, float(y[-1]))
        if _has_two_seasons(len(y), season_length):
            model = StatsmodelsSARIMAX(y, order=(1, 0, 1), seasonal_order=(0, 1, 0, season_length))
        else:
            model = StatsmodelsSARIMAX(y, order=(1, 1, 1))
        fit = model.fit(disp=False, maxiter=SARIMAX_MAXITER)
        return np.asarray(fit.forecast(horizon), dtype=float)


# ---------------------------------------------------------- intermittent demand

SBA_FACTOR = 0.95  # Syntetos-Boylan approximation: 1 - alpha / 2 at Croston's alpha 0.1
CROSTON_ALPHA = 0.1  # statsforecast's CrostonClassic/CrostonSBA smoothing of sizes and intervals
TSB_ALPHA_DEMAND = 0.1  # statsforecast's TSB has no default; these are the ones its own tests use
TSB_ALPHA_PROBABILITY = 0.3
SES_BOUNDS = (0.1, 0.3)  # statsforecast's optimised SES (IMAPA, ADIDA): alpha searched in this range
GOLDEN_TOLERANCE = 1e-12


def ses(y: np.ndarray, alpha: float) -> float:
    """The one-step-ahead forecast of simple exponential smoothing with a fixed ``alpha``.

    The level starts at the first value and is updated with every value,
    ``level = alpha * y_t + (1 - alpha) * level``: statsforecast's ``ses_forecast`` and
    statsmodels' ``SimpleExpSmoothing`` with ``initial_level=y[0]``. A plain loop: the
    series here are short, and it keeps the reference's order of operations.
    """
    values = [float(v) for v in y]
    if len(values) == 1:
        return values[0]
    level, keep = values[0], 1.0 - alpha
    for value in values:
        level = alpha * value + keep * level
    return level


def ses_sse(y: np.ndarray, alpha: float) -> float:
    """Sum of squared one-step errors of :func:`ses` over ``y[1:]`` (0 below two points)."""
    values = [float(v) for v in y]
    forecast, keep, total = values[0], 1.0 - alpha, 0.0
    for previous, value in zip(values, values[1:]):
        forecast = alpha * previous + keep * forecast
        total += (value - forecast) ** 2
    return total


def optimised_alpha(y: np.ndarray, lower: float = SES_BOUNDS[0], upper: float = SES_BOUNDS[1]) -> float:
    """The ``alpha`` in [lower, upper] minimising :func:`ses_sse`, by golden-section search
    (statsforecast's ``golden_section_ses``: the midpoint of the last bracket)."""
    ratio = (np.sqrt(5.0) + 1.0) / 2.0
    a, b = lower, upper
    c, d = b - (b - a) / ratio, a + (b - a) / ratio
    fc, fd = ses_sse(y, c), ses_sse(y, d)
    while abs(b - a) >= GOLDEN_TOLERANCE:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - (b - a) / ratio
            fc = ses_sse(y, c)
        elif fd < fc:
            a, c, fc = c, d, fd
            d = a + (b - a) / ratio
            fd = ses_sse(y, d)
        else:  # a tie (e.g. fewer than two points): any alpha in the bracket is as good
            break
    return (a + b) / 2.0


def demand_intervals(y: np.ndarray) -> np.ndarray:
    """Periods between consecutive non-zero values, the first counted from before the series:
    ``[0, 3, 0, 0, 5]`` gives ``[2, 3]``."""
    return np.diff(np.flatnonzero(y) + 1, prepend=0).astype(float)


@dataclass(frozen=True, kw_only=True)
class Croston(SeriesModel):
    """Croston's method with the Syntetos-Boylan bias correction (SBA), for intermittent demand.

    The non-zero demand sizes and the intervals between them are each smoothed by
    :func:`ses` with ``alpha`` (statsforecast's 0.1); the forecast is
    ``debias * size / interval`` for every step (``debias`` 0.95, the SBA factor
    ``1 - alpha / 2``: plain Croston over-forecasts). A series with no positive value
    is forecast by its last value (statsforecast's choice, 0 for sales).
    """

    name = "croston"
    alpha: float = CROSTON_ALPHA
    debias: float = SBA_FACTOR

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        sizes = y[y > 0]
        if sizes.size == 0:
            return np.full(horizon, float(y[-1]))
        size, interval = ses(sizes, self.alpha), ses(demand_intervals(y), self.alpha)
        mean = size / interval if interval != 0.0 else size
        return np.full(horizon, self.debias * mean)


@dataclass(frozen=True, kw_only=True)
class TSB(SeriesModel):
    """Teunter-Syntetos-Babai: Croston with the demand *probability* in place of the interval.

    The non-zero sizes are smoothed by :func:`ses` with ``alpha_demand`` and the 0/1
    series "was there a sale" with ``alpha_probability`` in every period, so the forecast
    ``probability * size`` decays while an item stops selling, where Croston's stays
    (obsolescence). statsforecast's ``TSB`` requires both parameters; the defaults are
    those of its own tests and CI (0.1 and 0.3). A series without a sale is forecast 0.
    """

    name = "tsb"
    alpha_demand: float = TSB_ALPHA_DEMAND
    alpha_probability: float = TSB_ALPHA_PROBABILITY

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        sizes = y[y > 0]
        if sizes.size == 0:
            return np.zeros(horizon)
        probability = ses((y != 0).astype(float), self.alpha_probability)
        return np.full(horizon, probability * ses(sizes, self.alpha_demand))


@dataclass(frozen=True, kw_only=True)
class IMAPA(SeriesModel):
    """IMAPA: temporal aggregation at several levels, averaged (ADIDA at every level up to the interval).

    For each level ``k`` from 1 to the mean interval between sales (rounded half to
    even, as Python and statsforecast round), the series (its oldest ``n mod k`` periods
    dropped) is summed in blocks of ``k``, the block sums are forecast by :func:`ses`
    with the alpha of :func:`optimised_alpha` in ``SES_BOUNDS`` (statsforecast's
    optimised SES), and the block forecast is divided by ``k``. The forecast is the mean
    over levels, flat over the horizon: aggregation fills the zeros of slow sellers
    before smoothing. An all-zero series is forecast 0.
    """

    name = "imapa"

    def forecast(self, y: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
        if not np.any(y != 0):
            return np.zeros(horizon)
        top = round(float(demand_intervals(y).mean()))
        per_level = [self._level_forecast(y, k) for k in range(1, top + 1)]
        return np.full(horizon, float(np.mean(per_level)))

    @staticmethod
    def _level_forecast(y: np.ndarray, k: int) -> float:
        """One period's share of the forecast of ``y`` summed in blocks of ``k`` periods."""
        kept = y[len(y) % k:]
        sums = kept.reshape(-1, k).sum(axis=1)
        return ses(sums, optimised_alpha(sums)) / k


def _is_constant(y: np.ndarray) -> bool:
    """True for a flat series, which smoothing fits choke on (zero variance)."""
    return bool(np.ptp(y) == 0)


def _has_two_seasons(n: int, season_length: int) -> bool:
    """Seasonal terms are only identifiable from at least two full seasons."""
    return season_length >= 2 and n >= 2 * season_length


def _require_history(y: np.ndarray, minimum: int, what: str) -> None:
    if len(y) < minimum:
        raise InsufficientHistory(f"history {len(y)} < {minimum} needed for {what}")


# --------------------------------------------------------------- one series, a chain


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence statsmodels' convergence/estimation warnings and numpy float warnings.

    statsmodels registers ``simplefilter("always", ConvergenceWarning)`` at import, so
    the filter has to be set here, around each fit, not once at start-up.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _output_problem(out: np.ndarray, horizon: int) -> str | None:
    if out.shape != (horizon,):
        return f"forecast shape {out.shape} != ({horizon},)"
    if not np.all(np.isfinite(out)):
        return "non-finite forecast"
    return None


def _describe(exc: Exception) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, InsufficientHistory):
        return message
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _forecast_one(
    y: np.ndarray, horizon: int, season_length: int, chain: tuple[SeriesModel, ...]
) -> tuple[np.ndarray, str, list[str]]:
    """Walk the chain until a model gives a finite forecast: (forecast >= 0, used, reasons)."""
    reasons: list[str] = []
    for entry in chain:
        try:
            with _quiet():
                out = np.asarray(entry.forecast(y, horizon, season_length), dtype=float)
        except Exception as exc:  # any failure of one model is the next model's job
            reasons.append(f"{entry.name}: {_describe(exc)}")
            continue
        problem = _output_problem(out, horizon)
        if problem is not None:
            reasons.append(f"{entry.name}: {problem}")
            continue
        return np.maximum(out, 0.0), entry.name, reasons
    return np.zeros(horizon), "zero", reasons


def _forecast_rows(
    start: int,
    chunk: list[np.ndarray],
    horizon: int,
    season_length: int,
    chain: tuple[SeriesModel, ...],
) -> tuple[np.ndarray, list[FallbackRecord]]:
    """Forecast a contiguous run of series that starts at series index `start`."""
    values = np.empty((len(chunk), horizon))
    records: list[FallbackRecord] = []
    for offset, y in enumerate(chunk):
        values[offset], used, reasons = _forecast_one(y, horizon, season_length, chain)
        if used != chain[0].name:
            records.append(FallbackRecord(start + offset, chain[0].name, used, "; ".join(reasons)))
    return values, records


def _forecast_chunk(
    start: int,
    chunk: list[np.ndarray],
    horizon: int,
    season_length: int,
    chain: tuple[SeriesModel, ...],
) -> tuple[int, np.ndarray, list[FallbackRecord]]:
    """Pool task: one chunk with single-threaded BLAS; top-level so it pickles."""
    with _single_threaded_blas():
        values, records = _forecast_rows(start, chunk, horizon, season_length, chain)
    return start, values, records


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Pin BLAS to one thread while fitting.

    The matrices of a 30-point fit are tiny; multi-threaded OpenBLAS spin-waits on
    them and cost ~8x the CPU (ETS: ~140 ms vs ~17 ms per series on a loaded 2-core
    machine), and workers x BLAS threads oversubscribe the cores.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ------------------------------------------------------------------------ where chunks run


@contextmanager
def series_executor(engine: str, workers: int, scheduler: str | None = None) -> Iterator[tuple[Executor, int]]:
    """The one seam where chunks of series run: (a ``concurrent.futures`` executor, its worker count).

    ``local``: a process pool of ``workers`` on this machine. ``dask``: the workers of a
    running Dask cluster (``scheduler``, e.g. ``tcp://10.0.0.5:8786``), through
    ``distributed``'s own ``concurrent.futures`` executor; chunks and fallbacks are the
    same tasks as locally, so the forecasts and fallback counts are identical.

    Dask rather than Ray: it is pure Python and pip-installable (the ``dask`` extra), a
    ``distributed.LocalCluster`` stands in for a cluster in tests, its executor is the
    standard ``concurrent.futures`` interface this module already uses, and it is one of
    the engines statsforecast itself distributes per-series models on (through Fugue).
    """
    if engine == "local":
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool, workers
        return
    from forecast.core.errors import ConfigError

    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("baselines.engine dask needs the dask extra: "
                          "pip install -c constraints.txt -e \".[dask]\"") from None
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, ValueError) as err:
        raise ConfigError(f"baselines.scheduler {scheduler!r}: cannot reach a Dask scheduler ({err})") from None
    with client, client.get_executor() as pool:
        yield pool, max(1, sum(client.nthreads().values()))


# ------------------------------------------------------------------------ many series


def forecast_many(
    series: Sequence[np.ndarray],
    horizon: int,
    season_length: int,
    model: SeriesModel,
    n_jobs: int = -1,
    progress: bool = True,
    engine: str = "local",
    scheduler: str | None = None,
) -> BatchForecast:
    """Forecast every series with `model` (falling back per series), in parallel.

    Series are split into ~``workers * 4`` contiguous chunks fitted by
    :func:`series_executor`: local processes (``n_jobs`` of them; fewer than 64 series,
    or ``n_jobs == 1``, run in this process) or a Dask cluster's workers. Rows of the
    result follow the input order whatever the execution order. ``n_jobs <= 0`` counts
    back from the usable cores (-1: all of them, -2: all but one).
    """
    _check_arguments(horizon, season_length)
    chain = model.chain()
    ys = [_as_series(y, i) for i, y in enumerate(series)]
    workers = _resolve_jobs(n_jobs)
    with tqdm(total=len(ys), desc=model.name, unit="series", disable=not progress) as bar:
        if engine == "local" and (workers == 1 or len(ys) < POOL_MIN_SERIES):
            values, records = _run_in_process(ys, horizon, season_length, chain, bar)
        else:
            with series_executor(engine, workers, scheduler) as (pool, n_workers):
                values, records = _run_in_pool(ys, horizon, season_length, chain, pool, n_workers, bar)
    _log_fallbacks(model.name, len(ys), records)
    return BatchForecast(values=values, fallbacks=records)


def _check_arguments(horizon: int, season_length: int) -> None:
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    if int(season_length) != season_length or season_length < 1:
        raise ValueError(f"season_length must be a positive integer, got {season_length!r}")


def _as_series(y: np.ndarray, index: int) -> np.ndarray:
    """A contiguous 1-D float64 copy; rejects what no model could forecast."""
    arr = np.ascontiguousarray(y, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"series {index}: expected a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"series {index}: history contains NaN or infinite values")
    return arr


def _resolve_jobs(n_jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return max(1, cores + 1 + n_jobs) if n_jobs <= 0 else n_jobs


def _run_in_process(
    ys: list[np.ndarray],
    horizon: int,
    season_length: int,
    chain: tuple[SeriesModel, ...],
    bar: tqdm,
) -> tuple[np.ndarray, list[FallbackRecord]]:
    values = np.empty((len(ys), horizon))
    records: list[FallbackRecord] = []
    with _single_threaded_blas():
        for i, y in enumerate(ys):  # one series at a time keeps the progress bar live
            row, row_records = _forecast_rows(i, [y], horizon, season_length, chain)
            values[i] = row[0]
            records.extend(row_records)
            bar.update(1)
    return values, records


def _run_in_pool(
    ys: list[np.ndarray],
    horizon: int,
    season_length: int,
    chain: tuple[SeriesModel, ...],
    pool: Executor,
    workers: int,
    bar: tqdm,
) -> tuple[np.ndarray, list[FallbackRecord]]:
    n_chunks = min(len(ys), workers * CHUNKS_PER_JOB)
    bounds = np.linspace(0, len(ys), n_chunks + 1).astype(int)
    values = np.empty((len(ys), horizon))
    records: list[FallbackRecord] = []
    futures = [
        pool.submit(_forecast_chunk, int(lo), ys[lo:hi], horizon, season_length, chain)
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    for future in as_completed(futures):
        start, chunk_values, chunk_records = future.result()
        values[start : start + len(chunk_values)] = chunk_values
        records.extend(chunk_records)
        bar.update(len(chunk_values))
    records.sort(key=lambda record: record.series_index)
    return values, records


def _log_fallbacks(model: str, n_series: int, records: list[FallbackRecord]) -> None:
    """Per-series reasons at debug level, one count summary at info level."""
    for record in records:
        logger.debug("series %d: %s -> %s (%s)",
                     record.series_index, record.model, record.used, record.reason)
    if records:
        used = Counter(record.used for record in records)
        if len(records) == n_series and len(used) == 1:
            _say_all_fell_back(model, next(iter(used)), records[0].reason)
            return
        summary = ", ".join(f"{name}: {count}" for name, count in used.most_common())
        logger.info("%s: %d of %d series fell back (%s)", model, len(records), n_series, summary)


_ALL_FELL_BACK: set[tuple[str, str]] = set()  # (model, fallback) pairs already reported in this process


def _say_all_fell_back(model: str, used: str, reason: str) -> None:
    """A model none of whose series it could forecast is the fallback under another name: a WARNING
    the first time (e.g. seasonal_naive on less than two seasons of history), DEBUG on every later fold."""
    first = (model, used) not in _ALL_FELL_BACK
    _ALL_FELL_BACK.add((model, used))
    logger.log(logging.WARNING if first else logging.DEBUG,
               "%s: every series fell back to %s (%s); its forecasts are %s's", model, used, reason, used)
