"""Exogenous trend signals (weekly search interest per colour, fabric, category, ...).

A signals table (``--signals``) has a ``date`` column and one numeric column per
signal name. It is put on the panel's grid (resampled by averaging when its dates
are not the grid's, which the log states) and may reach before and after the
sales table. A product uses the signals whose names equal one of its attribute
values or description words, case-insensitively.

The leakage rule lives in one function, :func:`signal_windows`: a model sees only
signal values dated strictly before a window's origin (the first forecast period,
which for a new product is its launch, as GTM-Transformer reads the 52 weeks
before release), never values from the forecast periods. In a backtest,
:meth:`Signals.known_before` also hides everything from the cut-off on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.contract import load_signals
from forecast.data.panel import NOT_ATTRIBUTES, Panel, Signals, grid_positions
from forecast.data.words import words
from forecast.core.errors import DataError

log = logging.getLogger(__name__)



def signal_windows(signals: Signals, items: np.ndarray, origins: np.ndarray, length: int) -> np.ndarray:
    """The signal values a model may see for windows (item, origin): [B, length, n_signals].

    Step ``k`` holds grid period ``origin - length + k``, so every value is dated
    strictly before the origin (pass a new product's launch as its origin). NaN
    where the product does not use the signal or the signal has no value then.
    """
    items, origins = np.asarray(items, dtype=int), np.asarray(origins, dtype=int)
    periods = origins[:, None] - length + np.arange(length)[None, :]  # [B, length], all < origin
    column = periods - signals.first
    inside = (column >= 0) & (column < signals.values.shape[1])
    values = signals.values[:, np.clip(column, 0, signals.values.shape[1] - 1)]  # [S, B, length]
    values = np.moveaxis(values, 0, -1)  # [B, length, S]
    visible = inside[..., None] & signals.used[items][:, None, :]
    return np.where(visible, values, np.nan)


def attach_signals(panel: Panel, path: str | Path, date_format: str | None = None) -> Panel:
    """The panel with the signals of ``path`` on its grid and each product's matches."""
    frame, file = load_signals(path, date_format)
    values, first = on_grid(panel, frame, file)
    _check_overlap(panel, first, first + values.shape[1] - 1, file)
    names = [c for c in frame.columns if c != "date"]
    items = match_products(panel.products, names, file)
    return replace(panel, signals=Signals(names, values, first, items))


def _check_overlap(panel: Panel, first: int, last: int, file: str) -> None:
    """Signals that end before the sales start are never seen (a model reads only values dated before
    its origin, within its context window): refused. Signals that stop long before the table ends leave
    the latest forecasts without them: said, with the gap."""
    T, season = panel.n_periods, panel.season_length or 52
    start, stop = panel.date_at(np.array([first, last]))
    if last < 0:
        raise DataError(f"{file}: the signals end on {stop.date()}, {-last} period(s) before the sales start on "
                        f"{panel.dates[0].date()}: no forecast would ever see a value; give signals that cover the "
                        f"sales period")
    if first >= T:
        log.warning("%s: the signals start on %s, after the sales end on %s: only launches after that see them",
                    file, start.date(), panel.dates[-1].date())
    if T - 1 - last > season:
        log.warning("%s: the signals end on %s, %d periods before the sales end on %s: forecasts from the latest "
                    "origins see no signal values", file, stop.date(), T - 1 - last, panel.dates[-1].date())


def on_grid(panel: Panel, frame: pd.DataFrame, file: str) -> tuple[np.ndarray, int]:
    """[n_signals, P] values on the panel's grid from position ``first``; off-grid dates are averaged
    into the period holding them, and periods without a value carry the last one forward."""
    offset = pd.tseries.frequencies.to_offset(panel.freq)
    position = grid_positions(panel.dates, offset, frame["date"], "right") - 1
    on = (panel.date_at(position) == pd.DatetimeIndex(frame["date"])).all() and not pd.Series(position).duplicated().any()
    numbers = frame.drop(columns="date")
    if not on:
        log.info("%s: %d dates are not on the %s grid: averaged into the %d periods holding them",
                 file, len(frame), panel.freq, pd.Series(position).nunique())
    per_period = numbers.groupby(position).mean()
    first = int(per_period.index.min())
    span = per_period.reindex(np.arange(first, int(per_period.index.max()) + 1))
    missing = int(span.iloc[:, 0].isna().sum())
    if missing:
        log.info("%s: %d period(s) without a signal value carry the previous value forward", file, missing)
    return span.ffill().to_numpy(dtype=float).T, first


def match_products(products: pd.DataFrame, names: list[str], file: str) -> list[np.ndarray]:
    """Per product, the indices of the signals named like one of its attribute values or words."""
    index = {name.strip().lower(): k for k, name in enumerate(names)}
    attributes = [c for c in products.columns if c not in NOT_ATTRIBUTES]
    text = products[attributes].astype(str).apply(lambda col: col.str.strip().str.lower())
    items = []
    for row, description in enumerate(products["description"]):
        keys = set(text.iloc[row]) | words(description)
        items.append(np.array(sorted(index[k] for k in keys if k in index), dtype=int))
    _log_matches(items, text, index, file)
    return items


def _log_matches(items: list[np.ndarray], text: pd.DataFrame, index: dict[str, int], file: str) -> None:
    counts = Counter(len(picks) for picks in items)
    summary = ", ".join(f"{n} product(s) use {k}" for k, n in sorted(counts.items(), reverse=True))
    log.info("signals from %s: %d signal(s); %s", file, len(index), summary)
    unmatched = [f"{col}={value}" for col in text.columns for value in sorted(text[col].unique())
                 if value not in index and value not in ("", "nan")]
    if unmatched:
        shown = ", ".join(unmatched[:12]) + (f", ... ({len(unmatched)} in all)" if len(unmatched) > 12 else "")
        log.info("attribute values with no signal: %s", shown)
