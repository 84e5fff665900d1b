"""Point-forecast accuracy metrics on [items, horizon] arrays.

NaN in ``actual`` marks a cell with no truth (e.g. past the end of the data) and
is ignored everywhere. Definitions (y = actual, f = forecast, e = f - y):

- MAE   = mean |e|
- RMSE  = sqrt(mean e²)
- WAPE  = Σ|e| / Σ|y|                      (scale-free, robust to zero weeks)
- MASE  = mean over items of MAE_i / s_i, s_i the in-sample MAE of the seasonal
          naive forecast (lag = season length; lag 1 when the history is shorter
          than a season + 1). Items with s_i = 0 or no history are left out.
- sMAPE = mean 2|e| / (|y| + |f|), a cell with y = f = 0 counting as 0
- bias  = Σe / Σ|y|                        (> 0: over-forecast)
"""

from __future__ import annotations

import numpy as np

METRICS = ("wape", "mase", "mae", "rmse", "smape", "bias")  # every metric, in the order tables show them


def mase_scale(history: np.ndarray, season_length: int) -> float:
    """In-sample MAE of the (seasonal) naive forecast; NaN when undefined."""
    history = np.asarray(history, dtype=float)
    lag = season_length if len(history) > season_length else 1
    if len(history) <= lag:
        return float("nan")
    return float(np.mean(np.abs(history[lag:] - history[:-lag])))


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def score(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray | None = None) -> dict[str, float]:
    """All metrics over every cell with truth. ``scale`` is the per-item MASE scale."""
    actual = np.asarray(actual, dtype=float)
    forecast = np.asarray(forecast, dtype=float)
    if actual.shape != forecast.shape:
        raise ValueError(f"actual {actual.shape} and forecast {forecast.shape} differ in shape")
    mask = ~np.isnan(actual)
    if not mask.any():
        return {m: float("nan") for m in METRICS} | {"n": 0}
    y, f = actual[mask], forecast[mask]
    err = f - y
    denom = np.abs(y) + np.abs(f)
    smape = np.divide(2 * np.abs(err), denom, out=np.zeros_like(err), where=denom > 0)
    result = {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "wape": _safe_div(np.abs(err).sum(), np.abs(y).sum()),
        "mase": float("nan"),
        "smape": float(np.mean(smape)),
        "bias": _safe_div(err.sum(), np.abs(y).sum()),
        "n": int(mask.sum()),
    }
    if scale is not None:
        result["mase"] = _mase(actual, forecast, np.asarray(scale, dtype=float))
    return result


def _mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> float:
    abs_err = np.abs(forecast - actual)
    counted = ~np.isnan(actual)
    item_mae = np.divide(
        np.where(counted, abs_err, 0).sum(axis=1), counted.sum(axis=1),
        out=np.full(len(actual), np.nan), where=counted.sum(axis=1) > 0,
    )
    ok = np.isfinite(item_mae) & np.isfinite(scale) & (scale > 0)
    return float(np.mean(item_mae[ok] / scale[ok])) if ok.any() else float("nan")


def score_by_step(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray | None = None) -> list[dict[str, float]]:
    """The metrics of each horizon step (column) separately."""
    return [
        score(actual[:, [h]], forecast[:, [h]], scale) for h in range(actual.shape[1])
    ]
