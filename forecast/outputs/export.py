"""Planner-facing CSVs, written atomically (temporary file in the same folder, then rename).

A planner owns the file an export points at: it is never one of the run's inputs, never
something other than a regular file (a directory, a device such as /dev/null, a pipe),
a symlink is written through to its target (the link stays), a replaced file keeps its
permissions and a new one gets the usual umask. Text cells that a spreadsheet would run
as a formula are neutralised (:func:`neutralise_formulas`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.panel import Panel
from forecast.core.files import write_atomic
from forecast.evaluation.intervals import quantile_column
from forecast.models.base import Prediction, group_of
from forecast.outputs.trends import trend_columns

EXPORT_COLUMNS = ["item_id", "date", "step", "group", "origin", "model", "units", "price", "trend", "trend_direction",
                  "description"]
# after units: the range's quantiles units_p10, units_p90 (an 80 % range), one pair per level (forecast.evaluation.intervals)
DECIMALS = 2  # units, their range, price and trend in the export: what a planner orders or reads, not 0.0002
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: cells a spreadsheet may evaluate
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a number in a text cell is not a formula


def write_csv_atomic(frame: pd.DataFrame, path: str | Path, bom: bool = False) -> Path:
    """Write to a temporary file beside the target and rename it into place; ``bom``: UTF-8 with a byte
    order mark, which Excel needs to read "£" as "£" rather than "Â£" (other tools ignore it).

    A crash or a full disk leaves the previous file (or none), never half a CSV. The
    file gets the mode of the one it replaces, or the umask's default for a new file
    (mkstemp alone would make every export 0600).
    """
    return write_atomic(path, lambda handle: neutralise_formulas(frame).to_csv(handle, index=False),
                        encoding="utf-8-sig" if bom else "utf-8")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells starting with ``= + - @``, tab or carriage return get a leading ``'``, so a
    spreadsheet shows them instead of running them (OWASP CSV injection). Numeric columns,
    and text cells that are plain numbers such as ``-5``, are left as they are."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue
        text = values.astype(str)
        risky = values.notna() & text.str.startswith(FORMULA_START) & ~text.str.fullmatch(NUMBER)
        out[column] = values.where(~risky, "'" + text)
    return out


def forecast_frame(panel: Panel, forecasts: list[Prediction], trend_window: int, threshold: float) -> pd.DataFrame:
    """One row per item and period: the long table a planner opens in a spreadsheet."""
    parts = [_one_model(panel, f, trend_window, threshold) for f in forecasts if len(f.item_index)]
    if not parts:
        return pd.DataFrame(columns=EXPORT_COLUMNS)
    frame = pd.concat(parts, ignore_index=True)
    order = pd.Series(np.arange(panel.n_items), index=panel.item_ids)
    frame["_row"] = order.reindex(frame["item_id"]).to_numpy()
    frame = frame.sort_values(["_row", "date"], kind="stable").drop(columns="_row")
    if frame["price"].isna().all():
        frame = frame.drop(columns="price")
    ranges = [c for c in frame.columns if c not in EXPORT_COLUMNS]  # the quantiles, in the order of the levels
    ordered = [c for c in EXPORT_COLUMNS if c in frame.columns]
    ordered[ordered.index("units") + 1:ordered.index("units") + 1] = ranges
    return frame[ordered].reset_index(drop=True)


def _one_model(panel: Panel, forecast: Prediction, trend_window: int, threshold: float) -> pd.DataFrame:
    m, h = forecast.units.shape
    periods = forecast.start[:, None] + np.arange(h)[None, :]
    dates = panel.date_at(periods.ravel())
    trend, direction = trend_columns(panel, forecast, trend_window, threshold)
    missing = np.full((m, h), np.nan)
    price = forecast.price if forecast.price is not None else missing
    rounded = lambda values: np.round(np.asarray(values, dtype=float), DECIMALS).ravel()  # noqa: E731
    return pd.DataFrame({
        "item_id": np.repeat(panel.item_ids[forecast.item_index], h),
        "date": dates.strftime("%Y-%m-%d"),
        "step": np.tile(np.arange(1, h + 1), m),  # 1 = the first forecast period of the product
        "group": np.repeat(group_of(panel.has_history[forecast.item_index]), h),
        "origin": panel.dates[-1].strftime("%Y-%m-%d"),  # the last period of data the forecast starts from
        "model": forecast.model,
        "units": rounded(forecast.units),
        **{quantile_column(q): rounded(values) for q, values in forecast.quantiles.items()},
        "price": rounded(price),
        "trend": rounded(trend),
        "trend_direction": direction.ravel(),
        "description": np.repeat(panel.products["description"].to_numpy()[forecast.item_index], h),
    })[(periods < panel.end[forecast.item_index][:, None]).ravel()]  # nothing past a series' end
