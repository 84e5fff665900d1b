"""New products from their attributes: gradient-boosted trees over the launches the data saw.

On VISUELLE's newest season a LightGBM on the tag one-hots beat every description model of
the package (``experiments/results/chosen.md``): what a product *is* (category, colour,
fabric) carries to the next season, where what the network learned about individual
descriptions does not. This is that model on scikit-learn's ``HistGradientBoostingRegressor``:

- one training row per reference product (:func:`launched_items`) and step since its launch,
  the target its units at that step (steps its data did not reach are left out);
- features: its attribute values as one-hot indicators (values fewer than two references had are
  pooled; a value no reference had, such as next season's name, sets none), the step since launch
  and, when the references' launches span a season (a year of weeks), the launch week of the year
  (sine, cosine). One-hots rather than the trees' native categories: on VISUELLE's validation
  origins both scored alike (0.695 and 0.692 WAPE) and the native ones under-forecast by 11 %.
  Within less than a year each launch week is one cohort, not a season, and Online Retail's
  validation origins (under a year of data, no attribute columns) showed it: WAPE 1.47 with the
  week, 1.46 with the descriptions' 200 commonest words as stand-in attributes (1.28 without the
  week), against 1.08 for the mean launch curve. So a table without attribute columns gets a
  Poisson fit of the step alone, the mean launch curve again (1.08), and the backtest prefers
  the models that read the descriptions (``experiments/results/ablations.md``, round 8);
- with ``--signals`` (e.g. VISUELLE's weekly Google Trends per tag word), three more: the product's signals
  over the year before its launch, over its last 8 weeks, and the highest recent one (:func:`trend_features`;
  only values dated before the launch, and in a backtest before the cut-off). On VISUELLE's validation
  origins they took the model from 0.695 to 0.680 WAPE, better at each origin (ablations round 9);
- Poisson loss: a log-link model of counts, so the forecast is never negative and its mean
  follows the data's (squared error on counts this skewed chases the best sellers).

Deterministic: no subsampling and no early stopping, so every seed gives the same forecast.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from forecast.data.panel import Panel, attribute_columns
from forecast.data.signals import signal_windows
from forecast.models.baselines.baseline import LaunchBaseline

VALUES = 64  # one-hot columns per attribute at most (the rarest values pooled): bounded by any catalogue
TREES = dict(loss="poisson", learning_rate=0.05, max_iter=300, max_leaf_nodes=31, min_samples_leaf=20,
             l2_regularization=1.0, early_stopping=False)  # the LightGBM peer's settings (peers/new_models.py)
TREND_WEEKS, RECENT_WEEKS = 52, 8  # with --signals: a year before launch (as GTM-Transformer reads), its last 2 months
TREND_BLOCK = 256  # products per signal window in trend_features (bounds its memory)


class LaunchBoosting(LaunchBaseline):
    """New products: boosted trees on attributes, step since launch and launch week (module docstring)."""

    def forecast_launches(self, panel: Panel, rows: np.ndarray, reference: np.ndarray,
                          curves: np.ndarray) -> np.ndarray:
        from sklearn.ensemble import HistGradientBoostingRegressor

        encode, horizon, seen = product_encoder(panel, reference), curves.shape[1], np.isfinite(curves)
        weeks = np.ptp(panel.start[reference]) >= panel.season_length  # launch week: a season, not a cohort
        train = step_rows(panel, encode, reference, horizon, weeks)[seen.ravel()]
        known = np.isfinite(train).any(axis=0)  # a feature no training row has (no signal before any launch)
        trees = HistGradientBoostingRegressor(random_state=0, **TREES)
        trees.fit(train[:, known], curves[seen])
        return trees.predict(step_rows(panel, encode, rows, horizon, weeks)[:, known]).reshape(len(rows), horizon)


def product_encoder(panel: Panel, reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """rows -> [len(rows), F] product features, learned on the references: attribute one-hots (at most
    VALUES per column; none without attribute columns), then the trend features (none without ``--signals``)."""
    from sklearn.preprocessing import OneHotEncoder

    columns = attribute_columns(panel.products)
    if not columns:
        return lambda rows: trend_features(panel, rows)
    values = panel.products[columns].astype(str)
    onehot = OneHotEncoder(handle_unknown="ignore", min_frequency=2, max_categories=VALUES, sparse_output=False)
    onehot.fit(values.iloc[reference])
    return lambda rows: np.column_stack([onehot.transform(values.iloc[rows]).astype(float), trend_features(panel, rows)])


def step_rows(panel: Panel, encode: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, horizon: int,
              weeks: bool) -> np.ndarray:
    """[len(rows) * horizon, F (+ 2) + 1]: each product's features, with ``weeks`` its launch week of the
    year as sine and cosine, then the step since launch; product-major (row r's steps: r*H .. r*H + H - 1)."""
    per_item = encode(rows)
    if weeks:
        week = panel.date_at(panel.start[rows]).isocalendar().week.to_numpy(dtype=float) if len(rows) else np.zeros(0)
        angle = 2 * np.pi * week / 52.18
        per_item = np.column_stack([per_item, np.sin(angle), np.cos(angle)])
    steps = np.tile(np.arange(horizon, dtype=float), len(rows))
    return np.column_stack([np.repeat(per_item, horizon, axis=0), steps])


def trend_features(panel: Panel, rows: np.ndarray) -> np.ndarray:
    """[len(rows), 3]: with ``--signals``, the mean of the product's signals (those of its attribute values
    and words) over the TREND_WEEKS before its launch, over the last RECENT_WEEKS before it, and its highest
    signal's recent mean; NaN where none is known, which the trees treat as missing. [len(rows), 0] without."""
    if panel.signals is None:
        return np.zeros((len(rows), 0))
    rows = np.asarray(rows, dtype=int)
    # in blocks of products: one window is [products, weeks, every signal], 170 MB for VISUELLE's 4,300 launches
    return np.concatenate([_trend_block(panel, rows[k:k + TREND_BLOCK]) for k in range(0, len(rows), TREND_BLOCK)]
                          or [np.zeros((0, 3))])


def _trend_block(panel: Panel, rows: np.ndarray) -> np.ndarray:
    """trend_features of a block of products."""
    window = signal_windows(panel.signals, rows, panel.start[rows], TREND_WEEKS)  # [B, weeks, S], before launch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a product with no known signal: all-NaN means
        recent = np.nanmean(window[:, -RECENT_WEEKS:], axis=1)  # [B, S]
        return np.column_stack([np.nanmean(window, axis=(1, 2)), np.nanmean(recent, axis=1), np.nanmax(recent, axis=1)])
