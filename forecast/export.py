"""Planner-facing CSVs, written atomically (temporary file in the same folder, then rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.panel import Panel
from forecast.errors import ForecastError
from forecast.models.base import Prediction
from forecast.trends import trend_columns

EXPORT_COLUMNS = ["item_id", "date", "model", "units", "price", "trend", "trend_direction", "description"]


def check_writable(path: str | Path) -> Path:
    """Fail before any work if the file could not be written at the end."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ForecastError(f"export path {path} is a directory; give a file name such as {path / 'forecast.csv'}")
    if not parent.is_dir():
        raise ForecastError(f"export path {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ForecastError(f"export path {path}: not writable (check the folder's permissions)")
    return path


def write_csv_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write to a temporary file beside the target and rename it into place.

    A crash or a full disk leaves the previous file (or none), never half a CSV.
    """
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            frame.to_csv(handle, index=False, float_format="%.4f")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    return frame.reset_index(drop=True)


def _one_model(panel: Panel, forecast: Prediction, trend_window: int, threshold: float) -> pd.DataFrame:
    m, h = forecast.units.shape
    dates = panel.date_at((forecast.start[:, None] + np.arange(h)[None, :]).ravel())
    trend, direction = trend_columns(panel, forecast, trend_window, threshold)
    price = forecast.price if forecast.price is not None else np.full((m, h), np.nan)
    return pd.DataFrame({
        "item_id": np.repeat(panel.item_ids[forecast.item_index], h),
        "date": dates.strftime("%Y-%m-%d"),
        "model": forecast.model,
        "units": forecast.units.ravel(),
        "price": price.ravel(),
        "trend": trend.ravel(),
        "trend_direction": direction.ravel(),
        "description": np.repeat(panel.products["description"].to_numpy()[forecast.item_index], h),
    })
