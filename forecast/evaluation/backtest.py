"""Evaluate any set of forecasters on the same rolling origins and the same metrics.

Origins (cut-offs) step back from the end of the data: the last one is the
holdout of the final H periods, the others lie ``step`` periods apart before it.
At each origin every model sees only the periods before it. Items are scored in
two groups: those with history at the origin (a sale before it) whose series
has not ended by then, and new items whose first sale comes at or after it
(forecast from their launch, which may lie before the origin, and scored on
whatever of their first H periods the data holds; nothing after a series' end
is scored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from forecast.core.config import EvalConfig
from forecast.data.panel import Panel
from forecast.core.errors import DataError
from forecast.evaluation.intervals import METHODS, Calibration, as_quantiles, calibrate, choose, evaluate
from forecast.models.base import HISTORY, NEW, Model, Prediction, variant_name
from forecast.evaluation.metrics import INTERVAL_METRICS, METRICS, coverage, interval_width, mase_scale, msis, score, \
    score_by_step, wql

log = logging.getLogger(__name__)

MIN_TRAIN_PERIODS = 4


def origins(n_periods: int, cfg: EvalConfig) -> list[int]:
    """Cut-offs, oldest first; each leaves at least MIN_TRAIN_PERIODS to learn from."""
    cuts = [n_periods - cfg.horizon - cfg.step * k for k in reversed(range(cfg.folds))]
    kept = [c for c in cuts if c >= MIN_TRAIN_PERIODS]
    if not kept:
        raise DataError(
            f"the sales table has {n_periods} periods: too short for a horizon of {cfg.horizon} "
            f"(need at least {cfg.horizon + MIN_TRAIN_PERIODS}); lower --horizon"
        )
    if len(kept) < len(cuts):
        log.warning("only %d of %d backtest folds fit in %d periods", len(kept), len(cuts), n_periods)
    return kept


@dataclass
class FoldResult:
    cutoff: int
    truth: dict[str, np.ndarray]  # group -> [m, H] actuals (NaN: no truth)
    rows: dict[str, np.ndarray]  # group -> panel rows scored
    scale: dict[str, np.ndarray]  # group -> MASE scale per row
    forecasts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> group -> [m, H]


@dataclass
class BacktestResult:
    table: pd.DataFrame  # model, group, step (0 = all steps), metrics, INTERVAL_METRICS, interval_method, n, ...
    folds: list[FoldResult]
    cutoffs_dates: list[pd.Timestamp]
    levels: tuple[float, ...] = (0.8,)  # nominal coverage of the ranges, the headline (scored in the table) first
    bands: pd.DataFrame | None = None  # per model, group, method, level and volume band: held-out coverage, width
    interval_method: str = "auto"  # evaluation.interval_method the ranges were scored with
    # model -> the fallback that forecast all its series in every fold (see :func:`stand_ins`): its
    # scores are that model's, so it is reported under both names and not chosen while another model is
    stand_ins: dict[str, str] = field(default_factory=dict)

    def calibrations(self, model: str) -> dict[str, Calibration]:
        """Per group the model was scored on, its forecast ranges calibrated on every fold's errors
        with the method the backtest chose for it (forecast.evaluation.intervals)."""
        summary = self.summary().set_index(["model", "group"])
        return {group: calibrate(_method(summary, model, group), *_pairs(self.folds, model, group), self.levels)
                for group in (HISTORY, NEW) if _pairs(self.folds, model, group)[0]}

    def summary(self) -> pd.DataFrame:
        """Pooled metrics over all folds and steps, one row per model and group."""
        t = self.table
        return t[t["step"] == 0].drop(columns="step").reset_index(drop=True)

    def reported(self) -> pd.DataFrame:
        """:meth:`summary` as a person reads it: a model that a fallback stood in for is named after
        both (``seasonal_naive→naive``), since the scores on its row are the fallback's."""
        summary = self.summary()
        return summary.assign(model=[reported_name(m, self.stand_ins) for m in summary["model"]])

    def with_model(self, name: str, seconds: float) -> "BacktestResult":
        """This result with the rows of ``name``, whose forecasts were put into the folds afterwards
        (a combination of the fitted models, forecast.evaluation.combination), scored exactly as they are."""
        added, bands = _score_table(self.folds, {name: seconds}, self.levels, self.interval_method)
        return replace(self, table=pd.concat([self.table, added], ignore_index=True),
                       bands=pd.concat([self.bands, bands], ignore_index=True))

    def best_models(self, metric: str = "wape") -> dict[str, str]:
        """Lowest pooled metric per group, e.g. {"history": "fusion", "new": "knn"}. A model a fallback
        stood in for is chosen only where no other model was scored: its score is the fallback's, and
        refitted on the longer full history it may forecast as itself, unscored."""
        summary = self.summary().dropna(subset=[metric])
        best = {}
        for group, part in summary.groupby("group", sort=False):
            own = part[~part["model"].isin(self.stand_ins)]
            best[group] = (own if len(own) else part).sort_values(metric, kind="stable")["model"].iloc[0]
        return best


def reported_name(model: str, stand_ins: Mapping[str, str]) -> str:
    """``model``, or ``model→fallback`` when the fallback forecast all its series in every fold."""
    return f"{model}→{stand_ins[model]}" if model in stand_ins else model


def stand_ins(used: Mapping[str, list[str | None]]) -> dict[str, str]:
    """Per model, the fallback that forecast every series in every fold it forecast any (``used``: each
    fold's :attr:`Prediction.stand_in`), e.g. seasonal_naive on less than a season of history: naive."""
    found = {model: set(per_fold) for model, per_fold in used.items() if per_fold}
    return {model: next(iter(names)) for model, names in found.items() if len(names) == 1 and None not in names}


def fold_panel(panel: Panel, cutoff: int) -> Panel:
    """The panel as known before ``cutoff``, in which no model forecasts the products never sold in the
    whole table: they have nothing to score in any fold, and a catalogue of them (100,000 products
    launching after the data) was forecast at every origin by every new-product model for nothing.
    They stay in the panel with their series ended at their launch (``Panel.forecastable``), because a
    model may read them while training (fusion standardises its text vectors over every description)."""
    known = panel.truncate(cutoff)
    never_sold = panel.first_sale >= panel.n_periods
    return replace(known, end=np.where(never_sold, np.minimum(known.end, known.start), known.end))


def _fold_targets(panel: Panel, cutoff: int, horizon: int) -> FoldResult:
    known = panel.truncate(cutoff)
    sold = panel.first_sale < panel.n_periods
    history = np.flatnonzero((panel.first_sale < cutoff) & (panel.end > cutoff))
    new = np.flatnonzero(sold & (panel.first_sale >= cutoff))
    truth = {
        HISTORY: panel.window(history, np.full(len(history), cutoff), horizon),
        NEW: panel.window(new, panel.start[new], horizon),
    }
    scale = {
        HISTORY: np.array([mase_scale(known.history(i), panel.season_length) for i in history]),
        NEW: np.full(len(new), np.nan),
    }
    return FoldResult(cutoff, truth, {HISTORY: history, NEW: new}, scale)


def _align(forecast: Prediction, rows: np.ndarray) -> np.ndarray | None:
    """The forecast's values on exactly these panel rows (None if it lacks any)."""
    position = pd.Series(np.arange(len(forecast.item_index)), index=forecast.item_index)
    where = position.reindex(rows).to_numpy()
    if len(rows) == 0 or np.isnan(where).any():
        return None
    return forecast.units[where.astype(int)]


def run_backtest(panel: Panel, models: Mapping[str, Callable[[], Model]], cfg: EvalConfig,
                 cutoffs: list[int] | None = None) -> BacktestResult:
    """Fit every model at every origin and score all of them on the same items and cells.

    ``cutoffs`` overrides the rolling origins (e.g. a date split for new products).
    """
    cutoffs = cutoffs or origins(panel.n_periods, cfg)
    folds, timings = [], {name: 0.0 for name in models}
    used: dict[str, list[str | None]] = {name: [] for name in models}  # per fold, who forecast in its place
    for k, cutoff in enumerate(cutoffs, 1):
        log.info("backtest fold %d/%d: cut-off %s", k, len(cutoffs), panel.dates[cutoff].date())
        train = fold_panel(panel, cutoff)
        fold = _fold_targets(panel, cutoff, cfg.horizon)
        for name, make in models.items():
            tic = time.perf_counter()
            model = make()
            model.fit(train, cfg.horizon)
            forecast = model.predict(train, cfg.horizon)
            timings[name] += time.perf_counter() - tic
            if len(forecast.item_index):
                used[name].append(forecast.stand_in)
            for label in (None, *forecast.variants):
                key = name if label is None else f"{name}:{label}"
                timings.setdefault(key, 0.0)
                fold.forecasts[key] = {  # a variant is scored only on the groups where it differs
                    group: values for group in (HISTORY, NEW)
                    if group in model.groups
                    and (values := _align(forecast.variant(label), fold.rows[group])) is not None
                    and (label is None or not np.array_equal(values, fold.forecasts[name][group]))
                }
        folds.append(fold)
    for name in list(timings):
        base, label = variant_name(name)
        if label is not None:
            timings[name] = timings[base]  # a variant costs its model's fit
    table, bands = _score_table(folds, timings, cfg.levels, cfg.interval_method)
    fell_back = stand_ins(used)
    for model, fallback in fell_back.items():
        log.info("%s: %s forecast all its series in every fold, so its row reads %s and it is not chosen "
                 "over a model scored as itself", model, fallback, reported_name(model, fell_back))
    return BacktestResult(table, folds, [panel.dates[c] for c in cutoffs], cfg.levels, bands, cfg.interval_method,
                          fell_back)


def _method(summary: pd.DataFrame, model: str, group: str) -> str:
    """The range method the backtest chose for a model and group (``absolute`` when it scored none)."""
    method = summary["interval_method"].get((model, group)) if "interval_method" in summary else None
    return method if isinstance(method, str) else "absolute"


def _pairs(folds: list[FoldResult], model: str, group: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(truth, forecast) per fold in which ``model`` forecast ``group``."""
    scored = [f for f in folds if group in f.forecasts.get(model, {}) and f.truth[group].size]
    return [f.truth[group] for f in scored], [f.forecasts[model][group] for f in scored]


def _score_table(folds: list[FoldResult], timings: dict[str, float], levels: tuple[float, ...],
                 method: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the metrics table, the per-band coverage of every range method) of every model and group."""
    records, bands = [], []
    for name in timings:
        for group in (HISTORY, NEW):
            parts = [(f.truth[group], f.forecasts[name][group], f.scale[group])
                     for f in folds if group in f.forecasts.get(name, {})]
            if not parts:
                continue
            truth, pred, scale = (np.concatenate(x) for x in zip(*parts))
            if truth.size == 0:
                continue
            base = {"model": name, "group": group, "fit_seconds": round(timings[name], 2)}
            ranged = _interval_scores(folds, name, group, levels, method, scale)
            bands += [{"model": name, "group": group} | row for row in ranged.pop("bands")]
            records.append(base | {"step": 0} | ranged | score(truth, pred, scale))
            for h, metrics in enumerate(score_by_step(truth, pred, scale), 1):
                records.append(base | {"step": h} | metrics)
    columns = ["model", "group", "step", *METRICS, *INTERVAL_METRICS, "interval_method", "n", "fit_seconds"]
    band_columns = ["model", "group", "method", "chosen", "level", "band", "coverage", "width", "mean_forecast",
                    "zero_share", "n"]
    return pd.DataFrame.from_records(records, columns=columns), pd.DataFrame.from_records(bands, columns=band_columns)


def _interval_scores(folds: list[FoldResult], model: str, group: str, levels: tuple[float, ...], method: str,
                     scale: np.ndarray) -> dict:
    """The range method for a model and group (``method``, or with "auto" the backtest's choice), its
    held-out INTERVAL_METRICS at the headline level (WQL over every level's bounds) and ``bands``: the
    per-band coverage rows of every method tried. NaN with one fold (nothing to hold out)."""
    truth, forecasts = _pairs(folds, model, group)
    tried = evaluate(truth, forecasts, levels, METHODS if method == "auto" else (method,))
    if not tried:
        return {m: np.nan for m in INTERVAL_METRICS} | {"interval_method": method if method != "auto" else
                                                        "absolute", "bands": []}
    chosen = choose({m: (r["gap"], r["wql"]) for m, r in tried.items()}) if method == "auto" else method
    actual = np.concatenate(truth)
    lower, upper = tried[chosen]["ranges"][levels[0]]
    return {"coverage": coverage(actual, lower, upper), "interval_width": interval_width(actual, lower, upper),
            "msis": msis(actual, lower, upper, levels[0], scale),
            "wql": wql(actual, as_quantiles(tried[chosen]["ranges"])), "interval_method": chosen,
            "bands": [{"method": m, "chosen": m == chosen} | row for m, r in tried.items() for row in r["bands"]]}
