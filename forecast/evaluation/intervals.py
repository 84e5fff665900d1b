"""Forecast ranges from the backtest's own errors: split-conformal intervals sized per item.

For a model, an item group (history / new) and a horizon step h, the backtest holds one error per
scored item and fold. Split-conformal prediction turns them into a range at level ``1 - a``: a
*conformity score* measures each error, its finite-sample conformal quantile q (the
``ceil((n + 1)(1 - a))``-th smallest of n scores) bounds the score of a new error with probability
at least ``1 - a``, and the range is every value whose score would be at most q.

One absolute error for every item (``absolute``, statsforecast's ``ConformalIntervals``) makes a
range as wide for an item forecast at 0.5 a week as for one at 300: too wide for slow sellers, far
too narrow for best sellers. The scores below are comparable across items, so one quantile per step
gives each item a range of its own size, and ``+bands`` calibrates separately within bands of
forecast level (Mondrian conformal prediction: each band keeps its own coverage):

- ``absolute``: |y − f|; range f ± q.
- ``sqrt``: |√y − √f| (the variance-stabilising scale of counts); range (√f ∓ q)², cut at 0.
- ``scaled``: |y − f| / (L + 1), L the item's mean forecast over the horizon; range f ± q(L + 1).
- ``<score>+bands``: the score's quantile per band of L (its quintiles, 80–95 % and the top 5 % of
  the calibration items); a band with too few errors at a step also takes its nearest bands'.

A new product's range is its group's calibrated scores mapped back at its own forecast level.
``choose`` picks the method per model and group from leave-one-fold-out scores
(:func:`held_out`): coverage in every volume band (:func:`worst_band_gap`), then the weighted
quantile loss; when no method holds in every band, ``scaled+bands`` (FALLBACK_METHOD).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from forecast.core.config import choices
from forecast.evaluation.metrics import coverage, volume_bands, wql
from forecast.models.base import HISTORY, NEW, Prediction, in_group

FILE = "intervals.json"  # beside a saved model: the calibration its export used
METHODS = tuple(m for m in choices("evaluation.interval_method") if m != "auto")
BAND_EDGES = (0.2, 0.4, 0.6, 0.8, 0.95)  # quantiles of forecast level between the calibration bands
MIN_BAND = 20  # errors per step a band needs for a quantile of its own
QUANTILE_COLUMN = re.compile(r"units_p(\d+(?:\.\d+)?)")  # units_p10: the forecast's 10 % quantile
TOLERANCE = 0.05  # largest gap from nominal coverage, in any volume band, that ``choose`` accepts
FALLBACK_METHOD = "scaled+bands"  # what ``choose`` takes when no method is within TOLERANCE in every band


def quantile_column(q: float) -> str:
    """The export's name of quantile ``q``: units_p10 for 0.1, units_p2.5 for 0.025."""
    return f"units_p{round(100 * q, 4):g}"


def range_columns(columns) -> tuple[str, str, float] | None:
    """(lower column, upper column, level) of the first range among an export's columns (units_p10
    with its partner units_p90: 0.8), or None when it has none: how ``trends`` reads the level."""
    for column in columns:
        match = QUANTILE_COLUMN.fullmatch(str(column))
        if match and float(match.group(1)) < 50:
            upper = quantile_column(1 - float(match.group(1)) / 100)
            if upper in columns:
                return column, upper, round(1 - 2 * float(match.group(1)) / 100, 6)
    return None


def conformal_quantile(errors: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile of scores (NaN when there are none). With too few scores
    for the level (``(n + 1) * level > n``) the largest is used: the range is then as wide as the
    backtest ever needed, and its nominal guarantee does not hold. Absurd scores are clipped first
    (:func:`robust_errors`)."""
    errors = np.sort(robust_errors(errors[np.isfinite(errors)]))
    if errors.size == 0:
        return math.nan
    k = min(math.ceil((errors.size + 1) * level), errors.size)
    return float(errors[k - 1])


def item_level(forecast: np.ndarray) -> np.ndarray:
    """Per row, the forecast's mean over the horizon (never below 0): what sizes its range."""
    finite = np.where(np.isfinite(forecast), np.maximum(forecast, 0.0), 0.0)
    count = np.isfinite(forecast).sum(axis=1)
    return np.divide(finite.sum(axis=1), count, out=np.zeros(len(forecast)), where=count > 0)


OUTLIER_FACTOR = 1000.0  # an error this many times the step's median error is clipped to it (robust_errors)


def robust_errors(errors: np.ndarray) -> np.ndarray:
    """``errors`` clipped at OUTLIER_FACTOR x their median positive error (at least 1 unit): one product's
    absurd sales (a 1e12 typed for 12) must not widen every other product's range to 1e12. Ordinary
    errors, however heavy-tailed, stay far below the clip and keep their conformal quantile."""
    positive = errors[np.isfinite(errors) & (errors > 0)]
    if positive.size == 0:
        return errors
    return np.minimum(errors, OUTLIER_FACTOR * max(float(np.median(positive)), 1.0))


def scores(score: str, truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """The conformity score of every cell [m, H] (NaN where there is no truth)."""
    if score == "sqrt":
        return np.abs(np.sqrt(np.maximum(truth, 0.0)) - np.sqrt(np.maximum(forecast, 0.0)))
    error = np.abs(truth - forecast)
    return error / (item_level(forecast) + 1.0)[:, None] if score == "scaled" else error


def bounds(score: str, forecast: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) [m, H]: the values whose score is at most q [m, H] around the forecast, cut at 0."""
    if score == "sqrt":
        root = np.sqrt(np.maximum(forecast, 0.0))
        return np.maximum(root - q, 0.0) ** 2, (root + q) ** 2
    half = q * (item_level(forecast) + 1.0)[:, None] if score == "scaled" else q
    return np.maximum(forecast - half, 0.0), forecast + half


@dataclass
class Calibration:
    """One model's ranges for one item group: how its scores are measured and their quantiles."""

    method: str  # one of METHODS
    edges: np.ndarray  # forecast levels between the bands (empty: one band)
    quantile: dict[float, np.ndarray]  # level -> [bands, H] conformal quantile of the score

    @property
    def score(self) -> str:
        return self.method.split("+")[0]

    def ranges(self, forecast: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """{level: (lower, upper)} [m, H] around a forecast [m, H] (NaN past the calibrated steps)."""
        band = np.searchsorted(self.edges, item_level(forecast), side="right")
        out = {}
        for level, q in self.quantile.items():
            steps = np.full((len(q), forecast.shape[1]), np.nan)
            steps[:, :min(q.shape[1], forecast.shape[1])] = q[:, :forecast.shape[1]]
            out[level] = bounds(self.score, forecast, steps[band])
        return out

    def to_json(self) -> dict:
        return {"method": self.method, "edges": self.edges.tolist(),
                "quantile": {str(level): q.tolist() for level, q in self.quantile.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        return cls(data["method"], np.array(data["edges"], dtype=float),
                   {float(level): np.array(q, dtype=float) for level, q in data["quantile"].items()})


def calibrate(method: str, truth: list[np.ndarray], forecasts: list[np.ndarray],
              levels: tuple[float, ...]) -> Calibration:
    """The conformal quantiles of ``method``'s scores pooled over the folds given (each a [items, H]
    array; NaN truth: a cell with no actual), per step and, with ``+bands``, per band of level."""
    truth_all, forecast_all = np.concatenate(truth), np.concatenate(forecasts)
    score = scores(method.split("+")[0], truth_all, forecast_all)
    level_of_item = item_level(forecast_all)
    edges = np.quantile(level_of_item, BAND_EDGES) if method.endswith("+bands") and len(level_of_item) else np.empty(0)
    band = np.searchsorted(edges, level_of_item, side="right")
    quantile = {level: np.array([[band_quantile(score[:, h], band, b, level) for h in range(score.shape[1])]
                                 for b in range(len(edges) + 1)]) for level in levels}
    return Calibration(method, edges, quantile)


def band_quantile(score: np.ndarray, band: np.ndarray, b: int, level: float) -> float:
    """The conformal quantile of band ``b``'s scores at one step. A band with fewer than MIN_BAND of them
    takes its nearest bands' too, one more on each side until they hold MIN_BAND (all bands: the pooled
    quantile): a thin top band borrows from the 80-95 % band, the items nearest its level, rather than
    from the pooled scores, most of them slow sellers'. New products thin it at the late steps: those
    launched in the backtest's last weeks have only their first weeks scored."""
    for reach in range(int(band.max(initial=0)) + 1):
        near = score[np.abs(band - b) <= reach]
        if np.isfinite(near).sum() >= MIN_BAND:
            return conformal_quantile(near, level)
    return conformal_quantile(score, level)


def held_out(method: str, truth: list[np.ndarray], forecasts: list[np.ndarray],
             levels: tuple[float, ...]) -> list[dict[float, tuple[np.ndarray, np.ndarray]]] | None:
    """Per fold, its ranges calibrated on the other folds (None with a single fold).

    Leave-one-fold-out, not the pooled folds: calibrating on the very errors a range is then scored
    on would report the nominal level by construction, whatever the model. Holding each fold out
    measures what the export promises, a range calibrated on past errors covering new ones.
    """
    if len(truth) < 2:
        return None
    ranges = []
    for k in range(len(truth)):
        rest = [i for i in range(len(truth)) if i != k]
        calibration = calibrate(method, [truth[i] for i in rest], [forecasts[i] for i in rest], levels)
        ranges.append(calibration.ranges(forecasts[k]))
    return ranges


def quantile_levels(levels: tuple[float, ...]) -> list[float]:
    """The quantiles the ranges' bounds are: (1 − level)/2 and (1 + level)/2 per level, in order."""
    return [q for level in levels for q in (round((1 - level) / 2, 6), round((1 + level) / 2, 6))]


def band_coverage(truth: np.ndarray, forecast: np.ndarray, ranges: dict[float, tuple[np.ndarray, np.ndarray]]
                  ) -> list[dict]:
    """Per level and volume band (metrics.volume_bands of the forecast's level): coverage, mean width,
    cells scored and the share of them that sold 0 (a range holding 0 covers those, whatever its
    level: a band of mostly-zero weeks is covered more often than nominal), pooled over the folds."""
    rows = []
    for band, mask in volume_bands(item_level(forecast)).items():
        for level, (lower, upper) in ranges.items():
            scored = np.isfinite(truth[mask]) & np.isfinite(lower[mask])
            rows.append({"band": band, "level": level, "n": int(scored.sum()),
                         "zero_share": float((truth[mask][scored] == 0).mean()) if scored.any() else math.nan,
                         "coverage": coverage(truth[mask], lower[mask], upper[mask]),
                         "mean_forecast": float(np.nanmean(forecast[mask])) if mask.any() else math.nan,
                         "width": float((upper - lower)[mask][scored].mean()) if scored.any() else math.nan})
    return rows


def stack(ranges: list[dict[float, tuple[np.ndarray, np.ndarray]]]) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Each level's (lower, upper) of several folds, stacked in fold order."""
    return {level: (np.concatenate([r[level][0] for r in ranges]), np.concatenate([r[level][1] for r in ranges]))
            for level in ranges[0]}


def as_quantiles(ranges: dict[float, tuple[np.ndarray, np.ndarray]]) -> dict[float, np.ndarray]:
    """{quantile: values}: each range's lower bound is its (1 − level)/2 quantile, its upper (1 + level)/2."""
    out = {}
    for level, (lower, upper) in ranges.items():
        low, high = quantile_levels((level,))
        out[low], out[high] = lower, upper
    return out


def worst_band_gap(bands: list[dict], min_cells: int = MIN_BAND) -> float:
    """The largest gap between coverage and level over bands and levels with at least ``min_cells``
    cells. Coverage above the level up to the band's share of zero-sale cells is no gap: a range around
    a forecast near 0 holds those whatever its method (most weeks of the slowest fifth sell nothing)."""
    gaps = [max(b["level"] - b["coverage"], b["coverage"] - max(b["level"], b["zero_share"]))
            for b in bands if b["n"] >= min_cells and np.isfinite(b["coverage"])]
    return max(gaps) if gaps else math.nan


def choose(evaluated: dict[str, tuple[float, float]]) -> str:
    """The method to use, from {method: (worst band gap, WQL)}: among those whose coverage is within
    TOLERANCE of nominal in every volume band the one with the lowest WQL (narrowest at that
    coverage); ``absolute`` when nothing was scored.

    When none is within TOLERANCE, the folds disagree with one another (e.g. a fold cut just after a
    week the shop was closed, where a model forecast 0 for every item): leave-one-fold-out then measures
    how that fold's errors fit the others', and the method nearest to passing was the one that suited
    the odd fold (Online Retail's naive forecasts: ``sqrt`` and ``absolute+bands``, whose ranges do not
    grow in proportion to the forecast, so the best sellers' were far too narrow on the weeks after the
    backtest; experiments/results/ranges_shift.md).
    FALLBACK_METHOD is taken instead: calibrated per band of forecast level, with a score proportional
    to the forecast inside each band. The one with the smallest worst gap only when it was not scored."""
    scored = {m: v for m, v in evaluated.items() if np.isfinite(v[0])}
    if not scored:
        return "absolute"
    passing = {m: v for m, v in scored.items() if v[0] <= TOLERANCE and np.isfinite(v[1])}
    if passing:
        return min(passing, key=lambda m: passing[m][1])
    return FALLBACK_METHOD if FALLBACK_METHOD in scored else min(scored, key=lambda m: scored[m][0])


def evaluate(truth: list[np.ndarray], forecasts: list[np.ndarray], levels: tuple[float, ...],
             methods: tuple[str, ...] = METHODS) -> dict[str, dict]:
    """Per method, leave-one-fold-out: its stacked ranges, per-band coverage rows, worst gap and WQL."""
    if len(truth) < 2:
        return {}
    truth_all = np.concatenate(truth)
    forecast_all = np.concatenate(forecasts)
    out = {}
    for method in methods:
        ranges = stack(held_out(method, truth, forecasts, levels))
        bands = band_coverage(truth_all, forecast_all, ranges)
        out[method] = {"ranges": ranges, "bands": bands, "gap": worst_band_gap(bands),
                       "wql": wql(truth_all, as_quantiles(ranges))}
    return out


def with_range(prediction: Prediction, has_history: np.ndarray, calibrations: dict[str, Calibration]) -> Prediction:
    """The prediction with its ``quantiles`` set from its group's calibration (``has_history``: per row
    of the prediction; a group without calibration gets NaN bounds)."""
    levels = next((tuple(c.quantile) for c in calibrations.values()), ())
    quantiles = {q: np.full(prediction.units.shape, np.nan) for q in quantile_levels(levels)}
    for group in (HISTORY, NEW):
        rows = in_group(has_history, group)
        if group in calibrations and rows.any():
            for q, values in as_quantiles(calibrations[group].ranges(prediction.units[rows])).items():
                quantiles[q][rows] = values
    return replace(prediction, quantiles=quantiles)  # a copy: the caller's prediction is left as it was


def save(directory: Path, levels: tuple[float, ...], calibrations: dict[str, Calibration],
         missing: dict[str, str] | None = None) -> None:
    """The calibration a model's export used, so ``predict`` with the saved model gives the same ranges;
    ``missing``: for a group without one, why (e.g. no new product in any backtest fold)."""
    data = {"levels": list(levels), "groups": {g: c.to_json() for g, c in calibrations.items()},
            "missing": dict(missing or {})}
    (Path(directory) / FILE).write_text(json.dumps(data, indent=2))


def read(directory: Path) -> tuple[dict[str, Calibration], dict[str, str] | None]:
    """The calibration saved beside a model and, per group without one, why, from one read of the
    file: ({}, None) for a model saved without it. A file of an earlier version (one half-width per
    step, ``half_width``) reads as the ``absolute`` method at its level."""
    path = Path(directory) / FILE
    if not path.is_file():
        return {}, None
    data = json.loads(path.read_text())
    if "half_width" in data:
        saved = {g: Calibration("absolute", np.empty(0), {float(data["level"]): np.array([w], dtype=float)})
                 for g, w in data["half_width"].items()}
    else:
        saved = {g: Calibration.from_json(c) for g, c in data["groups"].items()}
    reasons = data.get("missing", {})
    return saved, {g: reasons.get(g, "none were saved") for g in (HISTORY, NEW) if g not in saved}


def load(directory: Path) -> dict[str, Calibration]:
    """The calibration saved beside a model ({} for a model saved without one); see :func:`read`."""
    return read(directory)[0]
