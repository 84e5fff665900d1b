"""Data loading and the cut-off split shared by every peer contender.

The split must match the main benchmark's task definition exactly, so it lives
in one place: every model reads the same `Fold` and never touches rows dated on
or after the cut-off (except the launch week of new items, which the planner is
assumed to know).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

WEEK = pd.Timedelta(weeks=1)
HISTORY, NEW = "history", "new"


@dataclass(frozen=True)
class Dataset:
    """The two tables of the data contract, typed and sorted."""

    sales: pd.DataFrame  # item_id (str), date (Monday), units, [price]
    products: pd.DataFrame  # indexed by item_id (str): description, [attributes]

    @property
    def start(self) -> pd.Timestamp:
        return self.sales["date"].min()

    @property
    def end(self) -> pd.Timestamp:
        """Last week with data: truth exists only up to here."""
        return self.sales["date"].max()

    @property
    def has_price(self) -> bool:
        return "price" in self.sales.columns


def load_dataset(sales_path: Path, products_path: Path) -> Dataset:
    """Read the contract CSVs; item ids stay strings (online_retail has '10123C')."""
    sales = pd.read_csv(sales_path, dtype={"item_id": str}, parse_dates=["date"])
    products = pd.read_csv(products_path, dtype={"item_id": str}).set_index("item_id")
    products["description"] = products["description"].fillna("").astype(str)
    sales = sales.sort_values(["item_id", "date"], kind="stable").reset_index(drop=True)
    return Dataset(sales=sales, products=products)


@dataclass
class Fold:
    """Everything a model may see at one cut-off, on a dense weekly grid.

    `units` is [n_history, T] over `weeks` (data start .. cut-off - 1 week), zero
    where an item sold nothing and NaN before its first sale, so each item's
    series runs from its first sale week to the week before the cut-off.
    """

    cutoff: pd.Timestamp
    horizon: int
    weeks: pd.DatetimeIndex
    history_ids: np.ndarray  # [n_history] str
    units: np.ndarray  # [n_history, T] float
    price: np.ndarray | None  # [n_history, T] float, forward-filled; None without prices
    first_week: np.ndarray  # [n_history] index into weeks of the first sale
    new_ids: np.ndarray  # [n_new] str
    new_launch: pd.DatetimeIndex  # [n_new] first sale week (the known launch week)
    products: pd.DataFrame

    @property
    def n_weeks(self) -> int:
        return len(self.weeks)

    def history_dates(self) -> pd.DatetimeIndex:
        """The H forecast weeks of every history item: c, c+1w, ..."""
        return pd.DatetimeIndex([self.cutoff + k * WEEK for k in range(self.horizon)])

    def launch_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Training examples for new-item models: launches inside the training data.

        An item launched in the training data contributes its first H weeks after
        its first sale, as many of them as lie before the cut-off. Items whose
        first sale is the data's first week are left out: their series is
        left-censored (they sold before the data began), so that week is no launch.
        Returns (item_ids, launch_dates, steps 0..H-1, units), one entry per row.
        """
        ids, launches, steps, target = [], [], [], []
        for i in np.flatnonzero(self.first_week > 0):
            first = self.first_week[i]
            n_obs = min(self.horizon, self.n_weeks - first)
            ids.extend([self.history_ids[i]] * n_obs)
            launches.extend([self.weeks[first]] * n_obs)
            steps.extend(range(n_obs))
            target.extend(self.units[i, first:first + n_obs])
        return (np.asarray(ids, dtype=object), pd.DatetimeIndex(launches),
                np.asarray(steps, dtype=int), np.asarray(target, dtype=float))


def make_fold(data: Dataset, cutoff: pd.Timestamp, horizon: int,
              max_items: int | None = None, seed: int = 0) -> Fold:
    """Split at `cutoff` (a Monday, the first forecast week).

    `max_items` keeps a seeded random sample of at most that many history items
    and as many new items, for quick runs.
    """
    if cutoff.dayofweek != 0:
        raise ValueError(f"cut-off {cutoff.date()} is not a Monday")
    first_sale = data.sales.groupby("item_id")["date"].min()
    history_ids = np.sort(first_sale.index[first_sale < cutoff].to_numpy(dtype=object))
    new_first = first_sale[first_sale >= cutoff].sort_index()
    rng = np.random.default_rng(seed)
    if max_items is not None:
        if len(history_ids) > max_items:
            history_ids = np.sort(rng.choice(history_ids, max_items, replace=False))
        if len(new_first) > max_items:
            new_first = new_first.loc[np.sort(rng.choice(new_first.index.to_numpy(), max_items, replace=False))]

    weeks = pd.date_range(data.start, cutoff - WEEK, freq="W-MON")
    train = data.sales[(data.sales["date"] < cutoff) & data.sales["item_id"].isin(history_ids)]
    units = _grid(train, "units", history_ids, weeks).fillna(0.0).to_numpy()
    first_week = weeks.get_indexer(first_sale.loc[history_ids])
    before_launch = np.arange(len(weeks))[None, :] < first_week[:, None]
    units[before_launch] = np.nan
    price = None
    if data.has_price:
        price = _grid(train, "price", history_ids, weeks).ffill(axis=1).to_numpy()
    return Fold(
        cutoff=cutoff, horizon=horizon, weeks=weeks, history_ids=history_ids,
        units=units, price=price, first_week=first_week,
        new_ids=new_first.index.to_numpy(dtype=object),
        new_launch=pd.DatetimeIndex(new_first.to_numpy()), products=data.products,
    )


def _grid(sales: pd.DataFrame, column: str, ids: np.ndarray, weeks: pd.DatetimeIndex) -> pd.DataFrame:
    """item x week table of one column, NaN where there is no row."""
    aggfunc = "sum" if column == "units" else "mean"
    table = sales.pivot_table(index="item_id", columns="date", values=column, aggfunc=aggfunc)
    return table.reindex(index=ids, columns=weeks).astype(float)


def truth_frame(data: Dataset, forecasts: pd.DataFrame) -> pd.Series:
    """Actual units for each forecast row: 0 for a week without a row, NaN past the data's end."""
    actual = data.sales.set_index(["item_id", "date"])["units"]
    keys = pd.MultiIndex.from_arrays([forecasts["item_id"].astype(str), pd.to_datetime(forecasts["date"])])
    values = actual.reindex(keys).to_numpy(dtype=float)
    values = np.where(np.isnan(values), 0.0, values)
    values[pd.to_datetime(forecasts["date"]).to_numpy() > data.end.to_datetime64()] = np.nan
    return pd.Series(values, index=forecasts.index)
