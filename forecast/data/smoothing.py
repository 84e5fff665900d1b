"""Smoothing of series on the grid, below everything that uses it.

The centred moving average is the one definition of the *trend*: the neural models'
trend target (:mod:`forecast.models.neural.features`) and the export's trend column
(:mod:`forecast.outputs.trends`) both use it.
"""

from __future__ import annotations

import numpy as np


def centred_moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` periods along the last axis, NaNs ignored, shrinking at the ends.

    The one definition of the trend: the neural models' trend target and the
    export's trend column both use it. A NaN input cell stays NaN.
    """
    values = np.asarray(values, dtype=float)
    units = np.atleast_2d(values)
    filled = np.nan_to_num(units, nan=0.0)
    counts = np.isfinite(units).astype(float)
    half_lo, half_hi = window // 2, window - window // 2 - 1
    pad = lambda a: np.pad(a, ((0, 0), (half_lo + 1, half_hi)))  # noqa: E731
    cs_v, cs_c = np.cumsum(pad(filled), axis=1), np.cumsum(pad(counts), axis=1)
    total = cs_v[:, window:] - cs_v[:, :-window]
    n = cs_c[:, window:] - cs_c[:, :-window]
    out = np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)
    return np.where(np.isfinite(units), out, np.nan).reshape(values.shape)
