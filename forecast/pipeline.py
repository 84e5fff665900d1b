"""The verbs' work, from validated config to tracked, exported forecasts.

``fit``: read and validate the tables -> panel -> backtest every model on the same
origins -> pick the best model per item group (or the one asked for) -> refit it
on all the data -> export the future forecast -> log it all to one MLflow run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd

from forecast.backtest import BacktestResult, origins, run_backtest
from forecast.config import RunConfig
from forecast.data.contract import input_paths, load_tables
from forecast.data.panel import Panel, build_panel
from forecast.errors import ConfigError
from forecast.export import check_writable, forecast_frame, write_csv_atomic
from forecast.metrics import METRICS
from forecast.models import registry
from forecast.models.base import HISTORY, NEW, Prediction, variant_name
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


def choose_models(cfg: RunConfig, backtest: BacktestResult) -> dict[str, str]:
    """The model per item group: the one asked for where it can serve, else the backtest's best.

    A group the backtest could not score (e.g. no product launched after any
    origin) gets the first fitted model that serves it, in the registry's order.
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
    wanted = cfg.output.model
    if wanted is not None:
        for group in registry.MODELS[wanted].groups:
            chosen[group] = wanted
    return chosen


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
    panel = load_panel(cfg)
    origins(panel.n_periods, cfg.evaluation)  # refuse a too-short table before a run is opened
    workdir = work_directory(cfg, *data_paths(cfg))
    if resume and not workdir.is_dir():
        log.warning("--resume: no interrupted fit with this configuration and data in %s; starting afresh", workdir)
    tracking.mark_abandoned_runs(cfg.tracking)
    with tracking.tracked_run(cfg, "fit") as run_id:
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
        tracking.log_backtest(backtest.table)
        _log_table(backtest.table, Path(tmp) / "backtest.csv")
        log.info("backtest (pooled over %d folds):\n%s", len(backtest.folds), format_summary(backtest.summary()))
        tracking.log_file(plot_forecast_vs_actual(panel, backtest, cfg.models, Path(tmp) / "forecast_vs_actual.png",
                                                  cfg.tracking.plot_items))
        tracking.log_file(plot_metric_bars(backtest.summary(), Path(tmp) / "backtest_wape.png"))

    chosen = choose_models(cfg, backtest)
    log.info("chosen models: %s", ", ".join(f"{g}: {m}" for g, m in chosen.items()))
    tracking.set_tags({f"forecast.model.{g}": m for g, m in chosen.items()})
    forecasts, model_dirs = [], {}
    for base in dict.fromkeys(variant_name(m)[0] for m in chosen.values()):
        logger = tracking.mlflow_logger(cfg, run_id, prefix=base) if base in registry.NEURAL else None
        model = registry.build(base, cfg, logger=logger, workdir=workdir, resume=resume)
        model.fit(panel, cfg.evaluation.horizon)
        prediction = model.predict(panel, cfg.evaluation.horizon)
        for group, name in chosen.items():
            stem, label = variant_name(name)
            if stem == base:
                forecasts.append(_for_groups(panel, prediction.variant(label), [group]))
                if label:
                    model.use_variant(label)  # the saved model forecasts as the backtest chose
        if hasattr(model, "save") and is_rank_zero():
            model_dirs[base] = model.save(Path(cfg.output.checkpoint_dir) / run_id / base)
            log.info("saved %s; reuse it with: python -m forecast predict --model-dir %s", base, model_dirs[base])
    frame = forecast_frame(panel, forecasts, cfg.neural.trend_window, cfg.output.trend_threshold)
    if export_path and is_rank_zero():
        write_csv_atomic(frame, export_path)
        tracking.log_file(export_path)
        log.info("wrote %d rows for %d products to %s", len(frame), frame["item_id"].nunique(), export_path)
    return FitResult(run_id, backtest, chosen, frame, export_path, model_dirs)


def predict(cfg: RunConfig, model_dir: str | Path) -> pd.DataFrame:
    """Forecast with a saved neural model, without retraining."""
    from forecast.models.neural.estimator import NeuralEstimator

    export_path = check_writable(cfg.output.export, input_paths(cfg.data)) if cfg.output.export else None
    model = NeuralEstimator.load(model_dir)
    panel = load_panel(cfg)
    forecast = model.predict(panel, model.config.evaluation.horizon)
    frame = forecast_frame(panel, [forecast], cfg.neural.trend_window, cfg.output.trend_threshold)
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
    cols = ["group", "model", *METRICS, "fit_seconds"]
    shown = summary[cols].sort_values(["group", "wape"], kind="stable")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def trends(cfg: RunConfig, forecast_csv: Path, output: Path, min_products: int) -> pd.DataFrame:
    """Aggregate an exported forecast by attribute and description word (see forecast.trends)."""
    from forecast.trends import read_forecast, trend_report

    check_writable(output, [forecast_csv, *input_paths(cfg.data)])
    panel = load_panel(cfg)
    export = read_forecast(forecast_csv, panel)
    report = trend_report(panel, export, cfg.output.trend_threshold, min_products)
    write_csv_atomic(report, output)
    log.info("wrote %d trend rows to %s", len(report), output)
    return report
