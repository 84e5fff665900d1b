"""A saved model's folder, read and written in one place: the model's own files (a neural model's
weights, config and metadata with their checksums) and the forecast ranges it was exported with.

Two kinds of folder, both written here and both read by :func:`load`; ``fit`` saves one per chosen
model, in ``checkpoints/<run id>/<model>``:

- **one neural model** (a chosen neural model): ``model.safetensors``, ``config.yaml``, ``meta.json``,
  ``reference.safetensors``, ``intervals.json`` and ``SHA256SUMS`` (the sums of all of them).
- **a choice of models** (:class:`Choice`: a chosen statistical or launch model, the chosen ensemble,
  or what ``Forecaster.save`` saves): ``forecaster.json`` (the model per item group, the models and
  how each forecasts, the ensemble's members and weights per group, the data's frequency),
  ``config.yaml``, ``intervals.json`` (the ensemble's ranges), a folder per model (a neural one as
  above; a statistical or launch one, refitted on the data it is given, its ``intervals.json`` only)
  and ``SHA256SUMS`` over every file in it (forecast.core.checksums): an edited file is refused.

A neural model fit chose for one group and that is also a member of the ensemble is saved once: the
ensemble's folder holds hard links to the files of the model's own folder (a copy where the file
system has no hard links), so each folder still serves, copies and logs to MLflow on its own.

``load(folder).forecast`` is the one way a saved model forecasts: the ``predict`` verb, the MLflow
pyfunc flavour (forecast.tracking.serving) and ``Forecaster.predict`` all call it, so they cannot
drift apart.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.evaluation import combination, intervals
from forecast.evaluation.combination import GroupWeights
from forecast.evaluation.intervals import Calibration
from forecast.core import checksums
from forecast.core.config import RunConfig
from forecast.core.version import package_version
from forecast.data.panel import Panel
from forecast.core.errors import ConfigError, DataError, ForecastError
from forecast.outputs.export import forecast_frame
from forecast.core.files import disk_faults
from forecast.models import registry
from forecast.models.base import HISTORY, NEW, Model, Prediction, in_group, variant_name

log = logging.getLogger("forecast.pipeline")


def save(model, directory: Path, levels: tuple[float, ...], calibrations: dict[str, Calibration],
         missing: dict[str, str] | None = None) -> Path:
    """A refitted model's folder: its own files (``model.save``) and the ranges it exports with
    (``missing``: for a group without a range, why; predict says it)."""
    saved = model.save(directory)
    with disk_faults(f"the forecast ranges of {saved}"):
        intervals.save(saved, levels, calibrations, missing)
        checksums.add(saved, intervals.FILE)  # an edited range is refused like an edited weight
    return saved


FILE = "forecaster.json"  # in a folder of chosen models: what was chosen, and how to rebuild it
FORMAT = "forecast-forecaster/1"
CONFIG = "config.yaml"  # the same name as in a neural model's folder: serving reads either kind's config


@dataclass
class SavedModel:
    """A neural model saved by ``fit``, with the calibration of its forecast ranges."""

    directory: Path
    model: object  # NeuralEstimator
    calibrations: dict[str, Calibration]
    missing: dict[str, str] | None = None  # per group without a range, why (None: saved before ranges were kept)

    @classmethod
    def load(cls, directory: str | Path) -> "SavedModel":
        """The model in ``directory``; a missing, corrupt or modified file is a ForecastError."""
        from forecast.models.neural.estimator import NeuralEstimator

        directory = Path(directory)
        model = NeuralEstimator.load(directory)
        return cls(directory, model, *intervals.read(directory))

    def forecast(self, panel: Panel, cfg: RunConfig, horizon: int | None = None, source: str = "the data") -> pd.DataFrame:
        """The export's rows for ``panel``: ``horizon`` periods (default the trained horizon, never
        more), on data of the frequency the model was trained on (``source`` names the data in errors)."""
        model = self.model
        horizon = checked_request(self.directory, model.horizon, model.freq, panel, horizon, source)
        panel = model.checked_inputs(panel, source, self.directory)
        prediction = model.predict(panel, horizon)
        if self.missing is None:
            log.warning("%s holds no forecast ranges (saved by a version before they were kept): the export has "
                        "no range; refit to get them", self.directory)
        else:
            warn_missing_ranges(self.missing, panel, [prediction])
        ranged = intervals.with_range(prediction, panel.has_history[prediction.item_index], self.calibrations)
        return forecast_frame(panel, labelled(ranged, panel, model.variant), cfg.neural.trend_window,
                              cfg.output.trend_threshold)


def labelled(prediction: Prediction, panel: Panel, variant: str | None) -> list[Prediction]:
    """A saved neural model's forecast named as fit's export named it: a model fit chose as a variant for new
    products (fusion:average_text_new) names those rows so; its other rows are its own forecast."""
    if variant is None:
        return [prediction]
    parts = [prediction.for_groups(panel.has_history, [HISTORY]),
             replace(prediction.for_groups(panel.has_history, [NEW]), model=f"{prediction.model}:{variant}")]
    return [part for part in parts if len(part.item_index)] or [prediction]


@dataclass
class Choice:
    """What a fit chose, ready to forecast any tables: per item group a model (or ``ensemble``), the
    fitted models (the ensemble's members among them), each one's ranges per group (the ensemble's
    under its name), the ensemble's members and weights per group it forecasts."""

    config: RunConfig
    chosen: dict[str, str]  # item group -> model (or variant, or "ensemble") name
    models: dict[str, Model]  # model name -> fitted model (a statistical one is refitted on each forecast)
    widths: dict[str, dict[str, Calibration]]  # model name (or "ensemble") -> item group -> ranges
    ensemble: dict[str, GroupWeights]  # item group -> the ensemble's members and weights
    freq: str | None = None  # the periods of the data it was fitted on (None: not recorded, not checked)
    directory: Path | None = None  # the folder it was loaded from
    reasons: dict[str, str] = field(default_factory=dict)  # per group without a saved range, why

    def save(self, directory: str | Path, shared: dict[str, Path] | None = None) -> Path:
        """This choice as a folder (see the module docstring); refuses a folder that holds files.
        ``shared``: models already saved in a folder of their own (by fit), linked here, not written again."""
        directory, shared = Path(directory), shared or {}
        if directory.exists() and any(directory.iterdir()):
            raise ConfigError(f"{directory}: not empty; give a new or empty folder (nothing is overwritten)")
        levels = self.config.evaluation.levels
        with disk_faults(f"the saved model {directory}"):
            directory.mkdir(parents=True, exist_ok=True)
            intervals.save(directory, levels, self.widths.get(combination.NAME, {}),
                           self._unranged(combination.NAME))
            for base, model in self.models.items():
                if base in shared:
                    _link_files(shared[base], directory / base)
                elif hasattr(model, "save"):
                    save(model, directory / base, levels, self.widths[base], self._unranged(base))
                else:
                    (directory / base).mkdir()
                    intervals.save(directory / base, levels, self.widths[base], self._unranged(base))
            self.config.to_yaml(directory / CONFIG)
            ensemble = {g: {"members": w.members, "weights": [float(v) for v in w.weights]}
                        for g, w in self.ensemble.items()}
            meta = {"format": FORMAT, "version": package_version(), "chosen": self.chosen,
                    "models": list(self.models), "how": {base: how_it_forecasts(base) for base in self.models},
                    "ensemble": ensemble, "freq": self.freq}
            (directory / FILE).write_text(json.dumps(meta, indent=2))
            checksums.write(directory, checksums.all_files(directory))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Choice":
        """The choice saved in ``directory``; a missing or unreadable file is a ForecastError."""
        from forecast.models.neural.estimator import META, NeuralEstimator

        directory = Path(directory)
        if not (directory / FILE).is_file():
            raise ForecastError(f"{directory}: not a saved model ({FILE} is missing)")
        checksums.verify(directory, (FILE, CONFIG, intervals.FILE), "saved model")
        try:
            meta = json.loads((directory / FILE).read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"unknown format {meta.get('format')!r}")
            chosen, names = {str(g): str(m) for g, m in meta["chosen"].items()}, [str(m) for m in meta["models"]]
            ensemble = {g: GroupWeights([str(m) for m in w["members"]], np.array(w["weights"], dtype=float))
                        for g, w in meta.get("ensemble", {}).items()}
        except OSError as err:
            raise ForecastError(f"{directory / FILE}: cannot be read ({err})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as err:  # edited or truncated by hand
            raise ForecastError(f"{directory / FILE}: unreadable ({type(err).__name__}: {err}); "
                                f"refit to save the model again") from None
        config = RunConfig.from_yaml(directory / CONFIG)
        models, widths, reasons = {}, {}, {}
        for base in (combination.NAME, *names):
            folder = directory if base == combination.NAME else directory / base
            widths[base], missing = intervals.read(folder)
            reasons |= {g: why for g, why in (missing or {}).items() if _base(chosen.get(g)) == base}
            if base != combination.NAME:
                models[base] = NeuralEstimator.load(folder) if (folder / META).is_file() else registry.build(base, config)
        return cls(config, chosen, models, widths, ensemble, meta.get("freq"), directory, reasons)

    def predictions(self, panel: Panel, horizon: int) -> list[Prediction]:
        """Each chosen model's (or variant's) ranged forecast of the products of the groups it was chosen
        for, the ensemble's of its groups (its members forecast all theirs; only the weighted sum is kept)."""
        out, predictions = [], {}
        for base, model in self.models.items():
            if not hasattr(model, "save"):  # a local model: its fit is part of forecasting new data
                model.fit(panel, horizon)
            prediction = predictions[base] = model.predict(panel, horizon)
            for group, name in self.chosen.items():
                if _base(name) == base:
                    chosen = registry.forecast_as(prediction, name)
                    ranged = intervals.with_range(chosen, panel.has_history[chosen.item_index], self.widths[base])
                    out.append(ranged.for_groups(panel.has_history, [group]))
        for group, weights in self.ensemble.items():
            combined = combination.combine(panel, predictions, group, weights)
            out.append(intervals.with_range(combined, panel.has_history[combined.item_index],
                                            self.widths[combination.NAME]))
        return out

    def forecast(self, panel: Panel, cfg: RunConfig, horizon: int | None = None, source: str = "the data") -> pd.DataFrame:
        """The export's rows for ``panel``, as :meth:`SavedModel.forecast` gives them for one model."""
        where = self.directory or "the fitted Forecaster"
        horizon = checked_request(where, self.config.evaluation.horizon, self.freq, panel, horizon, source)
        for base, model in self.models.items():
            if hasattr(model, "checked_inputs"):  # a neural model: the columns it was trained with
                panel = model.checked_inputs(panel, source, where if self.directory is None else self.directory / base)
        predictions = self.predictions(panel, horizon)
        warn_missing_ranges(self.unranged(), panel, predictions)
        return forecast_frame(panel, predictions, cfg.neural.trend_window, cfg.output.trend_threshold)

    def unranged(self) -> dict[str, str]:
        """Per item group whose chosen model has no range for it, why (as saved, else as known here)."""
        return {g: self.reasons.get(g, f"{name} was not scored on {g} products in the backtest (it needs two or "
                                       f"more folds, and the ensemble two or more members), so the fit's export "
                                       f"had no range for them either")
                for g, name in self.chosen.items() if g not in self.widths.get(_base(name), {})}

    def _unranged(self, base: str) -> dict[str, str]:
        """:meth:`unranged` of the groups ``base`` was chosen for: saved beside it, for predict to say."""
        return {g: why for g, why in self.unranged().items() if _base(self.chosen[g]) == base}


def _base(name: str | None) -> str | None:
    """The fitted model behind a chosen name (a variant's model; ``ensemble`` itself)."""
    return None if name is None else variant_name(name)[0]


def how_it_forecasts(base: str) -> str:
    """What a saved model holds and what it reads at predict time, in its folder's metadata."""
    if base in registry.NEURAL:
        return f"trained on the fitted data: its weights are in {base}/ and forecast as saved"
    if registry.MODELS[base].groups == frozenset({NEW}):
        return ("nothing learned is saved: forecasts each new product from the launch curves of the products "
                "predict is given that launched before the forecast starts; the ranges are the fit's")
    return ("local to each series: nothing learned is saved; predict refits it on the history of each series "
            "it is given; the ranges are the fit's")


def _link_files(source: Path, target: Path) -> None:
    """``target`` holding ``source``'s files: hard links (stored once), copies where links cannot be made."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, destination)
            except OSError:
                shutil.copy2(path, destination)


def load(directory: str | Path) -> SavedModel | Choice:
    """The saved model in ``directory``, of either kind (see the module docstring)."""
    from forecast.models.neural.estimator import META, WEIGHTS

    directory = Path(directory)
    if (directory / FILE).is_file():
        return Choice.load(directory)
    if not any((directory / name).is_file() for name in (META, WEIGHTS)):
        raise ForecastError(f"{directory}: not a saved model (no {FILE}, {META} or {WEIGHTS} in it); give the "
                            f"folder fit printed at its end, checkpoints/<run id>/<model>")
    return SavedModel.load(directory)


def checked_request(where: str | Path, trained_horizon: int, freq: str | None, panel: Panel,
                    horizon: int | None, source: str) -> int:
    """The horizon to forecast (default the trained one), or a ConfigError for a longer one or a
    DataError for data of other periods than the model's (``freq``; None: not checked)."""
    horizon = trained_horizon if horizon is None else horizon
    if horizon > trained_horizon:
        raise ConfigError(f"--horizon {horizon}: the model in {where} was trained for {trained_horizon} "
                          f"periods; give at most {trained_horizon}, or fit a model with --horizon {horizon}")
    if freq is not None and panel.freq != freq:
        raise DataError(f"{source}: the data's periods are {panel.freq} but the model in {where} "
                        f"was trained on {freq} periods; aggregate the sales to {freq} (or give "
                        f"--freq {freq}), or fit a model on this data")
    return horizon


def warn_missing_ranges(reasons: dict[str, str], panel: Panel, predictions: list[Prediction]) -> None:
    """Say plainly which forecast rows get no range, and why (``reasons``: per item group)."""
    history = np.concatenate([panel.has_history[p.item_index] for p in predictions] or [np.empty(0, bool)])
    for group, reason in reasons.items():
        rows = int(in_group(history, group).sum())
        if rows:
            log.warning("%d %s product(s) get no forecast range: %s", rows, group, reason)
