"""A saved model's folder, read and written in one place: the model's own files (a neural model's
weights, config and metadata with their checksums) and the forecast ranges it was exported with.

``SavedModel.forecast`` is the one way a saved model forecasts: the ``predict`` verb and the MLflow
pyfunc flavour (forecast.serving) both call it, so the two cannot drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecast import intervals
from forecast.intervals import Calibration
from forecast.config import RunConfig
from forecast.data.panel import Panel
from forecast.errors import ConfigError, DataError
from forecast.export import forecast_frame

log = logging.getLogger("forecast.pipeline")


def save(model, directory: Path, levels: tuple[float, ...], calibrations: dict[str, Calibration]) -> Path:
    """A refitted model's folder: its own files (``model.save``) and the ranges it exports with."""
    saved = model.save(directory)
    intervals.save(saved, levels, calibrations)
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
        prediction = model.predict(panel, horizon)
        if not self.calibrations:
            log.warning("%s holds no forecast ranges (saved by an older version): the export has no range",
                        self.directory)
        ranged = intervals.with_range(prediction, panel.has_history[prediction.item_index], self.calibrations)
        return forecast_frame(panel, [ranged], cfg.neural.trend_window, cfg.output.trend_threshold)
