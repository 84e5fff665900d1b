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

from collections.abc import Sequence
from dataclasses import fields, is_dataclass
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
from forecast.core.version import package_version
from forecast.models import registry
from forecast.models.base import Model

Table = pd.DataFrame | str | Path


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
        self.freq_: str | None = None  # the fitted data's periods: tables of other periods are refused
        self._saved: artifact.Choice | None = None  # the folder it was loaded from, as read

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
        self.ensemble_, self.freq_ = planned.combined, panel.freq
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
        source = "sales (DataFrame)" if isinstance(sales, pd.DataFrame) else str(sales)
        return self._choice().forecast(panel, self.config, source=source)

    def _choice(self) -> artifact.Choice:
        """What was fitted, as a saved-model folder holds it (forecast.outputs.artifact): one saver,
        one loader and one way to forecast for this API, ``fit``'s saved ensemble and ``predict``."""
        directory, reasons = (self._saved.directory, self._saved.reasons) if self._saved else (None, {})
        return artifact.Choice(self.config, self.chosen_, self.models_, self.widths_, self.ensemble_, self.freq_,
                               directory, reasons)

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
        return self._choice().save(directory)

    @classmethod
    def load(cls, directory: str | Path) -> "Forecaster":
        """A Forecaster saved by ``save``, ready to ``predict(sales, products)``."""
        choice = artifact.Choice.load(directory)
        forecaster = cls.__new__(cls)
        forecaster.config, forecaster.chosen_, forecaster.models_ = choice.config, choice.chosen, choice.models
        forecaster.widths_, forecaster.ensemble_, forecaster.freq_ = choice.widths, choice.ensemble, choice.freq
        forecaster._saved = choice
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
