"""Forecast ranges from the backtest's own errors: split-conformal intervals, as statsforecast's
``ConformalIntervals`` builds them, for every model (neural or baseline) alike.

For a model, an item group (history / new) and a horizon step h, the backtest holds one
absolute error |actual - forecast| per scored item and fold. The half-width of the range at
level ``1 - a`` is the ``ceil((n + 1)(1 - a))``-th smallest of those n errors (the finite-sample
conformal quantile): if next period's errors behave like the backtest's, ``units ± half-width``
holds the actual with probability at least ``1 - a``. A range is symmetric around the point
forecast and clipped at zero (never negative units), which only raises its coverage.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from forecast.models.base import HISTORY, NEW, Prediction

FILE = "intervals.json"  # beside a saved model: the half-widths it was exported with


def conformal_quantile(errors: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile of absolute errors (NaN when there are none). With too
    few errors for the level (``(n + 1) * level > n``) the largest error is used: the range is then
    as wide as the backtest ever needed, and its nominal guarantee does not hold."""
    errors = np.sort(errors[np.isfinite(errors)])
    if errors.size == 0:
        return math.nan
    k = min(math.ceil((errors.size + 1) * level), errors.size)
    return float(errors[k - 1])


OUTLIER_FACTOR = 1000.0  # an error this many times the step's median error is clipped to it (robust_errors)


def half_widths(truth: list[np.ndarray], forecasts: list[np.ndarray], level: float) -> np.ndarray:
    """Per horizon step, the conformal quantile of |truth - forecast| pooled over the folds given
    (each a [items, H] array; NaN truth: a cell with no actual), absurd errors clipped (robust_errors)."""
    errors = np.abs(np.concatenate(truth) - np.concatenate(forecasts))
    return np.array([conformal_quantile(robust_errors(errors[:, h]), level) for h in range(errors.shape[1])])


def robust_errors(errors: np.ndarray) -> np.ndarray:
    """``errors`` clipped at OUTLIER_FACTOR x their median positive error (at least 1 unit): one product's
    absurd sales (a 1e12 typed for 12) must not widen every other product's range to 1e12. Ordinary
    errors, however heavy-tailed, stay far below the clip and keep their conformal quantile."""
    positive = errors[np.isfinite(errors) & (errors > 0)]
    if positive.size == 0:
        return errors
    return np.minimum(errors, OUTLIER_FACTOR * max(float(np.median(positive)), 1.0))


def bounds(units: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the range around ``units`` [m, H] with per-step half-widths [H]."""
    return np.maximum(units - width, 0.0), units + width


def leave_one_fold_out(truth: list[np.ndarray], forecasts: list[np.ndarray],
                       level: float) -> tuple[float, float]:
    """(coverage, mean width) of the ranges, each fold's ranges calibrated on the other folds.

    Leave-one-fold-out, not the pooled folds: calibrating on the very errors a range is then scored
    on would report the nominal level by construction, whatever the model. Holding each fold out
    measures what the export promises, a range calibrated on past errors covering new ones. With one
    fold there is nothing to hold out, and both are NaN.
    """
    if len(truth) < 2:
        return math.nan, math.nan
    inside = widths = cells = 0.0
    for k in range(len(truth)):
        rest = [i for i in range(len(truth)) if i != k]
        width = half_widths([truth[i] for i in rest], [forecasts[i] for i in rest], level)
        lower, upper = bounds(forecasts[k], width)
        scored = np.isfinite(truth[k]) & np.isfinite(width)[None, :]
        inside += float(((truth[k] >= lower) & (truth[k] <= upper))[scored].sum())
        widths += float((upper - lower)[scored].sum())
        cells += float(scored.sum())
    return (inside / cells, widths / cells) if cells else (math.nan, math.nan)


def with_range(prediction: Prediction, has_history: np.ndarray, widths: dict[str, np.ndarray]) -> Prediction:
    """The prediction with ``lower``/``upper`` set from its group's half-widths (``has_history``: per row
    of the prediction; a group without calibration gets NaN bounds)."""
    h = prediction.horizon
    width = np.full((len(prediction.item_index), h), np.nan)
    for group, rows in ((HISTORY, has_history), (NEW, ~has_history)):
        if group in widths:
            width[rows] = np.asarray(widths[group], dtype=float)[:h]
    lower, upper = bounds(prediction.units, width)
    return replace(prediction, lower=lower, upper=upper)  # a copy: the caller's prediction is left as it was


def save(directory: Path, level: float, widths: dict[str, np.ndarray]) -> None:
    """The half-widths a model's export used, so ``predict`` with the saved model gives the same ranges."""
    data = {"level": level, "half_width": {g: [float(v) for v in w] for g, w in widths.items()}}
    (Path(directory) / FILE).write_text(json.dumps(data, indent=2))


def load(directory: Path) -> dict[str, np.ndarray]:
    """The half-widths saved beside a model ({} for a model saved without them)."""
    path = Path(directory) / FILE
    if not path.is_file():
        return {}
    return {g: np.array(w, dtype=float) for g, w in json.loads(path.read_text())["half_width"].items()}
