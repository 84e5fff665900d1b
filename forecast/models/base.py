"""The one interface every model answers, statistical or neural.

Backtest, export and tracking only ever call :meth:`Model.fit` and
:meth:`Model.predict`, so they never ask which kind of model they hold.

Which periods are forecast: for a product with history (a sales row inside the
panel), the ``horizon`` periods right after the panel's last period; for a new
product, the ``horizon`` periods from its launch (``start``), wherever that lies.
A product whose series ends (``Panel.end``) before its first forecast period is
not forecast; periods from its end on are dropped from the export.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import pandas as pd

from forecast.data.panel import Panel

HISTORY, NEW = "history", "new"
BOTH_GROUPS = frozenset({HISTORY, NEW})


@dataclass
class Prediction:
    """A model's forecast for some of the panel's items."""

    model: str
    item_index: np.ndarray  # [m] rows of the panel
    start: np.ndarray  # [m] grid position of the first forecast period
    units: np.ndarray  # [m, horizon]
    price: np.ndarray | None = None  # [m, horizon]
    trend: np.ndarray | None = None  # [m, horizon] seasonal trend of units (see forecast.outputs.trends)
    # label -> units [m, horizon]: the same fitted model forecasting with one predict-time setting
    # changed, e.g. {"average_text_new": ...}. The backtest scores each as the model "name:label", so a
    # setting that only changes predictions is chosen on the backtest like a model, at no training cost.
    variants: dict[str, np.ndarray] = field(default_factory=dict)
    # quantile (0.1, 0.9, ...) -> units [m, horizon]: the forecast ranges' bounds, set from the backtest
    # (forecast.evaluation.intervals); exported as units_p10, units_p90, ...
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)
    # the model that forecast every row in this model's place (its fallback, e.g. "naive" for a
    # seasonal_naive with less than a season of history), None when it forecast any row itself
    stand_in: str | None = None

    @property
    def horizon(self) -> int:
        return self.units.shape[1]

    def select(self, mask: np.ndarray) -> "Prediction":
        """Only the rows where mask is true."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return Prediction(self.model, self.item_index[mask], self.start[mask], self.units[mask],
                          pick(self.price), pick(self.trend), {k: v[mask] for k, v in self.variants.items()},
                          {q: v[mask] for q, v in self.quantiles.items()})

    def for_groups(self, has_history: np.ndarray, groups: list[str]) -> "Prediction":
        """Only the rows of products in ``groups`` (``has_history``: the panel's, per item)."""
        return self.select(np.isin(group_of(has_history[self.item_index]), groups))

    def variant(self, label: str | None) -> "Prediction":
        """The forecast of variant ``label`` (None: this one), named ``model:label``."""
        if label is None:
            return self
        return replace(self, model=f"{self.model}:{label}", units=self.variants[label], variants={})


def group_of(has_history: np.ndarray) -> np.ndarray:
    """Each item's group: HISTORY where it has history, else NEW (the one definition of the split)."""
    return np.where(has_history, HISTORY, NEW)


def in_group(has_history: np.ndarray, group: str) -> np.ndarray:
    """The mask of the items in ``group`` (``has_history``: per item), by :func:`group_of`."""
    return group_of(has_history) == group


def variant_name(name: str) -> tuple[str, str | None]:
    """("fusion", "average_text_new") for "fusion:average_text_new"; (name, None) for a plain model name."""
    base, _, label = name.partition(":")
    return base, label or None


class Model(Protocol):
    name: str
    groups: frozenset[str]  # which items it forecasts: {"history"}, {"new"} or both

    def fit(self, panel: Panel, horizon: int) -> None:
        """Learn from everything the panel knows (nothing after its last period)."""

    def predict(self, panel: Panel, horizon: int) -> Prediction:
        """Forecast every item of the supported groups (see module docstring)."""


def forecast_targets(panel: Panel, groups: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """(item rows, first forecast period) of the items a model with these groups forecasts."""
    history = panel.has_history
    wanted = np.isin(group_of(history), list(groups))
    rows = np.flatnonzero(wanted & panel.forecastable)
    start = np.where(history[rows], panel.n_periods, panel.start[rows])
    return rows, start


def carried_price(panel: Panel, rows: np.ndarray, horizon: int) -> np.ndarray | None:
    """The default price plan, held flat: the last known price, or for a new product
    the ``price`` column of the products table when it has one (else NaN)."""
    planned = "price" in panel.products
    if panel.price is None and not planned:
        return None
    last = np.full(len(rows), np.nan)
    has = panel.has_history[rows]
    if panel.price is not None:
        last[has] = panel.price[rows[has], -1]
    if planned:
        listed = pd.to_numeric(panel.products["price"], errors="coerce").to_numpy(dtype=float)[rows]
        last = np.where(np.isnan(last), listed, last)
    return np.repeat(last[:, None], horizon, axis=1)
