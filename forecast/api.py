"""The Python API: fit, backtest, forecast and save with pandas DataFrames.

    import forecast
    sales, products = forecast.load_sample()
    fc = forecast.Forecaster(horizon=12, models=["fusion", "moving_average"], seed=0, max_epochs=2)
    fc.fit(sales, products)
    fc.predict()            # the export's rows for every product
    fc.backtest_            # per item, origin, step and model: actual and forecast
    fc.save("model_dir"); forecast.Forecaster.load("model_dir").predict(sales, products)

It runs the same plan and refit as ``python -m forecast fit`` (forecast.pipeline) but publishes
nothing: no export file, no MLflow run, no checkpoint folder unless ``save`` is called. So it
needs neither MLflow nor Optuna, and suits a notebook or a GPU image without them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
import pandas as pd

from forecast.evaluation import combination, intervals
from forecast.outputs import artifact
from forecast.evaluation.backtest import origins
from forecast.core.config import RunConfig
from forecast.data.contract import validate_tables
from forecast.data.loading import load_panel, panel_from_tables, sample_paths
from forecast.data.panel import Panel
from forecast.core.errors import ConfigError, ForecastError
from forecast.outputs.export import forecast_frame
from forecast.models import registry
from forecast.models.base import Model, Prediction, variant_name

FILE = "forecaster.json"  # in a saved Forecaster's folder: what was chosen, and how to rebuild it
FORMAT = "forecast-forecaster/1"
Table = pd.DataFrame | str | Path


def package_version() -> str:
    """The installed distribution's version (``forecast.__version__``)."""
    try:
        return metadata.version("forecast")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def load_sample() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The embedded sample (300 products of the UCI Online Retail data, CC0) as (sales, products)
    DataFrames, as a planner's files would read: one row per item and week, one per product."""
    sales, products = sample_paths()
    return pd.read_csv(sales, dtype={"item_id": str}), pd.read_csv(products, dtype={"item_id": str})


def config_from_settings(config: RunConfig | str | Path | None = None, **settings: Any) -> RunConfig:
    """A RunConfig from a base config (object, YAML path or the defaults) and keyword settings.

    A setting is named by its key in the config without its section when that name is unique
    (``max_epochs=2``, ``interval=0.9``) or with the section and a double underscore
    (``train__max_epochs=2``); ``models`` is the list of every model to fit.
    """
    base = config if isinstance(config, RunConfig) else RunConfig.from_yaml(config) if config else RunConfig()
    overrides: dict[str, Any] = {}
    leaves = _leaf_keys()
    for name, value in settings.items():
        overrides[_dotted(name, leaves)] = value
    return base.updated(overrides)


def _leaf_keys() -> dict[str, list[str]]:
    """Each config key's last name -> the dotted keys that end with it, e.g. "max_epochs" -> ["train.max_epochs"]."""
    found: dict[str, list[str]] = {}
    for section in fields(RunConfig):
        hint = get_type_hints(RunConfig)[section.name]
        names = [f.name for f in fields(hint)] if is_dataclass(hint) else []
        for leaf in names:
            found.setdefault(leaf, []).append(f"{section.name}.{leaf}")
        if not names:
            found.setdefault(section.name, []).append(section.name)
    return found


def _dotted(name: str, leaves: dict[str, list[str]]) -> str:
    if "__" in name:
        return name.replace("__", ".")
    matches = leaves.get(name, [])
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"setting {name!r} is ambiguous: name one of "
                          f"{', '.join(m.replace('.', '__') for m in matches)}")
    raise ConfigError(f"unknown setting {name!r}; settings are the config's keys (README, Configuration)")


class Forecaster:
    """Backtests the configured models, chooses one per item group (history / new) and forecasts
    with it, as ``python -m forecast fit`` does, on DataFrames or files.

    Attributes after ``fit``: ``backtest_`` (long table: item_id, group, origin, step, model,
    actual, forecast), ``scores_`` (the backtest table: metrics per model, group and step),
    ``chosen_`` (group -> model), ``panel_`` (the data on its grid).
    """

    def __init__(self, horizon: int = 12, models: Sequence[str] | None = None, seed: int = 0,
                 config: RunConfig | str | Path | None = None, **settings: Any) -> None:
        if models is not None:
            settings["models"] = models
        cfg = config_from_settings(config, horizon=horizon, seed=seed, **settings)
        self.config = registry.check_models(cfg.validate())
        self.models_: dict[str, Model] = {}
        self.widths_: dict[str, dict[str, intervals.Calibration]] = {}
        self.chosen_: dict[str, str] = {}
        self.ensemble_: dict[str, combination.GroupWeights] = {}

    @property
    def horizon(self) -> int:
        return self.config.evaluation.horizon

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, sales: Table, products: Table) -> "Forecaster":
        """Validate the tables, backtest every model, choose per group, refit the chosen ones."""
        from forecast.pipeline import check_models_serve, plan, refit

        panel = self._panel(sales, products)
        check_models_serve(self.config, panel)
        origins(panel.n_periods, self.config.evaluation)
        planned = plan(self.config, panel)
        fitted = refit(self.config, panel, planned)
        self.panel_, self.chosen_, self.models_, self.widths_ = panel, planned.chosen, fitted.models, fitted.widths
        self.ensemble_ = planned.combined()
        self.scores_ = planned.backtest.table
        self.backtest_ = backtest_frame(panel, planned.backtest)
        self._forecast = fitted.frame
        return self

    def predict(self, sales: Table | None = None, products: Table | None = None) -> pd.DataFrame:
        """The forecast with the export's columns: of the fitted data when no tables are given, else
        of these tables with the fitted models (neural ones as trained; statistical ones, which are
        local to each series, recomputed on the given history)."""
        if not self.models_:
            raise ForecastError("Forecaster: predict called before fit (or load)")
        if sales is None and products is None and hasattr(self, "_forecast"):
            return self._forecast.copy()
        if sales is None or products is None:
            raise ConfigError("predict: give both sales and products (a loaded Forecaster has no data of its own)")
        panel = self._panel(sales, products)
        nt = self.config.neural
        return forecast_frame(panel, self._forecasts(panel), nt.trend_window, self.config.output.trend_threshold)

    def _forecasts(self, panel: Panel) -> list[Prediction]:
        """Each chosen model's ranged forecast of the products of the groups it was chosen for."""
        out, predictions = [], {}
        for base, model in self.models_.items():
            if not hasattr(model, "save"):  # a local model: its fit is part of forecasting new data
                model.fit(panel, self.horizon)
            prediction = predictions[base] = model.predict(panel, self.horizon)
            groups = [g for g, name in self.chosen_.items() if variant_name(name)[0] == base]
            ranged = intervals.with_range(prediction, panel.has_history[prediction.item_index], self.widths_[base])
            out.append(ranged.for_groups(panel.has_history, groups))
        for group, weights in self.ensemble_.items():
            combined = combination.combine(panel, predictions, group, weights)
            out.append(intervals.with_range(combined, panel.has_history[combined.item_index],
                                            self.widths_[combination.NAME]))
        return out

    def _panel(self, sales: Table, products: Table) -> Panel:

        if isinstance(sales, pd.DataFrame) != isinstance(products, pd.DataFrame):
            raise ConfigError("give sales and products both as DataFrames or both as file paths")
        if not isinstance(sales, pd.DataFrame):
            return load_panel(self.config.updated({"data.sales": str(sales), "data.products": str(products)}))
        tables = validate_tables(sales.copy(), products.copy(), "sales (DataFrame)", "products (DataFrame)",
                                 self.config.data)
        return panel_from_tables(tables, self.config)

    # --- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """The chosen models in ``directory``: a folder per model (a neural model's weights with their
        checksums; every model's ranges), the config and what was chosen. Refuses a non-empty folder."""
        if not self.models_:
            raise ForecastError("Forecaster: nothing to save before fit")
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise ConfigError(f"{directory}: not empty; give a new or empty folder (nothing is overwritten)")
        directory.mkdir(parents=True, exist_ok=True)
        level = self.config.evaluation.levels
        intervals.save(directory, level, self.widths_.get(combination.NAME, {}))  # the ensemble's ranges
        for base, model in self.models_.items():
            if hasattr(model, "save"):
                artifact.save(model, directory / base, level, self.widths_[base])
            else:
                (directory / base).mkdir()
                intervals.save(directory / base, level, self.widths_[base])
        self.config.to_yaml(directory / "config.yaml")
        ensemble = {g: {"members": w.members, "weights": [float(v) for v in w.weights]}
                    for g, w in self.ensemble_.items()}
        meta = {"format": FORMAT, "version": package_version(), "chosen": self.chosen_, "models": list(self.models_),
                "ensemble": ensemble}
        (directory / FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Forecaster":
        """A Forecaster saved by ``save``, ready to ``predict(sales, products)``."""
        from forecast.models.neural.estimator import META, NeuralEstimator

        directory = Path(directory)
        try:
            meta = json.loads((directory / FILE).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ForecastError(f"{directory}: not a saved Forecaster ({err})") from None
        if meta.get("format") != FORMAT:
            raise ForecastError(f"{directory / FILE}: unknown format {meta.get('format')!r}")
        config = RunConfig.from_yaml(directory / "config.yaml")
        forecaster = cls.__new__(cls)
        forecaster.config, forecaster.chosen_ = config, dict(meta["chosen"])
        forecaster.models_, forecaster.widths_ = {}, {combination.NAME: intervals.load(directory)}
        forecaster.ensemble_ = {g: combination.GroupWeights(w["members"], np.array(w["weights"]))
                                for g, w in meta.get("ensemble", {}).items()}
        for base in meta["models"]:
            folder = directory / base
            saved = (folder / META).is_file()
            forecaster.models_[base] = NeuralEstimator.load(folder) if saved else registry.build(base, config)
            forecaster.widths_[base] = intervals.load(folder)
        return forecaster


def backtest_frame(panel: Panel, backtest) -> pd.DataFrame:
    """The backtest's forecasts in long form: one row per item, origin, step and model, with the
    actual (NaN where the data holds none) beside the forecast."""
    parts = []
    for fold, cutoff in zip(backtest.folds, backtest.cutoffs_dates):
        for model, by_group in fold.forecasts.items():
            for group, forecast in by_group.items():
                rows, truth = fold.rows[group], fold.truth[group]
                m, h = forecast.shape
                parts.append(pd.DataFrame({
                    "item_id": np.repeat(panel.item_ids[rows], h), "group": group, "origin": cutoff,
                    "step": np.tile(np.arange(1, h + 1), m), "model": model,
                    "actual": truth.ravel(), "forecast": forecast.ravel(),
                }))
    columns = ["item_id", "group", "origin", "step", "model", "actual", "forecast"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


__all__ = ["Forecaster", "load_sample", "package_version", "backtest_frame"]
