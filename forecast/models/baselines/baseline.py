"""The baselines behind the common Model interface.

Statistical models forecast items with history, one series at a time (see
``statistical.py``); the description-kNN forecasts new items from the launch
curves of the most similar existing products (see ``knn.py``), the launch-curve
reference forecasts every new item with the mean launch curve of all of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.models.baselines.knn import knn_launch_forecast
from forecast.models.baselines.statistical import SeriesModel, forecast_many
from forecast.data.panel import Panel, attribute_columns
from forecast.core.errors import DataError
from forecast.models.base import Prediction, carried_price, forecast_targets
from forecast.models.retrieval import ATTRIBUTE_PRIOR, mean_launch_curve


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
        return Prediction(self.name, rows, start, batch.values, carried_price(panel, rows, horizon),
                          stand_in=batch.stand_in())


class LaunchBaseline:
    """New products forecast from the launch curves of the products launched before them.

    The shared frame of the kNN and the launch-curve reference: which products are
    forecast, which ones serve as references (:func:`launched_items`) and their first
    ``horizon`` periods from launch (NaN where the data ends first); a subclass says
    how the curves become each new product's forecast (:meth:`forecast_launches`).
    """

    def __init__(self, name: str, groups: frozenset[str]):
        self.name = name
        self.groups = groups  # the item groups its registry entry serves

    def fit(self, panel: Panel, horizon: int) -> None:
        """Nothing to fit: the references are read from the panel at predict time."""

    def predict(self, panel: Panel, horizon: int) -> Prediction:
        rows, start = forecast_targets(panel, self.groups)
        if len(rows) == 0:  # still every variant: fit may have chosen one on the backtest
            empty = np.zeros((0, horizon))
            return Prediction(self.name, rows, start, empty, variants=dict.fromkeys(self.variant_labels(panel), empty))
        reference = launched_items(panel)
        if len(reference) == 0:
            raise DataError(f"{self.name}: none of the {panel.n_items} products sold before "
                            f"{panel.date_at(panel.n_periods)[0].date()}, so there is no launch curve to "
                            f"forecast the {len(rows)} new product(s) from")
        curves = panel.window(reference, panel.start[reference], horizon)
        values = self.forecast_launches(panel, rows, reference, curves)
        return Prediction(self.name, rows, start, values, carried_price(panel, rows, horizon),
                          variants=self.variants(panel, rows, reference, curves))

    def forecast_launches(self, panel: Panel, rows: np.ndarray, reference: np.ndarray,
                          curves: np.ndarray) -> np.ndarray:
        """[len(rows), horizon] forecasts of the new products ``rows`` from the reference ``curves``."""
        raise NotImplementedError

    def variant_labels(self, panel: Panel) -> tuple[str, ...]:
        """The labels of the prediction variants this panel gets (the backtest scores each as ``name:label``)."""
        return ()

    def variants(self, panel: Panel, rows: np.ndarray, reference: np.ndarray,
                 curves: np.ndarray) -> dict[str, np.ndarray]:
        """The prediction variants: label -> [len(rows), horizon], one per :meth:`variant_labels`."""
        return {}

    def use_variant(self, label: str) -> None:
        """Nothing to remember when fit chooses a variant: a baseline is not saved, and the export takes
        the variant's forecast from the prediction."""


class KnnBaseline(LaunchBaseline):
    """New products: the average launch curve of the k most similar products by description."""

    def __init__(self, name: str, groups: frozenset[str], neighbours: int, text_encoder: str | None,
                 max_tokens: int):
        super().__init__(name, groups)
        self.neighbours, self.text_encoder, self.max_tokens = neighbours, text_encoder, max_tokens

    def forecast_launches(self, panel: Panel, rows: np.ndarray, reference: np.ndarray,
                          curves: np.ndarray) -> np.ndarray:
        from forecast.models.encoders.text import embed_texts

        embeddings = embed_texts(panel.descriptions, self.text_encoder, self.max_tokens)
        return knn_launch_forecast(embeddings[rows], embeddings[reference], curves, k=self.neighbours)


class LaunchCurveBaseline(LaunchBaseline):
    """New products: the training products' mean launch curve, the same curve for every new product.

    The reference a launch model has to beat (on VISUELLE's newest season it beat the
    description models): what a planner gets from a spreadsheet average of past launches.
    The curve is :func:`knn.mean_launch_curve` over :func:`launched_items`, i.e. the kNN
    baseline with every launched product as a neighbour; a step none of them reached
    before the origin is 0, as in the kNN.
    """

    def forecast_launches(self, panel: Panel, rows: np.ndarray, reference: np.ndarray,
                          curves: np.ndarray) -> np.ndarray:
        return np.repeat(np.nan_to_num(mean_launch_curve(curves))[None, :], len(rows), axis=0)

    def variant_labels(self, panel: Panel) -> tuple[str, ...]:
        """``attributes`` (per-attribute curves) when the products table has attribute columns."""
        return ("attributes",) if attribute_columns(panel.products) else ()

    def variants(self, panel: Panel, rows: np.ndarray, reference: np.ndarray,
                 curves: np.ndarray) -> dict[str, np.ndarray]:
        if not self.variant_labels(panel):
            return {}
        values = panel.products[attribute_columns(panel.products)]
        return {"attributes": attribute_launch_curves(values, rows, reference, curves)}


def attribute_launch_curves(values: pd.DataFrame, rows: np.ndarray, reference: np.ndarray, curves: np.ndarray,
                            prior: float = ATTRIBUTE_PRIOR) -> np.ndarray:
    """[len(rows), horizon]: per attribute column, the mean launch curve of the references with the row's
    value, shrunk toward the overall curve (:func:`knn.mean_launch_curve`) with the weight of ``prior``
    references, so a rare value says little and a value no reference had (next season) gives the overall
    curve; the columns' curves are averaged. The neural ``attribute_curves`` feature's shrinkage, as a forecast.
    """
    overall = np.nan_to_num(mean_launch_curve(curves))
    seen = np.isfinite(curves)
    filled = np.where(seen, curves, 0.0)
    out = np.zeros((len(rows), curves.shape[1]))
    for column in values.columns:
        codes = pd.factorize(values[column].astype(str))[0]
        sums = np.zeros((codes.max() + 1, curves.shape[1]))
        counts = np.zeros_like(sums)
        np.add.at(sums, codes[reference], filled)
        np.add.at(counts, codes[reference], seen)
        out += (sums[codes[rows]] + prior * overall) / (counts[codes[rows]] + prior)
    return out / values.shape[1]


def launched_items(panel: Panel) -> np.ndarray:
    """Items whose launch the data saw (series starting after the first period).

    A series that starts in the very first period may have been selling long before
    the data begins, so its first weeks are no launch curve; it is used only when
    too few launches were observed.
    """
    launched = np.flatnonzero(panel.has_history & (panel.start > 0))
    return launched if len(launched) >= 10 else np.flatnonzero(panel.has_history)
