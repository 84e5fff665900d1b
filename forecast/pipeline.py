"""The verbs' work, from validated config to tracked, exported forecasts.

``fit``: read and validate the tables -> panel -> backtest every model on the same
origins -> pick the best model per item group (or the one asked for) -> refit it
on all the data -> export the future forecast with its range -> log it all to one MLflow
run, with a child run per model (a refit neural model logged there as an MLflow model).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd

from forecast import intervals
from forecast.backtest import BacktestResult, origins, run_backtest
from forecast.config import RunConfig
from forecast.data.contract import input_paths, load_tables, visible
from forecast.data.panel import Panel, build_panel
from forecast.errors import ConfigError, DataError
from forecast.export import check_writable, forecast_frame, write_csv_atomic
from forecast.metrics import METRICS
from forecast.models import registry
from forecast.models.base import HISTORY, NEW, Prediction, forecast_targets, variant_name
from forecast.models.neural.devices import is_rank_zero

log = logging.getLogger(__name__)


def sample_paths() -> tuple[str, str]:
    """The embedded sample: 300 products of the UCI Online Retail data (CC0)."""
    root = resources.files("forecast") / "sample"
    return str(root / "sales.csv"), str(root / "products.csv")


def data_paths(cfg: RunConfig) -> tuple[str, str]:
    """(sales, products): the configured tables, or the embedded sample when neither is given."""
    data = cfg.data
    if (data.sales is None) != (data.products is None):
        raise ConfigError("give both --sales and --products, or neither (to run on the embedded sample)")
    return (data.sales, data.products) if data.sales else sample_paths()


def load_panel(cfg: RunConfig) -> Panel:
    data = cfg.data
    sales, products = data_paths(cfg)
    panel = build_panel(load_tables(sales, products, data), freq=data.freq, gaps=data.gaps,
                        series_end=data.series_end)
    if data.signals:
        from forecast.data.signals import attach_signals

        panel = attach_signals(panel, data.signals, data.date_format)
    if cfg.evaluation.season_length:
        panel.season_length = cfg.evaluation.season_length
    log.info("data: %d products (%d new), %d periods of %s from %s to %s",
             panel.n_items, int((~panel.has_history).sum()), panel.n_periods, panel.freq,
             panel.dates[0].date(), panel.dates[-1].date())
    return panel


def choose_models(cfg: RunConfig, backtest: BacktestResult, panel: Panel) -> dict[str, str]:
    """The model per item group: the one asked for where it can serve, else the backtest's best.

    A group the backtest could not score (e.g. no product launched after any
    origin) gets the first fitted model that serves it, in the registry's order; a
    group of products that no fitted model serves gets the registry's fallback (the
    description-kNN for new products), so that no product silently lacks a forecast.
    """
    chosen = backtest.best_models("wape")
    for group in (HISTORY, NEW):
        if group in chosen:
            continue
        serving = [m for m, entry in registry.MODELS.items() if m in cfg.models and group in entry.groups]
        if serving:
            chosen[group] = serving[0]
            log.warning("no %s items in any backtest fold: using %s for them without backtest evidence",
                        group, serving[0])
        elif group in registry.FALLBACK and (waiting := _count_targets(panel, group)):
            chosen[group] = registry.FALLBACK[group]
            log.warning("none of --models %s forecasts %s products: fitting %s for the %d of them "
                        "(add a model for them to --models to compare it in the backtest)",
                        ",".join(cfg.models), group, chosen[group], waiting)
    wanted = cfg.output.model
    if wanted is not None:
        for group in registry.MODELS[wanted].groups:
            chosen[group] = wanted
    return chosen


def _count_targets(panel: Panel, group: str) -> int:
    """How many products of a group the export would forecast."""
    return len(forecast_targets(panel, frozenset({group}))[0])


def check_models_serve(cfg: RunConfig, panel: Panel) -> None:
    """Refuse, before a run opens, a model set that forecasts none of the products: models of new
    products only (``--models knn``) when no product is new (with history ones, fit falls back)."""
    served = {g for m in cfg.models for g in registry.MODELS[m].groups}
    if HISTORY not in served and not _count_targets(panel, NEW):
        raise ConfigError(f"--models {','.join(cfg.models)} forecasts only new products (no sales rows) and none "
                          f"of the {panel.n_items} products is new; add a model for products with history, "
                          f"e.g. --models {','.join(cfg.models)},ets")


def check_checkpoint_dir(cfg: RunConfig) -> None:
    """The folder neural models are saved in must be a folder (or creatable): refused before the
    backtest, not after it, when the first model is saved."""
    if not any(m in registry.NEURAL for m in cfg.models):
        return
    folder = Path(cfg.output.checkpoint_dir)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--checkpoint-dir {folder}: {existing} is a file, not a folder; give a folder")
    if existing is not None and not os.access(existing, os.W_OK):
        raise ConfigError(f"--checkpoint-dir {folder}: {existing} is not writable; give another folder")


def warn_products_without_rows(panel: Panel, frame: pd.DataFrame) -> None:
    """Name, at WARNING, the products of the products table that the export has no rows for, and why."""
    missing = ~np.isin(panel.item_ids, frame["item_id"].unique())
    if not missing.any():
        return
    ended = missing & ~panel.forecastable
    reasons = [(ended, "their series ends before the forecast starts (end_date, --series-end last-sale)"),
               (missing & ~ended & panel.has_history, "no model chosen forecasts products with history"),
               (missing & ~ended & ~panel.has_history, "no model chosen forecasts new products")]
    said = [f"{int(m.sum())} {why}: {_first_ids(panel.item_ids[m])}" for m, why in reasons if m.any()]
    log.warning("%d of %d products have no rows in the export; %s", int(missing.sum()), panel.n_items,
                "; ".join(said))


def _first_ids(ids: np.ndarray, shown: int = 10) -> str:
    more = f", ... ({len(ids) - shown} more)" if len(ids) > shown else ""
    return ", ".join(map(visible, ids[:shown])) + more


@dataclass
class FitResult:
    run_id: str
    backtest: BacktestResult
    chosen: dict[str, str]
    export: pd.DataFrame
    export_path: Path | None
    model_dirs: dict[str, Path] = field(default_factory=dict)


def fit(cfg: RunConfig, resume: bool = False) -> FitResult:
    """Backtest every configured model, then refit the chosen ones and export.

    Neural trainings checkpoint into a work directory keyed by config and data;
    ``resume=True`` continues a killed fit from there. It is removed on success.
    """
    import shutil

    from forecast import tracking
    from forecast.models.neural.estimator import work_directory

    registry.check_models(cfg.validate())
    export_path = check_writable(cfg.output.export, input_paths(cfg.data)) if cfg.output.export else None
    check_checkpoint_dir(cfg)
    tracking.check_store(cfg.tracking)
    panel = load_panel(cfg)
    check_models_serve(cfg, panel)
    origins(panel.n_periods, cfg.evaluation)  # refuse a too-short table before a run is opened
    workdir = work_directory(cfg, *data_paths(cfg))
    if resume and not workdir.is_dir():
        log.warning("--resume: no interrupted fit with this configuration and data in %s; starting afresh", workdir)
    tracking.mark_abandoned_runs(cfg.tracking)
    with tracking.tracked_run(cfg, "fit", data_paths(cfg)[0]) as run_id:
        if resume:
            tracking.set_tags({"forecast.resumed": "true"})
        result = fit_in_run(cfg, panel, run_id, export_path, workdir, resume)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def fit_in_run(cfg: RunConfig, panel: Panel, run_id: str, export_path: Path | None,
               workdir: Path | None = None, resume: bool = False) -> FitResult:
    """fit's work inside an open MLflow run (``tune`` calls it for the winner)."""
    from forecast import tracking
    from forecast.plots import plot_forecast_vs_actual, plot_metric_bars

    with TemporaryDirectory() as tmp:
        _log_data_summary(panel)
        factories = {m: partial(registry.build, m, cfg, workdir=workdir, resume=resume) for m in cfg.models}
        backtest = run_backtest(panel, factories, cfg.evaluation)
        model_runs = tracking.log_model_runs(backtest.table, cfg.evaluation.interval) or {}  # {} off rank 0
        _log_table(backtest.table, Path(tmp) / "backtest.csv")
        log.info("backtest (pooled over %d folds):\n%s", len(backtest.folds), format_summary(backtest.summary()))
        tracking.log_file(plot_forecast_vs_actual(panel, backtest, cfg.models, Path(tmp) / "forecast_vs_actual.png",
                                                  cfg.tracking.plot_items))
        tracking.log_file(plot_metric_bars(backtest.summary(), Path(tmp) / "backtest_wape.png"))

    chosen = choose_models(cfg, backtest, panel)
    log.info("chosen models: %s", ", ".join(f"{g}: {m}" for g, m in chosen.items()))
    tracking.set_tags({f"forecast.model.{g}": m for g, m in chosen.items()})
    _log_chosen_metrics(backtest, chosen)
    forecasts, model_dirs = [], {}
    for base in dict.fromkeys(variant_name(m)[0] for m in chosen.values()):
        neural = base in registry.NEURAL and base in model_runs
        logger = tracking.mlflow_logger(cfg, model_runs[base]) if neural else None
        model = registry.build(base, cfg, logger=logger, workdir=workdir, resume=resume)
        model.fit(panel, cfg.evaluation.horizon)
        prediction = model.predict(panel, cfg.evaluation.horizon)
        widths = {}
        for group, name in chosen.items():
            stem, label = variant_name(name)
            if stem != base:
                continue
            if label:
                model.use_variant(label)  # the saved model forecasts as the backtest chose
            calibrated = backtest.half_widths(name)  # the chosen (variant's) own errors for this group
            if group in calibrated:
                widths[group] = calibrated[group]
            ranged = intervals.with_range(prediction.variant(label), panel.has_history[prediction.item_index], widths)
            forecasts.append(_for_groups(panel, ranged, [group]))
        if hasattr(model, "save") and is_rank_zero():
            model_dirs[base] = model.save(Path(cfg.output.checkpoint_dir) / run_id / base)
            intervals.save(model_dirs[base], cfg.evaluation.interval, widths)
            _log_served_model(cfg, model_runs[base], model_dirs[base], panel, forecasts[-1])
    frame = forecast_frame(panel, forecasts, cfg.neural.trend_window, cfg.output.trend_threshold)
    warn_products_without_rows(panel, frame)
    if export_path and is_rank_zero():
        write_csv_atomic(frame, export_path)
        tracking.log_file(export_path)
        log.info("wrote %d rows for %d products to %s", len(frame), frame["item_id"].nunique(), export_path)
    return FitResult(run_id, backtest, chosen, frame, export_path, model_dirs)


def _log_served_model(cfg: RunConfig, run_id: str, model_dir: Path, panel: Panel, prediction: Prediction) -> None:
    """The saved model as an MLflow pyfunc model in its child run (registered with --register)."""
    from forecast import serving, tracking

    example = serving.example_input(*data_paths(cfg))
    output = forecast_frame(panel, [prediction], cfg.neural.trend_window, cfg.output.trend_threshold).head(5)
    with tracking.in_run(run_id):
        uri = tracking.log_pyfunc_model(model_dir, serving.__name__, example, serving.REQUIRED_INPUTS, output,
                                        serving.requirements(), cfg.tracking.register)
    log.info("logged %s as an MLflow model; reuse it with: python -m forecast predict --model %s%s",
             prediction.model, uri, f" (registered as {cfg.tracking.register})" if cfg.tracking.register else "")


def _log_chosen_metrics(backtest: BacktestResult, chosen: dict[str, str]) -> None:
    """The parent run's headline: each group's chosen model's backtest metrics, e.g. ``history/wape``."""
    from forecast import tracking

    summary = backtest.summary().set_index(["model", "group"])
    tracking.log_metrics({f"{group}/{metric}": float(summary.loc[(model, group), metric])
                          for group, model in chosen.items() if (model, group) in summary.index
                          for metric in (*METRICS, "coverage", "interval_width")
                          if np.isfinite(summary.loc[(model, group), metric])})


def predict(cfg: RunConfig, model_dir: str | Path, horizon: int | None = None) -> pd.DataFrame:
    """Forecast with a saved neural model, without retraining: ``horizon`` periods (default the
    trained horizon, never more), on data of the frequency it was trained on."""
    from forecast.models.neural.estimator import NeuralEstimator

    export_path = check_writable(cfg.output.export, input_paths(cfg.data)) if cfg.output.export else None
    model = NeuralEstimator.load(model_dir)
    horizon = model.horizon if horizon is None else horizon
    if horizon > model.horizon:
        raise ConfigError(f"--horizon {horizon}: the model in {model_dir} was trained for {model.horizon} periods; "
                          f"give at most {model.horizon}, or fit a model with --horizon {horizon}")
    panel = load_panel(cfg)
    if panel.freq != model.freq:
        raise DataError(f"{data_paths(cfg)[0]}: the data's periods are {panel.freq} but the model in {model_dir} "
                        f"was trained on {model.freq} periods; aggregate the sales to {model.freq} (or give "
                        f"--freq {model.freq}), or fit a model on this data")
    forecast = model.predict(panel, horizon)
    widths = intervals.load(Path(model_dir))
    if not widths:
        log.warning("%s holds no forecast ranges (saved by an older version): units_lo/units_hi are empty", model_dir)
    forecast = intervals.with_range(forecast, panel.has_history[forecast.item_index], widths)
    frame = forecast_frame(panel, [forecast], cfg.neural.trend_window, cfg.output.trend_threshold)
    warn_products_without_rows(panel, frame)
    if export_path:
        write_csv_atomic(frame, export_path)
        log.info("wrote %d rows for %d products to %s", len(frame), frame["item_id"].nunique(), export_path)
    return frame


def _for_groups(panel: Panel, forecast: Prediction, groups: list[str]) -> Prediction:
    history = panel.has_history[forecast.item_index]
    keep = np.zeros(len(history), dtype=bool)
    if HISTORY in groups:
        keep |= history
    if NEW in groups:
        keep |= ~history
    return forecast.select(keep)


def _log_data_summary(panel: Panel) -> None:
    from forecast import tracking

    tracking.log_params({"panel.items": panel.n_items, "panel.new_items": int((~panel.has_history).sum()),
                       "panel.periods": panel.n_periods, "panel.freq": panel.freq,
                       "panel.season_length": panel.season_length, "panel.gaps_filled": panel.gaps_filled})


def _log_table(table: pd.DataFrame, path: Path) -> None:
    from forecast import tracking

    table.to_csv(path, index=False)
    tracking.log_file(path)


def format_summary(summary: pd.DataFrame) -> str:
    """The backtest table as a person reads it: per group, best first."""
    cols = ["group", "model", *METRICS, "coverage", "interval_width", "fit_seconds"]
    shown = summary[cols].sort_values(["group", "wape"], kind="stable")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def trends(cfg: RunConfig, forecast_csv: Path, output: Path, min_products: int,
           model_dir: str | Path | None = None, item: str | None = None) -> pd.DataFrame:
    """The trend report of an exported forecast by attribute and description word, its chart
    beside it (``<output>.png``), with a saved text-reading model the words' ``model_effect``;
    both logged to an MLflow run when a tracking store is given (see forecast.trends).
    ``item``: instead, which words of that product's description move the model's forecast."""
    from forecast import trends as tr
    from forecast.plots import plot_trends

    if min_products < 1:
        raise ConfigError(f"--min-products must be at least 1, got {min_products}")
    model = _text_model(model_dir) if model_dir else None
    if item is not None:
        if model is None:
            raise ConfigError("--item needs --model-dir: the saved fusion or text model whose forecast it explains")
        effects = tr.item_effects(model, load_panel(cfg), item)
        print(effects.to_string(index=False))
        return effects
    chart = output.with_suffix(".png")
    check_writable(output, [forecast_csv, *input_paths(cfg.data)])
    check_writable(chart, [forecast_csv, *input_paths(cfg.data)])
    panel = load_panel(cfg)
    export = tr.read_forecast(forecast_csv, panel)
    report = tr.trend_report(panel, export, cfg.output.trend_threshold, min_products)
    if model is not None:
        report = tr.word_effects(model, panel, report, export)
    write_csv_atomic(report, output)
    plot_trends(report, chart)
    log.info("wrote %d trend rows to %s and their chart to %s", len(report), output, chart)
    _log_trends(cfg, output, chart)
    return report


def _text_model(model_dir: str | Path):
    """A saved neural model that reads descriptions (fusion or text), or a ConfigError saying why not."""
    from forecast.models.neural.estimator import NeuralEstimator

    model = NeuralEstimator.load(model_dir)
    if not model.uses_text:
        raise ConfigError(f"--model-dir {model_dir}: the {model.name} model reads no descriptions; "
                          f"give a saved fusion or text model")
    return model


def _log_trends(cfg: RunConfig, report: Path, chart: Path) -> None:
    """Report and chart into an MLflow run of their own, when a store is given (option or environment)."""
    import os

    from forecast import tracking

    if not (cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return
    with tracking.tracked_run(cfg, "trends", data_paths(cfg)[0]) as run_id:
        tracking.log_file(report)
        tracking.log_file(chart)
    log.info("logged the trend report and chart to MLflow run %s", run_id)
