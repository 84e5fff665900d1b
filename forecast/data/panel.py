"""The panel: every product on one regular time grid, as dense arrays.

Three facts per product, kept apart because real merchandise data separates them:

- ``start``: its launch position, the first period of its series: its first sale,
  or its ``launch_date`` if earlier. For a product with no sales rows it is the
  launch_date's position wherever that lies (before, inside or after the table),
  or the first period after the table when it has none.
- ``first_sale``: the first period with a sales row. A product *has history* at a
  cut-off ``t`` when ``first_sale < t``; otherwise it is a *new product* there,
  forecast from its ``start`` (which may lie before ``t``: a launch the planner
  knows of, with no sale recorded yet).
- ``end``: the period after its series ends (exclusive): the ``end_date``, or with
  ``series_end="last-sale"`` the period after its last sale (unless that is the
  table's last period); ``OPEN_END`` when it runs on. Nothing is known or
  forecast from ``end`` on.

Periods from ``start`` to ``end`` with no row are zero sales (or refused, with
``gaps="error"``); outside them a product has no series (NaN).

Dense ``[items, periods]`` arrays make cut-offs, windows and metrics cheap
slicing; a million sales rows is a few tens of MB here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from forecast.data.contract import LIFE_CYCLE_DATES, Tables, visible
from forecast.core.errors import DataError

log = logging.getLogger(__name__)

OPEN_END = np.iinfo(np.int64).max // 4  # ``end`` of a series that runs on past any horizon
SEASON_LENGTHS = {"W": 52, "D": 7, "M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4, "h": 24, "H": 24}


@dataclass
class Signals:
    names: list[str]
    values: np.ndarray  # [n_signals, P] on the panel's grid; column c is grid position first + c
    first: int  # grid position of column 0 (negative: before the sales table starts)
    items: list[np.ndarray]  # per product (aligned with the panel): indices of the signals it uses

    @cached_property
    def used(self) -> np.ndarray:
        """[n_items, n_signals] bool: which signals each product uses (built once: every batch reads it)."""
        out = np.zeros((len(self.items), len(self.names)), dtype=bool)
        for row, picks in enumerate(self.items):
            out[row, picks] = True
        return out

    def known_before(self, cutoff: int) -> "Signals":
        """The signals as known before grid position ``cutoff`` (later values NaN)."""
        values = self.values.copy()
        values[:, max(cutoff - self.first, 0):] = np.nan
        return replace(self, values=values)

    def subset(self, idx: np.ndarray) -> "Signals":
        return replace(self, items=[self.items[i] for i in idx])


@dataclass
class Panel:
    item_ids: np.ndarray  # [n] str
    dates: pd.DatetimeIndex  # [T] the observed grid
    units: np.ndarray  # [n, T] float, NaN outside an item's series (before start, from end on)
    price: np.ndarray | None  # [n, T] float, last known price carried forward; NaN if never known
    covariates: dict[str, np.ndarray]  # name -> [n, T], carried forward like price
    start: np.ndarray  # [n] int, launch position: first period of each series (any grid position)
    products: pd.DataFrame  # aligned with item_ids: description, attributes, launch_date, end_date
    freq: str
    season_length: int
    gaps_filled: int = field(default=0)
    first_sale: np.ndarray | None = None  # [n] int, first period with a sales row; >= T when none
    end: np.ndarray | None = None  # [n] int, period after the series ends; OPEN_END when it runs on
    signals: "Signals | None" = None  # exogenous signals on the grid (forecast.data.signals)

    def __post_init__(self) -> None:
        # Panels built by hand (tests, tools): a series starts at its first sale and runs on.
        if self.first_sale is None:
            self.first_sale = np.asarray(self.start, dtype=int).copy()
        if self.end is None:
            self.end = np.full(len(self.item_ids), OPEN_END, dtype=np.int64)

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
        """Items with a sales row inside the panel (the rest are new products)."""
        return self.first_sale < self.n_periods

    @property
    def forecastable(self) -> np.ndarray:
        """Items whose series has not ended before their first forecast period."""
        first = np.where(self.has_history, self.n_periods, self.start)
        return self.end > first

    def history(self, i: int) -> np.ndarray:
        """The observed series of item i (empty for a new product)."""
        if not self.has_history[i]:
            return self.units[i, :0]
        return self.units[i, self.start[i]:min(self.end[i], self.n_periods)]

    def window(self, rows: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
        """units[row, start + h] for h < length, NaN outside the data: [len(rows), length]."""
        cols = np.asarray(start)[:, None] + np.arange(length)[None, :]
        inside = (cols >= 0) & (cols < self.n_periods)
        out = np.full(cols.shape, np.nan)
        out[inside] = self.units[np.broadcast_to(np.asarray(rows)[:, None], cols.shape)[inside], cols[inside]]
        return out

    def date_at(self, index: int | np.ndarray) -> pd.DatetimeIndex:
        """Dates of grid positions, also before the table's start and beyond its end."""
        offset = pd.tseries.frequencies.to_offset(self.freq)
        index = np.atleast_1d(np.asarray(index, dtype=int))
        if index.size == 0:
            return pd.DatetimeIndex([])
        lo = min(int(index.min()), 0)
        # date_range is exact for any offset; build once over the span asked for.
        grid = pd.date_range(self.dates[0] + lo * offset, periods=int(index.max()) - lo + 1, freq=offset)
        return grid[index - lo]

    def take(self, rows: np.ndarray, products: pd.DataFrame | None = None) -> "Panel":
        """The panel of these rows (repeats allowed), on the same grid; ``products`` replaces their
        product rows (e.g. edited descriptions for an occlusion study, forecast.outputs.trends)."""
        rows = np.asarray(rows, dtype=int)
        take = lambda a: None if a is None else a[rows]  # noqa: E731
        return replace(
            self, item_ids=self.item_ids[rows], units=self.units[rows], price=take(self.price),
            covariates={k: v[rows] for k, v in self.covariates.items()}, start=self.start[rows],
            products=(self.products.iloc[rows] if products is None else products).reset_index(drop=True),
            first_sale=self.first_sale[rows], end=self.end[rows],
            signals=None if self.signals is None else self.signals.subset(rows),
        )

    def truncate(self, cutoff: int) -> "Panel":
        """The panel as it was known before period `cutoff` (for backtests).

        Items whose first sale is at or after the cut-off become new products,
        launching at their start (the planner knows launch dates), which may lie
        before the cut-off; the zero weeks between such a launch and the cut-off
        are not shown, since no sale was recorded yet. Signals dated from the
        cut-off on are unknown.
        """
        if not 0 < cutoff <= self.n_periods:
            raise ValueError(f"cutoff {cutoff} outside 1..{self.n_periods}")
        unsold = self.first_sale >= cutoff
        cut = lambda a: np.where(unsold[:, None], np.nan, a[:, :cutoff])  # noqa: E731
        return replace(
            self,
            dates=self.dates[:cutoff],
            units=cut(self.units),
            price=None if self.price is None else cut(self.price),
            covariates={k: cut(v) for k, v in self.covariates.items()},
            signals=None if self.signals is None else self.signals.known_before(cutoff),
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


NOT_ATTRIBUTES = ("item_id", "description", "price", *LIFE_CYCLE_DATES)  # the products table's other columns


def attribute_columns(products: pd.DataFrame) -> list[str]:
    """Categorical attribute columns (category, colour, fabric, season, ...): the text columns other
    than ``NOT_ATTRIBUTES`` (id, description, price, dates) with few distinct values (at most 50, or one
    per 5 products)."""
    return [
        c for c in products.columns
        if c not in NOT_ATTRIBUTES
        and (products[c].dtype == object or pd.api.types.is_string_dtype(products[c]))
        and products[c].nunique() <= max(50, len(products) // 5)
    ]


def build_panel(tables: Tables, freq: str | None = None, gaps: str = "zero", series_end: str = "table") -> Panel:
    """Put the validated tables on one regular grid (see the module docstring)."""
    sales, products, file = tables.sales, tables.products, tables.sales_name
    given_freq = freq is not None
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
        shown = ", ".join(f"item_id={visible(r.item_id)} date={r.date.date()}" for r in rows.itertuples())
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
    last_sale = np.full(n, -1, dtype=int)
    np.maximum.at(last_sale, row, col)
    start = _series_start(products, dates, offset, first_sale)
    end = _series_end(tables, dates, offset, last_sale, series_end)
    start = _unsold_past_launches_start_now(start, first_sale, end, dates, item_ids)

    observed = np.zeros((n, T), dtype=bool)
    observed[row, col] = True
    period = np.arange(T)[None, :]
    inside = (period >= start[:, None]) & (period < end[:, None]) & (first_sale < T)[:, None]
    gap_mask = inside & ~observed
    if gaps == "error" and gap_mask.any():
        bad_items = item_ids[gap_mask.any(axis=1)]
        raise DataError(
            f"{file}: {int(gap_mask.sum())} missing period(s) in {len(bad_items)} series "
            f"(e.g. {', '.join(map(visible, bad_items[:5]))}); add zero rows or use --gaps zero"
        )
    _log_gaps(gap_mask, inside, _finer_than_data(freq, sales["date"]) if given_freq else None)

    units = np.where(inside, 0.0, np.nan)
    units[row, col] = sales["units"].to_numpy(dtype=float)
    price = _carried(sales, "price", row, col, n, T, inside) if "price" in sales else None
    covariates = {c: _carried(sales, c, row, col, n, T, inside) for c in tables.covariates}
    panel = Panel(
        item_ids=item_ids, dates=dates, units=units, price=price, covariates=covariates,
        start=start, products=products.reset_index(drop=True), freq=offset.freqstr,
        season_length=season_length_of(offset.freqstr), gaps_filled=int(gap_mask.sum()),
        first_sale=first_sale, end=end,
    )
    _log_life_cycle(panel)
    return panel


def _unsold_past_launches_start_now(start: np.ndarray, first_sale: np.ndarray, end: np.ndarray,
                                    dates: pd.DatetimeIndex, item_ids: np.ndarray) -> np.ndarray:
    """A product launched before the table ends (its ``launch_date``) with no sales row at all, and not
    ended: its sales are missing from the table, not zero (a product the table covers has rows; one it
    does not cover cannot be told from one that sold nothing). It is forecast as a new product from
    the first period after the table, the weeks a planner needs, rather than from its past launch."""
    T = len(dates)
    moved = (first_sale >= T) & (start < T)  # those that ended by then get no rows (said by _log_life_cycle)
    unsold = moved & (end > T)
    if not unsold.any():
        return np.where(moved, T, start)
    log.warning("%d product(s) have a launch_date before the sales table ends (%s) but no sales rows (%s): their "
                "sales are taken as missing, not zero, and they are forecast as new products from their "
                "description for the periods from %s; if they sold nothing, add rows with units 0 to forecast them "
                "from that history", int(unsold.sum()), dates[-1].date(), _first_of(item_ids[unsold]),
                (dates[-1] + dates.freq).date())
    return np.where(moved, T, start)


def _first_of(ids: np.ndarray, shown: int = 5) -> str:
    return ", ".join(map(str, ids[:shown])) + (f", ... ({len(ids) - shown} more)" if len(ids) > shown else "")


def _log_gaps(gap_mask: np.ndarray, inside: np.ndarray, data_freq: str | None = None) -> None:
    """Count the invented zeros; warn when they are most of the data (series that really ended,
    or a ``--freq`` finer than the data's: ``data_freq`` is the data's own when that is the case)."""
    filled = int(gap_mask.sum())
    if not filled:
        return
    log.info("filled %d missing period(s) in %d series with zero sales", filled, int(gap_mask.any(axis=1).sum()))
    if filled > 0.5 * inside.sum():
        finer = (f"--freq is finer than the data's {data_freq}: drop --freq or give --freq {data_freq}; "
                 if data_freq else "if --freq is finer than the data's frequency, drop it; ")
        log.warning(
            "zero-filled periods are %.0f%% of all series cells: %sif series stop selling (seasonal items), "
            "pass --series-end last-sale or an end_date column; to refuse gaps, --gaps error",
            100 * filled / inside.sum(), finer,
        )


def _finer_than_data(freq: str, dates: pd.Series) -> str | None:
    """The frequency the dates themselves have, when it differs from the one given."""
    try:
        inferred = infer_freq(dates, "")
    except DataError:
        return None
    same = pd.tseries.frequencies.to_offset(inferred) == pd.tseries.frequencies.to_offset(freq)
    return None if same else inferred


def _log_life_cycle(panel: Panel) -> None:
    """Say which products are forecast from where: past launches and ended series."""
    T = panel.n_periods
    new = ~panel.has_history
    past = new & (panel.start < T)
    if past.any():
        log.info("%d new product(s) launch before the sales table ends: forecast from their launch_date", int(past.sum()))
    ended = ~panel.forecastable
    if ended.any():
        log.info("%d product(s) end before their forecast start: no future rows", int(ended.sum()))


def grid_positions(dates: pd.DatetimeIndex, offset, when: pd.Series, side: str) -> np.ndarray:
    """Grid positions (any integer, also outside the table) of dates.

    ``side="left"``: the first period starting at or after the date (a launch mid-period
    counts from the next period); ``"right"``: one past the period holding the date.
    """
    values = pd.to_datetime(when)
    lo = min(values.min(), dates[0]) - offset
    hi = max(values.max(), dates[-1]) + offset
    before = len(pd.date_range(lo, dates[0], freq=offset, inclusive="left"))
    span = pd.date_range(lo, hi + offset, freq=offset)
    return np.searchsorted(span.values, values.values, side=side) - before


def _series_start(products: pd.DataFrame, dates: pd.DatetimeIndex, offset, first_sale: np.ndarray) -> np.ndarray:
    """First sale, or launch_date if earlier; a product without sales starts at its launch
    (anywhere on the grid), or after the table's end when it has no launch_date."""
    T = len(dates)
    start = first_sale.copy()
    if "launch_date" not in products:
        return start
    launch = pd.to_datetime(products["launch_date"])
    known = launch.notna().to_numpy()
    if not known.any():
        return start
    periods = np.full(len(launch), T, dtype=int)
    periods[known] = grid_positions(dates, offset, launch[known], "left")
    has_sales = first_sale < T
    start = np.where(known & has_sales, np.minimum(first_sale, np.maximum(periods, 0)), start)
    return np.where(known & ~has_sales, periods, start)


def _series_end(tables: Tables, dates: pd.DatetimeIndex, offset, last_sale: np.ndarray, mode: str) -> np.ndarray:
    """Period after each series' end: its end_date, else (``last-sale``) after its last sale, else open."""
    end = np.full(len(last_sale), OPEN_END, dtype=np.int64)
    if mode == "last-sale":  # a series still selling in the table's last period has not visibly ended
        end = np.where((last_sale >= 0) & (last_sale < len(dates) - 1), last_sale + 1, end)
    products = tables.products
    if "end_date" not in products or not products["end_date"].notna().any():
        return end
    given = products["end_date"].notna().to_numpy()
    at = np.full(len(end), OPEN_END, dtype=np.int64)
    at[given] = grid_positions(dates, offset, products.loc[given, "end_date"], "right")
    sold_after = given & (last_sale >= 0) & (last_sale >= at)  # no sales row: nothing sold after it
    if sold_after.any():
        lines = [int(i) + 2 for i in np.flatnonzero(sold_after)[:5]]
        shown = ", ".join(f"line {ln}: item_id={visible(products['item_id'].iloc[ln - 2])}" for ln in lines)
        raise DataError(
            f"{tables.products_name}: column 'end_date': {int(sold_after.sum())} product(s) have sales rows in "
            f"{tables.sales_name} after their end_date ({shown}); correct the end_date or drop those rows"
        )
    return np.where(given, at, end)


def _carried(sales: pd.DataFrame, column: str, row, col, n: int, T: int, inside: np.ndarray) -> np.ndarray:
    """A covariate on the grid, carried forward within each series, never backward: a value
    is known from its row on, so a backtest origin before it must not see it (NaN until then;
    a forecast's price plan falls back to the products table's price, forecast.models.base)."""
    grid = np.full((n, T), np.nan)
    grid[row, col] = sales[column].to_numpy(dtype=float)
    return np.where(inside, pd.DataFrame(grid.T).ffill().to_numpy().T, np.nan)
