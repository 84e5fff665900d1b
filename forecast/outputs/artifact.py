"""A saved model's folder, read and written in one place: the model's own files (a neural model's
weights, config and metadata with their checksums) and the forecast ranges it was exported with.

``SavedModel.forecast`` is the one way a saved model forecasts: the ``predict`` verb and the MLflow
pyfunc flavour (forecast.tracking.serving) both call it, so the two cannot drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecast.evaluation import intervals
from forecast.evaluation.intervals import Calibration
from forecast.core.config import RunConfig
from forecast.data.panel import Panel
from forecast.core.errors import ConfigError, DataError
from forecast.outputs.export import forecast_frame
from forecast.core.files import disk_faults
from forecast.models.base import in_group

log = logging.getLogger("forecast.pipeline")


def save(model, directory: Path, levels: tuple[float, ...], calibrations: dict[str, Calibration],
         missing: dict[str, str] | None = None) -> Path:
    """A refitted model's folder: its own files (``model.save``) and the ranges it exports with
    (``missing``: for a group without a range, why; predict says it)."""
    saved = model.save(directory)
    with disk_faults(f"the forecast ranges of {saved}"):
        intervals.save(saved, levels, calibrations, missing)
    return saved


@dataclass
class SavedModel:
    """A neural model saved by ``fit``, with the calibration of its forecast ranges."""

    directory: Path
    model: object  # NeuralEstimator
    calibrations: dict[str, Calibration]

    @classmethod
    def load(cls, directory: str | Path) -> "SavedModel":
        """The model in ``directory``; a missing, corrupt or modified file is a ForecastError."""
        from forecast.models.neural.estimator import NeuralEstimator

        directory = Path(directory)
        return cls(directory, NeuralEstimator.load(directory), intervals.load(directory))

    def forecast(self, panel: Panel, cfg: RunConfig, horizon: int | None = None, source: str = "the data") -> pd.DataFrame:
        """The export's rows for ``panel``: ``horizon`` periods (default the trained horizon, never
        more), on data of the frequency the model was trained on (``source`` names the data in errors)."""
        model = self.model
        horizon = model.horizon if horizon is None else horizon
        if horizon > model.horizon:
            raise ConfigError(f"--horizon {horizon}: the model in {self.directory} was trained for {model.horizon} "
                              f"periods; give at most {model.horizon}, or fit a model with --horizon {horizon}")
        if panel.freq != model.freq:
            raise DataError(f"{source}: the data's periods are {panel.freq} but the model in {self.directory} "
                            f"was trained on {model.freq} periods; aggregate the sales to {model.freq} (or give "
                            f"--freq {model.freq}), or fit a model on this data")
        panel = model.checked_inputs(panel, source, self.directory)
        prediction = model.predict(panel, horizon)
        self._warn_missing_ranges(panel, prediction)
        ranged = intervals.with_range(prediction, panel.has_history[prediction.item_index], self.calibrations)
        return forecast_frame(panel, [ranged], cfg.neural.trend_window, cfg.output.trend_threshold)

    def _warn_missing_ranges(self, panel: Panel, prediction) -> None:
        """Say plainly which forecast rows get no range, and why."""
        reasons = intervals.missing_reasons(self.directory)
        if reasons is None:
            log.warning("%s holds no forecast ranges (saved by a version before they were kept): the export has "
                        "no range; refit to get them", self.directory)
            return
        history = panel.has_history[prediction.item_index]
        for group, reason in reasons.items():
            rows = int(in_group(history, group).sum())
            if rows:
                log.warning("%d %s product(s) get no forecast range: %s", rows, group, reason)
