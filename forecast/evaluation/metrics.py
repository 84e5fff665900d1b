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

Forecast ranges (l, u) at level 1 − a, e.g. 80 % (a = 0.2):

- coverage       = share of cells with l ≤ y ≤ u
- interval_width = mean (u − l)
- MSIS  = mean over cells of [(u − l) + (2/a)(l − y)⁺ + (2/a)(y − u)⁺] / s_i (M4's scaled interval
          score: width plus a penalty for every unit outside; s_i the MASE scale, so items without
          history, which have none, are left out)
- WQL   = mean over the ranges' quantile levels q of 2 Σ ρ_q(y, ŷ_q) / Σ|y|, ρ_q the pinball loss
          (GluonTS' weighted quantile loss, as fev-bench and GIFT-Eval report it, here over the
          bounds of the ranges asked for: 0.1 and 0.9 for an 80 % range)
"""

from __future__ import annotations

import numpy as np

METRICS = ("wape", "mase", "mae", "rmse", "smape", "bias")  # every metric, in the order tables show them
INTERVAL_METRICS = ("coverage", "interval_width", "msis", "wql")  # of the forecast ranges (forecast.evaluation.intervals)
BANDS = ("q1", "q2", "q3", "q4", "q5", "top5")  # volume bands: quintiles of forecast level, and the top 5 %


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


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of the cells with truth whose actual lies inside [lower, upper] (NaN: none scored)."""
    scored = np.isfinite(actual) & np.isfinite(lower) & np.isfinite(upper)
    inside = (actual >= lower) & (actual <= upper)
    return float(inside[scored].mean()) if scored.any() else float("nan")


def interval_width(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Mean width of the ranges over the cells with truth."""
    scored = np.isfinite(actual) & np.isfinite(lower) & np.isfinite(upper)
    return float((upper - lower)[scored].mean()) if scored.any() else float("nan")


def msis(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float, scale: np.ndarray) -> float:
    """Mean scaled interval score of ranges at ``level`` (``scale``: per row, the MASE scale)."""
    alpha = 1 - level
    penalty = (2 / alpha) * (np.maximum(lower - actual, 0) + np.maximum(actual - upper, 0))
    scale = np.asarray(scale, dtype=float)[:, None]
    ok = np.isfinite(actual) & np.isfinite(lower) & np.isfinite(upper) & np.isfinite(scale) & (scale > 0)
    scaled = np.divide(upper - lower + penalty, scale, out=np.zeros(ok.shape), where=ok)
    return float(scaled[ok].mean()) if ok.any() else float("nan")


def wql(actual: np.ndarray, quantiles: dict[float, np.ndarray]) -> float:
    """Weighted quantile loss of forecast quantiles {q: [items, H]} (the mean over the q given)."""
    losses = []
    for q, value in quantiles.items():
        scored = np.isfinite(actual) & np.isfinite(value)
        y, f = actual[scored], value[scored]
        pinball = np.maximum(q * (y - f), (q - 1) * (y - f))
        losses.append(_safe_div(2 * pinball.sum(), np.abs(y).sum()))
    return float(np.mean(losses)) if losses else float("nan")


def volume_bands(level: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks of the volume bands: quintiles of ``level`` (an item's forecast level; ties split by
    position, so the bands are equal in size) and the top 5 %, which lies inside the top quintile."""
    rank = np.argsort(np.argsort(level, kind="stable"), kind="stable") / max(len(level), 1)
    masks = {f"q{k + 1}": (rank >= k / 5) & (rank < (k + 1) / 5) for k in range(5)}
    return masks | {"top5": rank >= 0.95}
