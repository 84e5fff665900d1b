"""The verbs' work, from validated config to tracked, exported forecasts.

``fit``: read and validate the tables -> panel -> backtest every model on the same
origins -> pick the best model per item group (or the one asked for) -> refit it
on all the data -> export the future forecast with its range -> log it all to one MLflow
run, with a child run per model (each refit chosen model logged there as an MLflow model).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd

from forecast.evaluation import combination, intervals
from forecast.outputs import artifact
from forecast.evaluation.backtest import BacktestResult, origins, run_backtest
from forecast.core.config import RunConfig
from forecast.data.contract import input_paths, visible
from forecast.data.loading import data_paths, load_panel
from forecast.data.panel import Panel
from forecast.core.errors import ConfigError
from forecast.outputs.export import forecast_frame, write_csv_atomic
from forecast.core.files import check_writable
from forecast.evaluation.metrics import INTERVAL_METRICS, METRICS
from forecast.models import registry
from forecast.models.base import HISTORY, NEW, Model, Prediction, forecast_targets, variant_name
from forecast.models.neural.devices import check_devices, is_rank_zero
from forecast.outputs.summary import WHY, fit_summary

log = logging.getLogger(__name__)


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
        serving = [m for m, entry in registry.MODELS.items()
                   if m in registry.fitted(cfg.models) and group in entry.groups]
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
    if not registry.fitted(cfg.models):
        raise ConfigError(f"--models {','.join(cfg.models)}: the ensemble combines other models' forecasts; "
                          f"add the models to combine, e.g. --models ets,theta,knn,ensemble")
    served = {g for m in registry.fitted(cfg.models) for g in registry.MODELS[m].groups}
    if HISTORY not in served and not _count_targets(panel, NEW):
        raise ConfigError(f"--models {','.join(cfg.models)} forecasts only new products (no sales rows) and none "
                          f"of the {panel.n_items} products is new; add a model for products with history, "
                          f"e.g. --models {','.join(cfg.models)},ets")


def check_checkpoint_dir(cfg: RunConfig) -> None:
    """The folder the chosen models are saved in must be a folder (or creatable): refused before the
    backtest, not after it, when the first model is saved."""
    if any(m in registry.NEURAL for m in cfg.models):
        check_devices(cfg.train)  # before any training, like the folder: an accelerator or device count the machine lacks
    folder = Path(cfg.output.checkpoint_dir)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--checkpoint-dir {folder}: {existing} is a file, not a folder; give a folder")
    if existing is not None and not os.access(existing, os.W_OK):
        raise ConfigError(f"--checkpoint-dir {folder}: {existing} is not writable; give another folder")


def warn_products_without_rows(panel: Panel, frame: pd.DataFrame) -> None:
    """Name, at WARNING, the products of the products table that the export has no rows for, and why."""
    # hashed: np.isin of str ids against the export's object ids compares them pairwise (100 s at 30,000)
    missing = ~pd.Index(panel.item_ids).isin(frame["item_id"].unique())
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

    from forecast.tracking import runs as tracking
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
    with tracking.tracked_run(cfg, "fit", data_paths(cfg)[0], panel.n_items) as run_id:
        if resume:
            tracking.set_tags({"forecast.resumed": "true"})
        result = fit_in_run(cfg, panel, run_id, export_path, workdir, resume)
    shutil.rmtree(workdir, ignore_errors=True)
    if is_rank_zero():
        log.info("%s", "\n".join(fit_summary(result, cfg)))
    return result


def fit_in_run(cfg: RunConfig, panel: Panel, run_id: str, export_path: Path | None,
               workdir: Path | None = None, resume: bool = False) -> FitResult:
    """fit's work inside an open MLflow run (``tune`` calls it for the winner): plan, log the plan,
    refit, publish. Only the logging and publishing steps touch MLflow or the disk."""
    planned = plan(cfg, panel, workdir, resume)
    model_runs = _log_plan(cfg, panel, planned)
    loggers = {base: tracking_logger(cfg, model_runs[base]) for base in planned.refit_models()
               if base in registry.NEURAL and base in model_runs}
    fitted = refit(cfg, panel, planned, workdir, resume, loggers)
    return publish(cfg, panel, fitted, run_id, export_path, model_runs)


@dataclass
class Plan:
    """What the backtest decided: its scores, the model chosen per item group, the ensemble's weights."""

    backtest: BacktestResult
    chosen: dict[str, str]  # item group -> model (or variant, or "ensemble") name
    ensemble: combination.Ensemble
    calibrations: dict[str, dict[str, intervals.Calibration]]  # chosen name -> item group -> its backtest ranges
    combined: dict[str, combination.GroupWeights]  # the groups the ensemble forecasts: members and weights

    def chosen_models(self) -> list[str]:
        """The fitted models chosen for a group (variants of one model sharing its training)."""
        return list(dict.fromkeys(variant_name(m)[0] for m in self.chosen.values() if m != combination.NAME))

    def ensemble_models(self) -> list[str]:
        """The fitted models behind the members of the ensemble's groups (a variant member: its model)."""
        return list(dict.fromkeys(variant_name(m)[0] for weights in self.combined.values() for m in weights.members))

    def refit_models(self) -> list[str]:
        """The models to refit: the chosen ones, then the ensemble's members."""
        return list(dict.fromkeys(self.chosen_models() + self.ensemble_models()))


def plan(cfg: RunConfig, panel: Panel, workdir: Path | None = None, resume: bool = False) -> Plan:
    """Backtest every configured model on the same origins, combine them, choose one per item group."""
    factories = {m: partial(registry.build, m, cfg.one_network(), workdir=workdir, resume=resume)
                 for m in registry.fitted(cfg.models)}
    backtest = run_backtest(panel, factories, cfg.evaluation)
    ensemble = combination.Ensemble(cfg.baselines.ensemble_shrinkage)
    if combination.NAME in cfg.models:
        backtest, ensemble = combination.add_to_backtest(backtest, ensemble.shrinkage)
    log.info("backtest (pooled over %d folds):\n%s", len(backtest.folds), format_summary(backtest.reported()))
    chosen = choose_models(cfg, backtest, panel)
    log.info("chosen models: %s (%s)", ", ".join(f"{g}: {m}" for g, m in chosen.items()), WHY)
    calibrations = {name: backtest.calibrations(name) for name in dict.fromkeys(chosen.values())}
    return Plan(backtest, chosen, ensemble, calibrations, combination.chosen_groups(chosen, ensemble))


@dataclass
class Refitted:
    """What refitting the chosen models produces, before anything is saved, exported or logged."""

    plan: Plan
    models: dict[str, Model]  # model name -> refitted on all data (variant applied); ensemble members too
    widths: dict[str, dict[str, intervals.Calibration]]  # model name (or "ensemble") -> item group -> ranges
    forecasts: list[Prediction]  # one ranged forecast per item group, of the products that group serves
    frame: pd.DataFrame  # the export's rows


def refit(cfg: RunConfig, panel: Panel, planned: Plan, workdir: Path | None = None, resume: bool = False,
          loggers: dict | None = None) -> Refitted:
    """Refit each chosen model (and the ensemble's members) on all the data and forecast the future
    with the backtest's ranges. No side effects: saving, exporting and logging are ``publish``'s."""
    loggers, horizon = loggers or {}, cfg.evaluation.horizon
    models, predictions, widths, forecasts = {}, {}, {}, []
    for base in planned.refit_models():
        model = models[base] = registry.build(base, cfg, logger=loggers.get(base), workdir=workdir, resume=resume)
        model.fit(panel, horizon)
        prediction = predictions[base] = model.predict(panel, horizon)
        widths[base] = {}
        for group, name in planned.chosen.items():
            stem, label = variant_name(name)
            if stem != base:
                continue
            if label:
                model.use_variant(label)  # the saved model forecasts as the backtest chose
            calibrated = planned.calibrations[name]  # the chosen (variant's) own errors for this group
            if group in calibrated:
                widths[base][group] = calibrated[group]
            ranged = intervals.with_range(prediction.variant(label), panel.has_history[prediction.item_index],
                                          widths[base])
            forecasts.append(ranged.for_groups(panel.has_history, [group]))
    combined_groups = planned.combined
    if combined_groups:  # the ensemble's ranges, only when it forecasts a group
        widths[combination.NAME] = planned.calibrations[combination.NAME]
    for group, weights in combined_groups.items():
        combined = combination.combine(panel, predictions, group, weights)
        forecasts.append(intervals.with_range(combined, panel.has_history[combined.item_index],
                                              widths[combination.NAME]))
    frame = forecast_frame(panel, forecasts, cfg.neural.trend_window, cfg.output.trend_threshold)
    warn_products_without_rows(panel, frame)
    return Refitted(planned, models, widths, forecasts, frame)


def publish(cfg: RunConfig, panel: Panel, fitted: Refitted, run_id: str, export_path: Path | None,
            model_runs: dict[str, str]) -> FitResult:
    """The one step with side effects, on rank 0 only: save each refitted chosen model in a folder of its
    own (a chosen ensemble as one folder with its members, weights and ranges), write the export, log the
    served models to MLflow (a model that is only an ensemble member is saved inside the ensemble's folder;
    one that is also chosen for a group is saved once, its folder linked into the ensemble's)."""
    from forecast.tracking import runs as tracking

    model_dirs: dict[str, Path] = {}
    if is_rank_zero():
        run_folder = Path(cfg.output.checkpoint_dir) / run_id
        for base in fitted.plan.chosen_models():
            model_dirs[base] = save_chosen(cfg, panel, fitted, base, run_folder / base)
        if fitted.plan.combined:
            neural = {base: path for base, path in model_dirs.items() if base in registry.NEURAL}
            model_dirs[combination.NAME] = saved_ensemble(cfg, panel, fitted).save(run_folder / combination.NAME,
                                                                                    neural)
        for base, model in fitted.models.items():
            if base in model_runs:
                _log_refit_info(model_runs[base], model)
        for base, folder in model_dirs.items():
            if base in model_runs:
                served = [f for f in fitted.forecasts if variant_name(f.model)[0] == base][-1]
                registered = base in registry.NEURAL or base == combination.NAME  # what --register registers
                _log_served_model(cfg, model_runs[base], folder, panel, served, registered)
        if export_path:
            write_csv_atomic(fitted.frame, export_path, bom=cfg.output.excel)
            tracking.log_file(export_path)
            log.info("wrote %d rows for %d products to %s", len(fitted.frame), fitted.frame["item_id"].nunique(),
                     export_path)
    planned = fitted.plan
    return FitResult(run_id, planned.backtest, planned.chosen, fitted.frame, export_path, model_dirs)


def save_chosen(cfg: RunConfig, panel: Panel, fitted: Refitted, base: str, folder: Path) -> Path:
    """The folder ``predict --model-dir`` serves the chosen model ``base`` from: a neural model with the
    ranges of every group it serves; a statistical or launch model (refitted on the data it is given) as
    a choice of that one model for the groups it was chosen for (its variant, e.g. launch_curve:attributes)."""
    model = fitted.models[base]
    if base in registry.NEURAL:
        saved, missing = saved_widths(fitted.plan.backtest, base, fitted.widths[base], panel)
        return artifact.save(model, folder, cfg.evaluation.levels, saved, missing)
    chosen = {group: name for group, name in fitted.plan.chosen.items() if variant_name(name)[0] == base}
    return artifact.Choice(cfg, chosen, {base: model}, {base: fitted.widths[base]}, {}, panel.freq).save(folder)


def saved_ensemble(cfg: RunConfig, panel: Panel, fitted: Refitted) -> artifact.Choice:
    """The chosen ensemble as ``predict`` reads it back: the groups it forecasts with their weights, its
    refitted members and the ensemble's ranges (a neural member's files are inside it, so the folder
    serves on its own, e.g. as an MLflow model)."""
    combined = fitted.plan.combined
    members = fitted.plan.ensemble_models()
    widths = {name: fitted.widths.get(name, {}) for name in (combination.NAME, *members)}
    return artifact.Choice(cfg, {group: combination.NAME for group in combined},
                           {m: fitted.models[m] for m in members}, widths, combined, panel.freq)


def tracking_logger(cfg: RunConfig, run_id: str):
    """Lightning's MLflow logger writing a neural model's training curves into its child run."""
    from forecast.tracking import runs as tracking

    return tracking.mlflow_logger(cfg, run_id)


def _log_plan(cfg: RunConfig, panel: Panel, planned: Plan) -> dict[str, str]:
    """The backtest and the choice into the open run: data summary, one child run per model
    (returned: model -> child run id; {} off rank 0), the table, the plots, the chosen metrics."""
    from forecast.tracking import runs as tracking
    from forecast.outputs.plots import plot_band_coverage, plot_forecast_vs_actual, plot_metric_bars

    backtest, chosen = planned.backtest, planned.chosen
    with TemporaryDirectory() as tmp:
        _log_data_summary(panel)
        _log_inputs(cfg, panel)
        tracking.log_ensemble(planned.ensemble, Path(tmp))
        model_runs = tracking.log_model_runs(backtest.table, cfg.evaluation.interval,
                                             backtest.bands) or {}  # {} off rank 0
        _log_table(backtest.table, Path(tmp) / "backtest.csv")
        _log_table(backtest.bands, Path(tmp) / "interval_bands.csv")
        tracking.log_file(plot_forecast_vs_actual(panel, backtest, cfg.models, Path(tmp) / "forecast_vs_actual.png",
                                                  cfg.tracking.plot_items, chosen, planned.calibrations))
        tracking.log_file(plot_metric_bars(backtest.summary(), Path(tmp) / "backtest_wape.png", chosen=chosen))
        tracking.log_file(plot_band_coverage(backtest.bands, Path(tmp) / "interval_coverage.png"))
    tracking.set_tags({f"forecast.model.{g}": m for g, m in chosen.items()})
    _log_chosen_metrics(backtest, chosen)
    return model_runs


def saved_widths(backtest: BacktestResult, base: str, chosen: dict[str, np.ndarray],
                 panel: Panel) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The half-widths a saved model carries: those of the groups it was chosen for (as exported), and
    for the others its own backtest errors, since ``predict`` forecasts every group the model serves;
    with, for a group it was never scored on, the reason (so predict can say it plainly)."""
    widths = backtest.calibrations(base) | chosen
    missing = {}
    for group in sorted(set(registry.MODELS[base].groups) - set(widths)):
        what = "with history at a backtest origin" if group == HISTORY else "launched after a backtest origin"
        missing[group] = (f"no product {what} had actuals in the {len(backtest.folds)} backtest fold(s), so {base} was "
                          f"never scored on {group} products (more --folds or a later --step give it some)")
    for group, reason in missing.items():
        if _count_targets(panel, group):
            log.warning("the saved %s model has no forecast range for %s products: %s", base, group, reason)
    return widths, missing


def _log_served_model(cfg: RunConfig, run_id: str, model_dir: Path, panel: Panel, prediction: Prediction,
                      registered: bool = True) -> None:
    """A saved chosen model as an MLflow pyfunc model in its child run (with --register, a neural model
    or the ensemble is also registered: a statistical one holds nothing learned to register)."""
    from forecast.tracking import runs as tracking, serving

    example = serving.example_input(*data_paths(cfg))
    register = cfg.tracking.register if registered else None
    output = forecast_frame(panel, [prediction], cfg.neural.trend_window, cfg.output.trend_threshold).head(5)
    # MLflow checks the input example by forecasting its 2 products: their data lines and warnings
    # would read as the user's data's, so the check runs quietly
    with tracking.in_run(run_id), quiet_logs("forecast"):
        uri = tracking.log_pyfunc_model(model_dir, serving.__name__, example, serving.REQUIRED_INPUTS,
                                        serving.typed_output(output), serving.requirements(), register,
                                        name=variant_name(prediction.model)[0], code_paths=serving.code_paths())
    log.info("logged %s as an MLflow model; reuse it with: python -m forecast predict --model-uri %s%s",
             prediction.model, uri, f" (registered as {register})" if register else "")


def _log_refit_info(run_id: str, model) -> None:
    """A refitted neural model's training record (epochs, seconds, windows, members, best validation loss)
    as ``refit/...`` metrics of its child run: the backtest's curves are its folds', not the served model's."""
    from forecast.tracking import runs as tracking

    info = {f"refit/{k}": float(v) for k, v in getattr(model, "fit_info", {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if info:
        with tracking.in_run(run_id):
            tracking.log_metrics(info)


def _log_chosen_metrics(backtest: BacktestResult, chosen: dict[str, str]) -> None:
    """The parent run's headline: each group's chosen model's backtest metrics, e.g. ``history/wape``."""
    from forecast.tracking import runs as tracking

    summary = backtest.summary().set_index(["model", "group"])
    tracking.log_metrics({f"{group}/{metric}": float(summary.loc[(model, group), metric])
                          for group, model in chosen.items() if (model, group) in summary.index
                          for metric in (*METRICS, *INTERVAL_METRICS)
                          if np.isfinite(summary.loc[(model, group), metric])})


def predict(cfg: RunConfig, model_dir: str | Path, horizon: int | None = None) -> pd.DataFrame:
    """Forecast with a saved model (a neural model, or a chosen ensemble: its neural members as
    trained, its statistical ones refitted on this history), without retraining: ``horizon`` periods
    (default the trained horizon, never more), on data of the frequency it was trained on."""
    export_path = check_writable(cfg.output.export, input_paths(cfg.data)) if cfg.output.export else None
    saved = artifact.load(model_dir)
    panel = load_panel(cfg)
    frame = saved.forecast(panel, cfg, horizon, source=data_paths(cfg)[0])
    warn_products_without_rows(panel, frame)
    if export_path:
        write_csv_atomic(frame, export_path, bom=cfg.output.excel)
        log.info("wrote %d rows for %d products to %s", len(frame), frame["item_id"].nunique(), export_path)
    return frame


def _log_data_summary(panel: Panel) -> None:
    from forecast.tracking import runs as tracking

    tracking.log_params({"panel.items": panel.n_items, "panel.new_items": int((~panel.has_history).sum()),
                       "panel.periods": panel.n_periods, "panel.freq": panel.freq,
                       "panel.season_length": panel.season_length, "panel.gaps_filled": panel.gaps_filled})


def _log_inputs(cfg: RunConfig, panel: Panel) -> None:
    """The products table and the sales as validated onto the grid (item_id, date, units: what the
    models train on) as the run's MLflow datasets, with their source files."""
    from forecast.tracking import runs as tracking

    sales_path, products_path = data_paths(cfg)
    observed = ~np.isnan(panel.units)
    rows, columns = np.nonzero(observed)
    sales = pd.DataFrame({"item_id": panel.item_ids[rows], "date": panel.dates[columns],
                          "units": panel.units[observed]})
    products = panel.products.assign(item_id=panel.item_ids)
    tracking.log_inputs({"sales": (sales, sales_path), "products": (products, products_path)})


@contextmanager
def quiet_logs(name: str) -> Iterator[None]:
    """Only errors from logger ``name`` during the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _log_table(table: pd.DataFrame, path: Path) -> None:
    from forecast.tracking import runs as tracking

    table.to_csv(path, index=False)
    tracking.log_file(path)


CONSOLE_COLUMNS = {"group": "group", "model": "model", "wape": "wape", "bias": "bias", "mase": "mase",
                   "smape": "smape", "coverage": "cover", "wql": "wql", "fit_seconds": "fit_s"}


def format_summary(summary: pd.DataFrame) -> str:
    """The backtest table as a person reads it in a 100-column terminal: per group, best first, the
    choosing metric (WAPE) first; MAE and RMSE are in backtest.csv and MLflow."""
    columns = [c for c in CONSOLE_COLUMNS if c in summary.columns]
    shown = summary[columns].rename(columns=CONSOLE_COLUMNS).sort_values(["group", "wape"], kind="stable")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def trends(cfg: RunConfig, model_dir: str | Path | None = None, item: str | None = None) -> pd.DataFrame:
    """The trend report of an exported forecast (``cfg.trends``: which, where the report goes, how many
    products a word or value needs) by attribute and description word, its chart
    beside it (``<output>.png``), with a saved text-reading model the words' ``model_effect``;
    both logged to an MLflow run when a tracking store is given (see forecast.outputs.trends).
    ``item``: instead, which words of that product's description move the model's forecast."""
    from forecast.outputs import trends as tr
    from forecast.outputs.plots import plot_trends

    forecast_csv, output, min_products = Path(cfg.trends.forecast), Path(cfg.trends.output), cfg.trends.min_products
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
    level = tr.report_level(export, cfg.evaluation.levels[0])
    log.info("trend report at the %s level of the forecast's range", f"{level:.0%}")
    report = tr.trend_report(panel, export, cfg.output.trend_threshold, min_products, level)
    if model is not None:
        report = tr.word_effects(model, panel, report, export)
    write_csv_atomic(report, output)
    plot_trends(report, chart, weeks=f"Trends: {tr.compared_weeks(panel, export)}")
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

    from forecast.tracking import runs as tracking

    if not (cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return
    with tracking.tracked_run(cfg, "trends", data_paths(cfg)[0]) as run_id:
        tracking.log_file(report)
        tracking.log_file(chart)
    log.info("logged the trend report and chart to MLflow run %s", run_id)
