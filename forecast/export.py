"""Planner-facing CSVs, written atomically (temporary file in the same folder, then rename).

A planner owns the file an export points at: it is never one of the run's inputs, never
something other than a regular file (a directory, a device such as /dev/null, a pipe),
a symlink is written through to its target (the link stays), a replaced file keeps its
permissions and a new one gets the usual umask. Text cells that a spreadsheet would run
as a formula are neutralised (:func:`neutralise_formulas`).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.panel import Panel
from forecast.errors import ForecastError
from forecast.models.base import HISTORY, NEW, Prediction
from forecast.trends import trend_columns

EXPORT_COLUMNS = ["item_id", "date", "step", "group", "origin", "model", "units", "units_lo", "units_hi", "price",
                  "trend", "trend_direction", "description"]
DECIMALS = 2  # units, their range, price and trend in the export: what a planner orders or reads, not 0.0002
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: cells a spreadsheet may evaluate
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a number in a text cell is not a formula


def check_writable(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Fail before any work if the file could not, or must not, be written at the end.

    ``inputs`` are the files the run reads: writing over one of them is refused.
    Returns the path written to: a symlink's target.
    """
    link = Path(path)
    path = Path(os.path.realpath(link))
    parent = path.parent
    if path.is_dir():
        raise ForecastError(f"export path {link} is a directory; give a file name such as {link / 'forecast.csv'}")
    if path.exists() and not path.is_file():
        raise ForecastError(f"export path {link} is not a regular file ({_kind(path)}); give the path of a CSV file")
    for given in inputs:
        if path.exists() and Path(given).exists() and os.path.samefile(path, given):
            raise ForecastError(f"export path {link} is the input file {given}; write the output to another file")
    if parent.exists() and not parent.is_dir():
        raise ForecastError(f"export path {link}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise ForecastError(f"export path {link}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ForecastError(f"export path {link}: not writable (check the folder's permissions)")
    return path


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a pipe",
             stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def write_csv_atomic(frame: pd.DataFrame, path: str | Path, bom: bool = False) -> Path:
    """Write to a temporary file beside the target and rename it into place; ``bom``: UTF-8 with a byte
    order mark, which Excel needs to read "£" as "£" rather than "Â£" (other tools ignore it).

    A crash or a full disk leaves the previous file (or none), never half a CSV. The
    file gets the mode of the one it replaces, or the umask's default for a new file
    (mkstemp alone would make every export 0600).
    """
    path = check_writable(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
            neutralise_formulas(frame).to_csv(handle, index=False)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


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
    return frame.reset_index(drop=True)


def _one_model(panel: Panel, forecast: Prediction, trend_window: int, threshold: float) -> pd.DataFrame:
    m, h = forecast.units.shape
    periods = forecast.start[:, None] + np.arange(h)[None, :]
    dates = panel.date_at(periods.ravel())
    trend, direction = trend_columns(panel, forecast, trend_window, threshold)
    missing = np.full((m, h), np.nan)
    price = forecast.price if forecast.price is not None else missing
    lower = forecast.lower if forecast.lower is not None else missing
    upper = forecast.upper if forecast.upper is not None else missing
    rounded = lambda values: np.round(np.asarray(values, dtype=float), DECIMALS).ravel()  # noqa: E731
    return pd.DataFrame({
        "item_id": np.repeat(panel.item_ids[forecast.item_index], h),
        "date": dates.strftime("%Y-%m-%d"),
        "step": np.tile(np.arange(1, h + 1), m),  # 1 = the first forecast period of the product
        "group": np.repeat(np.where(panel.has_history[forecast.item_index], HISTORY, NEW), h),
        "origin": panel.dates[-1].strftime("%Y-%m-%d"),  # the last period of data the forecast starts from
        "model": forecast.model,
        "units": rounded(forecast.units),
        "units_lo": rounded(lower),
        "units_hi": rounded(upper),
        "price": rounded(price),
        "trend": rounded(trend),
        "trend_direction": direction.ravel(),
        "description": np.repeat(panel.products["description"].to_numpy()[forecast.item_index], h),
    })[(periods < panel.end[forecast.item_index][:, None]).ravel()]  # nothing past a series' end
