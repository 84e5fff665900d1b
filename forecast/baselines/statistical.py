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
    from forecast.errors import ConfigError

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
