"""The seasonal trend of a forecast, its direction, and the trend report by attribute and word.

Definitions (docs/methods.md, "Trends"):

- **trend**: the centred moving average of units over ``window`` periods (default
  9 weeks), taken over the item's history followed by its forecast; at the ends
  of the series the window shrinks to what exists. It smooths week-to-week noise
  and promotions away and keeps the seasonal level.
- **trend_direction** of a product, one for its whole horizon: the total of its trend
  over the forecast periods compared with the total of its trend over the same periods
  one season earlier (52 weeks for weekly data) where the history reaches that far
  back, otherwise the trend at the end of the history. ``rising`` when higher by more
  than ``threshold`` (default 10%) and by more than Poisson noise of those totals could
  make it (:func:`horizon_direction`), ``falling`` likewise, else ``flat``; ``new``
  for products with no history.
- **trend report**: for every attribute value (category, colour, ...) and every
  description word shared by at least ``min_products`` products, the forecast
  units over the horizon against the same items' units over the reference periods,
  the relative change, an empirical-Bayes estimate of it that shrinks small groups
  toward the overall change, its interval, and a direction that is ``rising`` or
  ``falling`` only when the change is both material and sure (:func:`shrink`, docs/methods.md "Trends").
- **model effect** of a word: how much a text-reading neural model's forecast moves
  when the word is removed from the descriptions that hold it (:func:`occlusion`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecast.data.panel import Panel, attribute_columns
from forecast.data.smoothing import centred_moving_average
from forecast.data.words import remove_word, words
from forecast.core.errors import DataError
from forecast.evaluation.intervals import QUANTILE_COLUMN, range_columns
from forecast.models.base import Prediction

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from forecast.models.neural.estimator import NeuralEstimator

log = logging.getLogger(__name__)

RISING, FALLING, FLAT, NEW_ITEM = "rising", "falling", "flat", "new"
OVERALL = "all"  # the report's first row: every product in it, the change the groups are shrunk toward
Z_SURE = 1.96  # a product's direction: its change must exceed ~95% Poisson noise of its totals (horizon_direction)
PSEUDO = 0.5  # units added to both sides of a log change, so that 0 -> 9 units is finite and uncertain
REPORT_COLUMNS = ["dimension", "value", "products", "reference_units", "forecast_units", "forecast_lo",
                  "forecast_hi", "change", "shrunk_change", "change_lo", "change_hi", "direction"]


def z_score(level: float) -> float:
    """Half-width of a central ``level`` interval in standard errors (1.2816 for 0.8)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def report_level(export: pd.DataFrame, fallback: float) -> float:
    """The level of the export's forecast range, read from its quantile columns (units_p5 and
    units_p95: 0.9), or ``fallback`` (the configured evaluation.interval) when it has none. The
    report's own intervals are at that level too."""
    found = range_columns(list(export.columns))
    return found[2] if found else fallback


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
    directions = np.full((m, h), NEW_ITEM, dtype=object)
    season = panel.season_length
    with_history = panel.has_history[forecast.item_index]
    if forecast.trend is not None:
        trend = np.array(forecast.trend, dtype=float)
    else:  # a new product's trend is that of its forecast alone: all of them at once (100,000 in a catalogue)
        trend = np.empty((m, h))
        trend[~with_history] = centred_moving_average(forecast.units[~with_history], window)
    for k in np.flatnonzero(with_history):
        row = forecast.item_index[k]
        history = panel.history(row)
        if forecast.trend is None:
            tail = history[-window:]
            trend[k] = centred_moving_average(np.concatenate([tail, forecast.units[k]]), window)[len(tail):]
        if not len(history):
            continue
        smooth_history = centred_moving_average(history, window)
        lagged = forecast.start[k] + np.arange(h) - season - panel.start[row]
        reference = np.where(lagged >= 0, smooth_history[np.clip(lagged, 0, len(history) - 1)], smooth_history[-1])
        directions[k] = horizon_direction(trend[k], reference, threshold)
    return trend, directions


def horizon_direction(trend: np.ndarray, reference: np.ndarray, threshold: float) -> str:
    """One direction for a product over its whole horizon: its trend's total against the reference's.

    ``rising``/``falling`` only when the relative change passes ``threshold`` *and* the difference
    is larger than Poisson noise could make it (|F − R| > Z_SURE·√(F + R) units, F and R the two
    totals); otherwise ``flat``, so that 0.1 → 0.3 units a week is not called rising.
    """
    new, old = float(np.nansum(trend)), float(np.nansum(reference))
    if abs(new - old) <= Z_SURE * np.sqrt(max(new + old, 0.0)):
        return FLAT
    return str(direction(relative_change(np.array([new]), np.array([old])), threshold)[0])


def reference_units(panel: Panel, rows: np.ndarray, horizon: int) -> np.ndarray:
    """Units of the comparison periods: a season earlier where the data reaches, else the last H periods."""
    return np.nansum(panel.units[np.ix_(rows, _reference_columns(panel.n_periods, panel.season_length, horizon))],
                     axis=1)


def _reference_columns(T: int, season: int, horizon: int) -> np.ndarray:
    """The H periods that periods T..T+H-1 are compared with."""
    if horizon <= season <= T:
        return np.arange(T - season, T - season + horizon)
    return np.arange(max(T - horizon, 0), T)


def compared_weeks(panel: Panel, export: pd.DataFrame) -> str:
    """Which periods the report compares, in words: the forecast's dates against the reference's."""
    horizon = int(export.groupby("item_id").size().max())
    reference = panel.date_at(_reference_columns(panel.n_periods, panel.season_length, horizon))
    forecast = panel.date_at(np.arange(panel.n_periods, panel.n_periods + horizon))
    unit = "weeks" if panel.freq.startswith("W") else "periods"
    return (f"{unit} {forecast[0].date()} to {forecast[-1].date()} (forecast) vs "
            f"{reference[0].date()} to {reference[-1].date()} (the same items' sales)")


def reference_dispersion(panel: Panel, rows: np.ndarray, horizon: int) -> float:
    """Squared relative error c² of an item's H-period total beyond Poisson noise, from the history.

    The reference rule is backtested on the last H observed periods: A = units in them,
    P = units in their reference periods (a season earlier where the history reaches,
    else the H periods before), over the items whose series covers both. Since
    E(A − P)² ≈ A + P + c²(A² + P²) for independent Poisson counts with relative error c,
    c² = max(0, Σ[(A − P)² − A − P]) / Σ(A² + P²). 0 (Poisson noise only) when the history
    is shorter than 2H periods. A stand-in for the model's backtest error when the forecast
    has no range columns: it is the reference rule's error, which the models beat.
    """
    T = panel.n_periods
    if T < 2 * horizon:
        return 0.0
    target = np.arange(T - horizon, T)
    ref = _reference_columns(T - horizon, panel.season_length, horizon)
    covered = (panel.start[rows] <= ref[0]) & (panel.end[rows] >= T)
    rows = rows[covered]
    a = np.nansum(panel.units[np.ix_(rows, target)], axis=1)
    p = np.nansum(panel.units[np.ix_(rows, ref)], axis=1)
    scale = float(np.sum(a ** 2 + p ** 2))
    return max(0.0, float(np.sum((a - p) ** 2 - a - p)) / scale) if scale > 0 else 0.0


def item_totals(export: pd.DataFrame, dispersion: float, level: float) -> pd.DataFrame:
    """Per item: forecast units over the horizon and the squared half-widths of its ``level`` range.

    With the export's forecast range (its first pair of quantile columns, e.g. ``units_p10`` and
    ``units_p90``, whose level is ``level``) an item's range is the sum of its periods' bounds (an
    item's errors move together across its weeks). An item without them gets the band
    ±Z·√(F + c²F²) (Poisson noise plus the relative error c² of :func:`reference_dispersion`),
    Z = :func:`z_score` of ``level``.
    """
    lower, upper, _ = range_columns(list(export.columns)) or (None, None, level)
    frame = export.assign(down=export["units"] - (export[lower] if lower else np.nan),
                          up=(export[upper] if upper else np.nan) - export["units"])
    grouped = frame.groupby("item_id", sort=False)
    totals = pd.DataFrame({"units": grouped["units"].sum(),
                           "down": grouped["down"].sum(min_count=1), "up": grouped["up"].sum(min_count=1)})
    missing = (frame["down"].isna() | frame["up"].isna()).groupby(frame["item_id"], sort=False).any()
    band = z_score(level) * np.sqrt(totals["units"] + dispersion * totals["units"] ** 2)
    totals.loc[missing, "down"] = band[missing]
    totals.loc[missing, "up"] = band[missing]
    totals["down2"], totals["up2"] = totals["down"].clip(lower=0) ** 2, totals["up"].clip(lower=0) ** 2
    return totals.drop(columns=["down", "up"])


FORECAST_REQUIRED = ("item_id", "date", "units")


def read_forecast(path: Path, panel: Panel) -> pd.DataFrame:
    """The item_id, units (and the range's quantile columns, e.g. units_p10 and units_p90, when
    present) of a forecast CSV written by ``fit``.

    Checked as strictly as fit checks its tables, naming the file, column and lines: units and
    their range are non-negative numbers with ``units_lo <= units_hi``, dates readable, one row per
    (item_id, date), every item a product of the panel (a forecast made from other tables would
    otherwise give an empty report without a word), and its products with history forecast after
    their history (a sales table given as the forecast lies wholly inside it: refused). Item ids
    that the export neutralised as formulas (a leading ``'``) are read back as they were.
    """
    from forecast.data.contract import _fail_rows, parse_dates, parse_numeric, read_table, require_columns, visible

    if not path.is_file():
        raise DataError(f"{path}: forecast file not found; run `python -m forecast fit --export {path}` first")
    frame = read_table(path)
    require_columns(frame, FORECAST_REQUIRED, path.name)
    item_ids = frame["item_id"].astype(str).str.replace(r"^'(?=[=+\-@\t\r])", "", regex=True).str.normalize("NFC")
    export = pd.DataFrame({"item_id": item_ids, "units": parse_numeric(frame, "units", path.name)})
    dates = parse_dates(frame, "date", path.name)
    _fail_rows(path.name, "date", "duplicate an (item_id, date) pair: a forecast has one row per product and "
               "period", pd.DataFrame({"i": item_ids, "d": dates}).duplicated(keep=False), frame)
    for column in (c for c in frame.columns if QUANTILE_COLUMN.fullmatch(c)):
        blank = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        export[column] = np.nan
        export.loc[~blank, column] = parse_numeric(frame[~blank], column, path.name)
    for column in [c for c in export.columns if c == "units" or QUANTILE_COLUMN.fullmatch(c)]:
        _fail_rows(path.name, column, "are negative: a forecast never is (was the file edited?)",
                   export[column].lt(0), frame)
    if (pair := range_columns(list(export.columns))) is not None:
        low, high, _ = pair
        _fail_rows(path.name, low, f"lie above {high}: a range runs from {low} up to {high}",
                   export[low].gt(export[high]), frame)
    if {"units_lo", "units_hi"} <= set(frame.columns) and range_columns(list(export.columns)) is None:
        log.warning("%s: units_lo/units_hi (an export of an earlier version) do not say their level; the report "
                    "uses a Poisson band instead (re-export with fit or predict for units_p10/units_p90)", path.name)
    unknown = pd.unique(item_ids[~item_ids.isin(set(panel.item_ids))])
    if len(unknown):
        shown = ", ".join(map(visible, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise DataError(f"{path.name}: column 'item_id': {len(unknown)} item(s) are not in the products table "
                        f"({shown}); give the --sales and --products the forecast was made from")
    _check_forecast_dates(path, panel, item_ids, dates)
    return export


def _check_forecast_dates(path: Path, panel: Panel, item_ids: pd.Series, dates: pd.Series) -> None:
    """A forecast of products with history starts after their history. Rows all dated inside it are a
    sales table given as the forecast (refused); some of them, a forecast made from older sales than
    --sales holds (said at WARNING: the report's reference weeks may not match it)."""
    history = item_ids.isin(set(panel.item_ids[panel.has_history])).to_numpy()
    old = history & (dates <= panel.dates[-1]).to_numpy()
    if not old.any():
        return
    first = f"e.g. line {int(np.flatnonzero(old)[0]) + 2}: item_id={item_ids[old].iloc[0]} date={dates[old].iloc[0].date()}"
    if old.sum() == history.sum():
        raise DataError(f"{path}: every row of the products with history is dated inside their sales history (up to "
                        f"{panel.dates[-1].date()}; {first}): this looks like a sales table, not a forecast; give "
                        f"--forecast the CSV that fit or predict wrote")
    log.warning("%s: %d forecast row(s) of products with history are dated on or before the sales' last period %s "
                "(%s): the forecast was made from older sales than --sales holds", path, int(old.sum()),
                panel.dates[-1].date(), first)


def trend_report(panel: Panel, export: pd.DataFrame, threshold: float, min_products: int, level: float,
                 attributes: list[str] | None = None) -> pd.DataFrame:
    """Which attribute values and description words are forecast to rise or fall, how much, how surely.
    ``level``: of the export's forecast range and of the report's intervals (:func:`report_level`)."""
    horizon = int(export.groupby("item_id").size().max())
    rows = np.flatnonzero(panel.has_history & pd.Index(panel.item_ids).isin(export["item_id"].unique()))
    item_ids = panel.item_ids[rows]
    totals = item_totals(export, reference_dispersion(panel, rows, horizon), level).reindex(item_ids)
    items = pd.DataFrame({"forecast_units": totals["units"].to_numpy(),
                          "reference_units": reference_units(panel, rows, horizon),
                          "down2": totals["down2"].to_numpy(), "up2": totals["up2"].to_numpy()})
    products = panel.products.iloc[rows].reset_index(drop=True)
    attributes = attributes if attributes is not None else attribute_columns(products)
    parts = [_groups(items, column, products[column].astype(str)) for column in attributes]
    vocab = products["description"].map(words).explode().dropna()
    parts.append(_groups(items.loc[vocab.index], "word", vocab))
    groups = pd.concat(parts, ignore_index=True)
    groups = groups[groups["products"] >= min_products].reset_index(drop=True)
    if groups.empty:
        return pd.DataFrame(columns=REPORT_COLUMNS)
    everything = _groups(items, OVERALL, pd.Series("all products", index=items.index))
    report = pd.concat([shrink(everything, everything.iloc[0], threshold, level),  # what the others shrink toward
                        shrink(groups, everything.iloc[0], threshold, level)], ignore_index=True)
    report = report.sort_values(["dimension", "shrunk_change"], ascending=[True, False], kind="stable")
    return report[REPORT_COLUMNS].reset_index(drop=True)


def _groups(items: pd.DataFrame, dimension: str, keys: pd.Series) -> pd.DataFrame:
    """Sums per key: units, and the range's half-widths in quadrature (items' errors independent)."""
    sums = items.groupby(keys.to_numpy()).agg(
        products=("forecast_units", "size"), reference_units=("reference_units", "sum"),
        forecast_units=("forecast_units", "sum"), down2=("down2", "sum"), up2=("up2", "sum"))
    sums["forecast_lo"] = (sums["forecast_units"] - np.sqrt(sums.pop("down2"))).clip(lower=0)
    sums["forecast_hi"] = sums["forecast_units"] + np.sqrt(sums.pop("up2"))
    return sums.rename_axis("value").reset_index().assign(dimension=dimension)


def shrink(groups: pd.DataFrame, overall: pd.Series, threshold: float, level: float) -> pd.DataFrame:
    """The change of each group, shrunk toward the overall change, its interval and its direction.

    On the log scale, l = log((F + ½)/(R + ½)) with standard error
    s² = (σ_F/(F + ½))² + 1/(R + ½): the forecast's error σ_F = (forecast_hi − forecast_lo)/(2Z)
    and the reference's Poisson noise. The groups' true log changes are taken as spread around
    the overall one l₀ with variance τ² = max(0, Σw(l − l₀)² − k)/Σw, w = 1/s², over the report's
    k rows (DerSimonian–Laird's moment estimate, so a few noisy tiny groups do not inflate it);
    each is estimated as l₀ + B(l − l₀), B = τ²/(τ² + s²), with variance
    B s² + (1 − B)² s₀². So a group of a few units moves little from the overall change, one
    of thousands keeps its own. ``direction`` is ``rising`` when the shrunk change exceeds
    +threshold and its ``level`` interval (Z = :func:`z_score` of it, the export's range level)
    lies above 0, ``falling`` when below −threshold and the interval lies below 0, else ``flat``.
    """
    z = z_score(level)

    def log_change(f, r, lo, hi):
        se2 = ((hi - lo) / (2 * z) / (f + PSEUDO)) ** 2 + 1 / (r + PSEUDO)
        return np.log((f + PSEUDO) / (r + PSEUDO)), se2

    out = groups.copy()
    cols = ["forecast_units", "reference_units", "forecast_lo", "forecast_hi"]
    ell, se2 = log_change(*(out[c].to_numpy(float) for c in cols))
    ell0, se20 = log_change(*(float(overall[c]) for c in cols))
    precision = 1 / se2
    tau2 = max(0.0, float(np.sum(precision * (ell - ell0) ** 2) - len(out)) / float(np.sum(precision)))
    weight = tau2 / (tau2 + se2)
    centre = ell0 + weight * (ell - ell0)
    sd = np.sqrt(weight * se2 + (1 - weight) ** 2 * se20)
    out["change"] = relative_change(out["forecast_units"], out["reference_units"])
    out["shrunk_change"], out["change_lo"], out["change_hi"] = (np.expm1(centre), np.expm1(centre - z * sd),
                                                                np.expm1(centre + z * sd))
    out["direction"] = direction_of(out["shrunk_change"], out["change_lo"], out["change_hi"], threshold)
    for column in ("reference_units", "forecast_units", "forecast_lo", "forecast_hi"):
        out[column] = out[column].round(2)
    for column in ("change", "shrunk_change", "change_lo", "change_hi"):
        out[column] = out[column].round(4)
    return out


def direction_of(change, lo, hi, threshold: float) -> np.ndarray:
    """rising: change above +threshold and its interval above 0; falling: the mirror; else flat."""
    change, lo, hi = (np.asarray(a, dtype=float) for a in (change, lo, hi))
    out = np.full(change.shape, FLAT, dtype=object)
    out[(change > threshold) & (lo > 0)] = RISING
    out[(change < -threshold) & (hi < 0)] = FALLING
    return out


# --- why the model thinks so: occlusion of description words --------------------------
def occlusion(model: "NeuralEstimator", panel: Panel, rows: np.ndarray, drop: list[str],
              horizon: int) -> pd.DataFrame:
    """Forecast units over ``horizon`` of each (row, word) pair with and without the word.

    The saved model forecasts one panel: every product as it is, followed by one copy of a
    product per word to drop, its description without that word (everything else equal). Both
    halves see the same products around them, so retrieval features (a description's nearest
    neighbours among all products, never a copy) are those of the real forecast.
    """
    rows = np.asarray(rows, dtype=int)
    edited = panel.products.iloc[rows].copy()
    edited["description"] = [remove_word(d, w) for d, w in zip(edited["description"], drop)]
    both = panel.take(np.concatenate([np.arange(panel.n_items), rows]), pd.concat([panel.products, edited]))
    totals = _horizon_totals(model, both, horizon)
    return pd.DataFrame({"row": rows, "word": drop, "units": totals[rows], "without": totals[panel.n_items:]})


def _horizon_totals(model: "NeuralEstimator", panel: Panel, horizon: int) -> np.ndarray:
    """Forecast units over the horizon per row of the panel (NaN for a row not forecast)."""
    forecast = model.predict(panel, horizon)
    totals = np.full(panel.n_items, np.nan)
    totals[forecast.item_index] = forecast.units.sum(axis=1)
    return totals


def word_effects(model: "NeuralEstimator", panel: Panel, report: pd.DataFrame, export: pd.DataFrame) -> pd.DataFrame:
    """The report with ``model_effect`` (mean units a word adds to a product's forecast over the
    horizon: with it minus without it) and ``model_effect_pct`` (100 × Σ(with − without) / Σ without)
    beside its word rows; NaN for attribute values."""
    horizon = min(int(export.groupby("item_id").size().max()), model.horizon)
    wanted = set(report.loc[report["dimension"] == "word", "value"])
    rows = np.flatnonzero(panel.has_history & pd.Index(panel.item_ids).isin(export["item_id"].unique()))
    pairs = [(r, w) for r in rows for w in sorted(words(panel.products["description"].iloc[r]) & wanted)]
    if not pairs:
        return report.assign(model_effect=np.nan, model_effect_pct=np.nan)
    pair_rows, drop = zip(*pairs)
    effects = _summarise(occlusion(model, panel, np.array(pair_rows), list(drop), horizon), "word")
    merged = report.merge(effects.rename(columns={"word": "value"}).assign(dimension="word"),
                          on=["dimension", "value"], how="left")
    return merged


def item_effects(model: "NeuralEstimator", panel: Panel, item_id: str) -> pd.DataFrame:
    """Which words of one product's description raise or lower its forecast, largest first."""
    found = np.flatnonzero(panel.item_ids == item_id)
    if not len(found):
        raise DataError(f"--item {item_id!r}: not in the products table")
    row = int(found[0])
    vocab = sorted(words(panel.products["description"].iloc[row]))
    if not vocab:
        raise DataError(f"--item {item_id!r}: its description has no word of 3 letters or more to remove")
    pairs = occlusion(model, panel, np.full(len(vocab), row), vocab, model.horizon)
    if pairs["units"].isna().all():
        raise DataError(f"--item {item_id!r}: the model makes no forecast for it (its series has ended)")
    return _summarise(pairs, "word").sort_values("model_effect", ascending=False, kind="stable",
                                                 ignore_index=True)


def _summarise(pairs: pd.DataFrame, key: str) -> pd.DataFrame:
    delta = pairs["units"] - pairs["without"]
    sums = pairs.assign(delta=delta).groupby(key).agg(model_effect=("delta", "mean"), delta=("delta", "sum"),
                                                      without=("without", "sum"))
    pct = 100 * sums["delta"] / sums["without"].where(sums["without"] > 0)
    return pd.DataFrame({key: sums.index, "model_effect": sums["model_effect"].round(3).to_numpy(),
                         "model_effect_pct": pct.round(2).to_numpy()})
