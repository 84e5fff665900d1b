"""The panel: every product on one regular time grid, as dense arrays.

A product's series starts at its first sale (or its launch_date, if earlier) and
runs to the end of the table; periods inside it with no row are zero sales (or
refused, with ``gaps="error"``). Before its start a product has no series (NaN).
A product with no sales at all is a *new product*: its ``start`` is its launch
position on the (conceptually endless) grid, at or after the table's end.

Dense ``[items, periods]`` arrays make cut-offs, windows and metrics cheap
slicing; a million sales rows is a few tens of MB here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from forecast.data.contract import Tables
from forecast.errors import DataError

log = logging.getLogger(__name__)

SEASON_LENGTHS = {"W": 52, "D": 7, "M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4, "h": 24, "H": 24}


@dataclass
class Panel:
    item_ids: np.ndarray  # [n] str
    dates: pd.DatetimeIndex  # [T] the observed grid
    units: np.ndarray  # [n, T] float, NaN before an item's start
    price: np.ndarray | None  # [n, T] float, last known price carried forward; NaN if never known
    covariates: dict[str, np.ndarray]  # name -> [n, T], carried forward like price
    start: np.ndarray  # [n] int, first period of each series; >= T for new products
    products: pd.DataFrame  # aligned with item_ids: description, attributes, launch_date
    freq: str
    season_length: int
    gaps_filled: int = field(default=0)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_periods(self) -> int:
        return len(self.dates)

    @property
    def descriptions(self) -> list[str]:
        return self.products["description"].tolist()

    @property
    def has_history(self) -> np.ndarray:
        return self.start < self.n_periods

    def history(self, i: int) -> np.ndarray:
        """The observed series of item i (empty for a new product)."""
        return self.units[i, self.start[i]:]

    def window(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        """units[row, start + h] for h < length, NaN past the data's end: [len(rows), length]."""
        cols = np.asarray(start)[:, None] + np.arange(length)[None, :]
        inside = cols < self.n_periods
        out = np.full(cols.shape, np.nan)
        out[inside] = self.units[np.broadcast_to(np.asarray(rows)[:, None], cols.shape)[inside], cols[inside]]
        return out

    def date_at(self, index: int | np.ndarray) -> pd.DatetimeIndex:
        """Dates of grid positions, also beyond the table's end."""
        offset = pd.tseries.frequencies.to_offset(self.freq)
        first = self.dates[0]
        index = np.atleast_1d(np.asarray(index, dtype=int))
        # date_range is exact for any offset; build once up to the largest index.
        grid = pd.date_range(first, periods=int(index.max()) + 1, freq=offset)
        return grid[index]

    def truncate(self, cutoff: int) -> "Panel":
        """The panel as it was known before period `cutoff` (for backtests).

        Items whose series starts at or after the cut-off become new products,
        launching at their start (the planner knows launch dates).
        """
        if not 0 < cutoff <= self.n_periods:
            raise ValueError(f"cutoff {cutoff} outside 1..{self.n_periods}")
        return replace(
            self,
            dates=self.dates[:cutoff],
            units=self.units[:, :cutoff],
            price=None if self.price is None else self.price[:, :cutoff],
            covariates={k: v[:, :cutoff] for k, v in self.covariates.items()},
        )


# --- building the grid -------------------------------------------------------
def infer_freq(dates: pd.Series, file: str) -> str:
    """The table's frequency from its distinct dates (weekly anchored on their weekday)."""
    unique = pd.DatetimeIndex(np.sort(dates.unique()))
    if len(unique) < 2:
        raise DataError(f"{file}: column 'date': only one distinct date; cannot infer a frequency (give --freq)")
    guess = pd.infer_freq(unique) if len(unique) >= 3 else None
    if guess:
        return guess
    step = pd.Series(np.diff(unique.values)).mode().iloc[0]
    days = step / np.timedelta64(1, "D")
    if days == 7:
        return f"W-{unique[0].day_name()[:3].upper()}"
    if days == 1:
        return "D"
    if 28 <= days <= 31:
        return "MS" if (unique.day == 1).all() else "ME"
    raise DataError(f"{file}: column 'date': cannot infer the frequency (most common step {days:g} days); give --freq")


def season_length_of(freq: str) -> int:
    base = pd.tseries.frequencies.to_offset(freq).name.split("-")[0]
    return SEASON_LENGTHS.get(base, 1)


def build_panel(tables: Tables, freq: str | None = None, gaps: str = "zero") -> Panel:
    """Put the validated tables on one regular grid."""
    sales, products, file = tables.sales, tables.products, tables.sales_name
    freq = freq or infer_freq(sales["date"], file)
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        raise DataError(f"--freq {freq!r} is not a pandas frequency alias (e.g. W-MON, D, MS)") from None
    dates = pd.date_range(sales["date"].min(), sales["date"].max(), freq=offset)
    if len(dates) == 0 or dates[0] != sales["date"].min():
        raise DataError(f"{file}: column 'date': the first date {sales['date'].min().date()} is not on the {freq} grid")
    position = pd.Series(np.arange(len(dates)), index=dates)
    col = position.reindex(sales["date"]).to_numpy()
    off_grid = np.isnan(col)
    if off_grid.any():
        rows = sales.loc[off_grid].head(5)
        shown = ", ".join(f"item_id={r.item_id} date={r.date.date()}" for r in rows.itertuples())
        raise DataError(
            f"{file}: column 'date': {int(off_grid.sum())} row(s) are not on the {freq} grid of the rest "
            f"(mixed frequencies?): {shown}"
        )
    item_ids = products["item_id"].to_numpy(dtype=str)
    row = pd.Series(np.arange(len(item_ids)), index=item_ids).reindex(sales["item_id"]).to_numpy()
    col = col.astype(int)
    n, T = len(item_ids), len(dates)

    first_sale = np.full(n, T, dtype=int)
    np.minimum.at(first_sale, row, col)
    start = _series_start(products, dates, offset, first_sale)

    observed = np.zeros((n, T), dtype=bool)
    observed[row, col] = True
    inside = np.arange(T)[None, :] >= start[:, None]
    gap_mask = inside & ~observed
    if gaps == "error" and gap_mask.any():
        bad_items = item_ids[gap_mask.any(axis=1)]
        raise DataError(
            f"{file}: {int(gap_mask.sum())} missing period(s) in {len(bad_items)} series "
            f"(e.g. {', '.join(bad_items[:5])}); add zero rows or use --gaps zero"
        )
    if gap_mask.any():
        log.info("filled %d missing period(s) in %d series with zero sales",
                 int(gap_mask.sum()), int(gap_mask.any(axis=1).sum()))

    units = np.where(inside, 0.0, np.nan)
    units[row, col] = sales["units"].to_numpy(dtype=float)
    price = _carried(sales, "price", row, col, n, T, inside) if "price" in sales else None
    covariates = {c: _carried(sales, c, row, col, n, T, inside) for c in tables.covariates}
    return Panel(
        item_ids=item_ids, dates=dates, units=units, price=price, covariates=covariates,
        start=start, products=products.reset_index(drop=True), freq=offset.freqstr,
        season_length=season_length_of(offset.freqstr), gaps_filled=int(gap_mask.sum()),
    )


def _series_start(products: pd.DataFrame, dates: pd.DatetimeIndex, offset, first_sale: np.ndarray) -> np.ndarray:
    """First sale, or launch_date if earlier; new products start at launch (never before the table's end)."""
    T = len(dates)
    start = first_sale.copy()
    if "launch_date" not in products:
        return start
    launch = pd.to_datetime(products["launch_date"])
    known = launch.notna().to_numpy()
    if not known.any():
        return start
    periods = np.full(len(launch), T, dtype=int)
    # Position of each launch on the grid, rounding a mid-period date up to the next period.
    span = pd.date_range(dates[0], max(launch[known].max(), dates[-1]) + offset, freq=offset)
    periods[known] = np.searchsorted(span.values, launch[known].values, side="left")
    has_sales = first_sale < T
    start = np.where(known & has_sales, np.minimum(first_sale, np.maximum(periods, 0)), start)
    start = np.where(known & ~has_sales, np.maximum(periods, T), start)
    return start


def _carried(sales: pd.DataFrame, column: str, row, col, n: int, T: int, inside: np.ndarray) -> np.ndarray:
    """A covariate on the grid, carried forward (then back) within each series."""
    grid = np.full((n, T), np.nan)
    grid[row, col] = sales[column].to_numpy(dtype=float)
    frame = pd.DataFrame(grid.T).ffill().bfill()
    return np.where(inside, frame.to_numpy().T, np.nan)
