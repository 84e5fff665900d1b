"""The baselines behind the common Forecaster interface.

Statistical models forecast items with history, one series at a time (see
``statistical.py``); the description-kNN forecasts new items from the launch
curves of the most similar existing products (see ``knn.py``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from forecast.config import RunConfig
from forecast.data.panel import Panel
from forecast.forecaster import HISTORY, NEW, Forecast, carried_price, forecast_targets


class StatisticalForecaster:
    """One statsmodels (or simple) model fitted per series, in parallel, with fallbacks."""

    groups = frozenset({HISTORY})

    def __init__(self, name: str, config: RunConfig):
        self.name = name
        self.config = config
        self.fallbacks: Counter[str] = Counter()

    def fit(self, panel: Panel, horizon: int) -> None:
        """Nothing to learn globally: each series is fitted when forecast."""

    def predict(self, panel: Panel, horizon: int) -> Forecast:
        from forecast.baselines.statistical import forecast_many

        rows, start = forecast_targets(panel, self.groups)
        batch = forecast_many(
            [panel.history(i) for i in rows], horizon, panel.season_length, self.name,
            n_jobs=self.config.baselines.n_jobs, progress=self.config.train.progress,
            moving_average_window=self.config.baselines.moving_average_window,
        )
        self.fallbacks = Counter(record.used for record in batch.fallbacks)  # logged by forecast_many
        return Forecast(self.name, rows, start, batch.values, carried_price(panel, rows, horizon))


class KnnForecaster:
    """New products: the average launch curve of the k most similar products by description."""

    name = "knn"
    groups = frozenset({NEW})

    def __init__(self, config: RunConfig):
        self.config = config

    def fit(self, panel: Panel, horizon: int) -> None:
        """Nothing to fit: the references are read from the panel at predict time."""

    def predict(self, panel: Panel, horizon: int) -> Forecast:
        from forecast.baselines.knn import knn_launch_forecast
        from forecast.encoders.text import embed_texts

        rows, start = forecast_targets(panel, self.groups)
        if len(rows) == 0:
            return Forecast(self.name, rows, start, np.zeros((0, horizon)))
        reference = launched_items(panel)
        curves = panel.window(reference, panel.start[reference], horizon)
        embeddings = embed_texts(panel.descriptions, self.config.neural.text_encoder, self.config.neural.max_tokens)
        values = knn_launch_forecast(embeddings[rows], embeddings[reference], curves,
                                     k=self.config.baselines.knn_neighbours)
        return Forecast(self.name, rows, start, values, carried_price(panel, rows, horizon))


def launched_items(panel: Panel) -> np.ndarray:
    """Items whose launch the data saw (series starting after the first period).

    A series that starts in the very first period may have been selling long before
    the data begins, so its first weeks are no launch curve; it is used only when
    too few launches were observed.
    """
    launched = np.flatnonzero(panel.has_history & (panel.start > 0))
    return launched if len(launched) >= 10 else np.flatnonzero(panel.has_history)
