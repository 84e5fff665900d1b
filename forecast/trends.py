"""The seasonal trend of a forecast, its direction, and the trend report by attribute and word.

Definitions (README, "Trends"):

- **trend**: the centred moving average of units over ``window`` periods (default
  9 weeks), taken over the item's history followed by its forecast; at the ends
  of the series the window shrinks to what exists. It smooths week-to-week noise
  and promotions away and keeps the seasonal level.
- **trend_direction** of a forecast period: its trend compared with the trend of
  the same period one season earlier (52 weeks for weekly data) when the history
  reaches that far back, otherwise with the trend at the end of the history.
  ``rising`` when higher by more than ``threshold`` (default 10%), ``falling``
  when lower by more than that, else ``flat``; ``new`` for products with no history.
- **trend report**: for every attribute value (category, colour, ...) and every
  description word shared by at least ``min_products`` products, the forecast
  units over the horizon against the same items' units over the reference periods,
  and the relative change.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.panel import Panel
from forecast.data.smoothing import centred_moving_average
from forecast.errors import DataError
from forecast.models.base import Prediction

RISING, FALLING, FLAT, NEW_ITEM = "rising", "falling", "flat", "new"


def direction(change: np.ndarray, threshold: float) -> np.ndarray:
    change = np.asarray(change, dtype=float)
    out = np.full(change.shape, FLAT, dtype=object)
    out[change > threshold] = RISING
    out[change < -threshold] = FALLING
    return out


def relative_change(new: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """new / reference − 1, with 0 → positive counted as +100% and 0 → 0 as no change."""
    new, reference = np.asarray(new, float), np.asarray(reference, float)
    change = np.divide(new, reference, out=np.where(new > 0, 2.0, 1.0), where=reference > 0) - 1
    return change


def trend_columns(panel: Panel, forecast: Prediction, window: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(trend, trend_direction) arrays [m, H] for a forecast."""
    m, h = forecast.units.shape
    trend = np.empty((m, h))
    directions = np.full((m, h), NEW_ITEM, dtype=object)
    season = panel.season_length
    for k, row in enumerate(forecast.item_index):
        history = panel.history(row) if panel.has_history[row] else np.empty(0)
        if forecast.trend is not None:
            trend[k] = forecast.trend[k]
        else:
            tail = history[-window:]
            trend[k] = centred_moving_average(np.concatenate([tail, forecast.units[k]]), window)[len(tail):]
        if not len(history):
            continue
        smooth_history = centred_moving_average(history, window)
        lagged = forecast.start[k] + np.arange(h) - season - panel.start[row]
        reference = np.where(lagged >= 0, smooth_history[np.clip(lagged, 0, len(history) - 1)], smooth_history[-1])
        directions[k] = direction(relative_change(trend[k], reference), threshold)
    return trend, directions


def reference_units(panel: Panel, rows: np.ndarray, horizon: int) -> np.ndarray:
    """Units of the comparison periods: a season earlier where the data reaches, else the last H periods."""
    T, season = panel.n_periods, panel.season_length
    if horizon <= season <= T:
        cols = np.arange(T - season, T - season + horizon)
    else:
        cols = np.arange(max(T - horizon, 0), T)
    return np.nansum(panel.units[np.ix_(rows, cols)], axis=1)


def read_forecast(path: Path, panel: Panel) -> pd.DataFrame:
    """The item_id and units of a forecast CSV written by ``fit``, checked against the products.

    Units must be numbers and every item a product of the panel (a forecast made from other
    tables would otherwise give an empty report without a word). Item ids that the export
    neutralised as formulas (a leading ``'``) are read back as they were.
    """
    from forecast.data.contract import parse_numeric, read_table, require_columns

    if not path.is_file():
        raise DataError(f"{path}: forecast file not found; run `python -m forecast fit --export {path}` first")
    frame = read_table(path)
    require_columns(frame, ("item_id", "units"), path.name)
    item_ids = frame["item_id"].str.replace(r"^'(?=[=+\-@\t\r])", "", regex=True)
    export = pd.DataFrame({"item_id": item_ids, "units": parse_numeric(frame, "units", path.name)})
    unknown = pd.unique(item_ids[~item_ids.isin(set(panel.item_ids))])
    if len(unknown):
        shown = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise DataError(f"{path.name}: column 'item_id': {len(unknown)} item(s) are not in the products table "
                        f"({shown}); give the --sales and --products the forecast was made from")
    return export


def words(description: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z'-]+", description.lower()) if len(w) > 2}


def trend_report(panel: Panel, export: pd.DataFrame, threshold: float, min_products: int,
                 attributes: list[str] | None = None) -> pd.DataFrame:
    """Which attribute values and description words are forecast to rise or fall, and by how much."""
    totals = export.groupby("item_id", sort=False)["units"].sum()
    horizon = int(export.groupby("item_id").size().max())
    rows = np.flatnonzero(panel.has_history & np.isin(panel.item_ids, totals.index))
    item_ids = panel.item_ids[rows]
    items = pd.DataFrame({
        "item_id": item_ids,
        "forecast_units": totals.reindex(item_ids).to_numpy(),
        "reference_units": reference_units(panel, rows, horizon),
    })
    products = panel.products.iloc[rows].reset_index(drop=True)
    attributes = attributes if attributes is not None else _attribute_columns(products)
    records = []
    for column in attributes:
        for value, part in items.groupby(products[column].astype(str).to_numpy()):
            records.append(_record(column, value, part))
    vocab = products["description"].map(words)
    exploded = vocab.explode()
    for word, idx in exploded.groupby(exploded).groups.items():
        if len(idx) >= min_products:
            records.append(_record("word", word, items.loc[idx]))
    report = pd.DataFrame.from_records(records, columns=[
        "dimension", "value", "products", "reference_units", "forecast_units", "change", "direction"])
    report = report[report["products"] >= min_products]
    report["direction"] = direction(report["change"].to_numpy(), threshold)
    return report.sort_values(["dimension", "change"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _record(dimension: str, value: str, part: pd.DataFrame) -> dict:
    ref, new = part["reference_units"].sum(), part["forecast_units"].sum()
    return {"dimension": dimension, "value": value, "products": len(part), "reference_units": round(ref, 2),
            "forecast_units": round(new, 2), "change": round(float(relative_change(new, ref)), 4), "direction": ""}


def _attribute_columns(products: pd.DataFrame) -> list[str]:
    """Categorical attribute columns: text columns other than id/description with few distinct values."""
    skip = {"item_id", "description", "launch_date", "price"}
    return [
        c for c in products.columns
        if c not in skip
        and (products[c].dtype == object or pd.api.types.is_string_dtype(products[c]))
        and products[c].nunique() <= max(50, len(products) // 5)
    ]
