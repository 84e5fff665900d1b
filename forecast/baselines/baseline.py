"""The baselines behind the common Model interface.

Statistical models forecast items with history, one series at a time (see
``statistical.py``); the description-kNN forecasts new items from the launch
curves of the most similar existing products (see ``knn.py``).
"""

from __future__ import annotations

import numpy as np

from forecast.baselines.knn import knn_launch_forecast
from forecast.baselines.statistical import SeriesModel, forecast_many
from forecast.data.panel import Panel
from forecast.models.base import Prediction, carried_price, forecast_targets


class StatisticalBaseline:
    """One configured per-series model (with its fallback chain) fitted per series, in parallel."""

    def __init__(self, name: str, groups: frozenset[str], model: SeriesModel, n_jobs: int, progress: bool,
                 engine: str = "local", scheduler: str | None = None):
        self.name, self.model, self.n_jobs, self.progress = name, model, n_jobs, progress
        self.engine, self.scheduler = engine, scheduler  # where the series run (statistical.series_executor)
        self.groups = groups  # the item groups its registry entry serves

    def fit(self, panel: Panel, horizon: int) -> None:
        """Nothing to learn globally: each series is fitted when forecast."""

    def predict(self, panel: Panel, horizon: int) -> Prediction:
        rows, start = forecast_targets(panel, self.groups)
        batch = forecast_many([panel.history(i) for i in rows], horizon, panel.season_length, self.model,
                              n_jobs=self.n_jobs, progress=self.progress, engine=self.engine,
                              scheduler=self.scheduler)  # logs the fallbacks it counted
        return Prediction(self.name, rows, start, batch.values, carried_price(panel, rows, horizon))


class KnnBaseline:
    """New products: the average launch curve of the k most similar products by description."""

    def __init__(self, name: str, groups: frozenset[str], neighbours: int, text_encoder: str | None, max_tokens: int):
        self.name, self.neighbours, self.text_encoder, self.max_tokens = name, neighbours, text_encoder, max_tokens
        self.groups = groups  # the item groups its registry entry serves

    def fit(self, panel: Panel, horizon: int) -> None:
        """Nothing to fit: the references are read from the panel at predict time."""

    def predict(self, panel: Panel, horizon: int) -> Prediction:
        from forecast.encoders.text import embed_texts

        rows, start = forecast_targets(panel, self.groups)
        if len(rows) == 0:
            return Prediction(self.name, rows, start, np.zeros((0, horizon)))
        reference = launched_items(panel)
        curves = panel.window(reference, panel.start[reference], horizon)
        embeddings = embed_texts(panel.descriptions, self.text_encoder, self.max_tokens)
        values = knn_launch_forecast(embeddings[rows], embeddings[reference], curves, k=self.neighbours)
        return Prediction(self.name, rows, start, values, carried_price(panel, rows, horizon))


def launched_items(panel: Panel) -> np.ndarray:
    """Items whose launch the data saw (series starting after the first period).

    A series that starts in the very first period may have been selling long before
    the data begins, so its first weeks are no launch curve; it is used only when
    too few launches were observed.
    """
    launched = np.flatnonzero(panel.has_history & (panel.start > 0))
    return launched if len(launched) >= 10 else np.flatnonzero(panel.has_history)
