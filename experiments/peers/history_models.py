"""Contenders for items with sales history: a LightGBM global model and statsforecast.

Each contender has `fit(fold)` and `predict(fold) -> [n_history, H]` so the
runner can time the two separately and treat every library alike.
"""

from __future__ import annotations

from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from peers_data import HISTORY, Fold

LAGS = (1, 2, 3, 4, 8, 12)  # lag 1 = the last observed week (the forecast origin)
WINDOWS = (4, 8, 12, 26)


# --------------------------------------------------------------------------- LightGBM
def _nanmean(x: np.ndarray) -> np.ndarray:
    """Row mean over non-NaN cells; NaN (not a warning) for an all-NaN row."""
    count = (~np.isnan(x)).sum(axis=1)
    total = np.nansum(x, axis=1)
    return np.divide(total, count, out=np.full(len(x), np.nan), where=count > 0)


def origin_features(fold: Fold, origin: int) -> tuple[np.ndarray, list[str]]:
    """Features of every history item as seen at the end of week `origin`.

    Only weeks <= origin are read, so a row built here never sees its target.
    NaN marks "before the item's first sale"; LightGBM routes missing values itself.
    """
    y = fold.units[:, :origin + 1]
    cols, names = [], []
    for lag in LAGS:
        col = origin - lag + 1
        cols.append(y[:, col] if col >= 0 else np.full(len(y), np.nan))
        names.append(f"lag_{lag}")
    for w in WINDOWS:
        cols.append(_nanmean(y[:, max(0, origin - w + 1):]))
        names.append(f"mean_{w}")
    recent = y[:, max(0, origin - 7):]
    cols.append(np.sqrt(np.maximum(_nanmean(recent**2) - _nanmean(recent) ** 2, 0)))
    names.append("std_8")
    last12 = y[:, max(0, origin - 11):]
    cols.append(_nanmean(np.where(np.isnan(last12), np.nan, last12 > 0)))
    names.append("nonzero_share_12")
    age = origin - fold.first_week
    cols.append(age.astype(float))
    names.append("age_weeks")
    sold = np.where(y > 0, np.arange(origin + 1)[None, :], -1).max(axis=1)
    cols.append(np.where(sold >= 0, origin - sold, age + 1).astype(float))
    names.append("weeks_since_sale")
    cols.append(_nanmean(y))
    names.append("mean_since_launch")
    if fold.price is not None:
        last_price = fold.price[:, origin]
        cols.append(last_price)
        cols.append(last_price / _nanmean(fold.price[:, :origin + 1]))
        names += ["price_last", "price_rel"]
    return np.column_stack(cols).astype(np.float32), names


def _target_block(n: int, step: int, target_week: pd.Timestamp) -> np.ndarray:
    """[n, 3]: the step h and the week of year and month of the target week."""
    week = target_week.isocalendar().week
    return np.tile(np.array([step, week, target_week.month], dtype=np.float32), (n, 1))


class LightGBMHistory:
    """M5-style global LightGBM, direct multi-horizon with the step as a feature.

    One model for all items and all steps h = 1..H: a row is (features at
    origin o, h, calendar of week o + h) -> units at o + h. Direct rather than
    recursive, so errors do not compound through 12 fed-back steps and a single
    fit serves every step. Tweedie loss, as in the M5 winners, suits
    intermittent non-negative counts.
    """

    name, group = "lgbm", HISTORY
    max_origins = 52  # the last year of origins is plenty and bounds the row count
    max_rows = 1_000_000

    def __init__(self, seed: int = 0, num_threads: int = 2, rounds: int = 300) -> None:
        self.seed, self.num_threads, self.rounds = seed, num_threads, rounds
        self.booster: lgb.Booster | None = None

    def _rows(self, fold: Fold) -> tuple[np.ndarray, np.ndarray, list[str]]:
        X, y, names = [], [], []
        last = fold.n_weeks - 1
        for origin in range(max(0, last - self.max_origins), last):
            feats, names = origin_features(fold, origin)
            alive = fold.first_week <= origin
            for h in range(1, min(fold.horizon, last - origin) + 1):
                X.append(np.hstack([feats[alive], _target_block(alive.sum(), h, fold.weeks[origin + h])]))
                y.append(fold.units[alive, origin + h])
        X, y = np.vstack(X), np.concatenate(y)
        if len(y) > self.max_rows:
            keep = np.random.default_rng(self.seed).choice(len(y), self.max_rows, replace=False)
            X, y = X[keep], y[keep]
        return X, y, names + ["step", "target_week_of_year", "target_month"]

    def fit(self, fold: Fold) -> None:
        X, y, names = self._rows(fold)
        params = {
            "objective": "tweedie", "tweedie_variance_power": 1.1, "learning_rate": 0.05,
            "num_leaves": 63, "max_bin": 63, "min_data_in_leaf": 100, "feature_fraction": 0.8,
            "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 0.1,
            "num_threads": self.num_threads, "seed": self.seed, "verbose": -1,
            "deterministic": True, "force_row_wise": True,  # bitwise-repeatable with threads
        }
        data = lgb.Dataset(X, np.maximum(y, 0), feature_name=names, free_raw_data=True)
        self.booster = lgb.train(params, data, num_boost_round=self.rounds)

    def predict(self, fold: Fold) -> np.ndarray:
        feats, _ = origin_features(fold, fold.n_weeks - 1)
        dates = fold.history_dates()
        out = np.empty((len(feats), fold.horizon))
        for h in range(1, fold.horizon + 1):
            out[:, h - 1] = self.booster.predict(np.hstack([feats, _target_block(len(feats), h, dates[h - 1])]))
        return out


# ---------------------------------------------------------------------- statsforecast
def long_history(fold: Fold) -> pd.DataFrame:
    """unique_id, ds, y from each item's first sale week (the NaN-free part of the grid)."""
    rows, cols = np.nonzero(~np.isnan(fold.units))
    return pd.DataFrame({
        "unique_id": fold.history_ids[rows], "ds": fold.weeks[cols], "y": fold.units[rows, cols],
    })


class StatsForecastHistory:
    """One statsforecast model, fitted per series.

    Seasonal models get season_length=52 only for series with at least two full
    years; shorter series (nearly all here) are fitted with season_length=1, so a
    52-week season never meets a 30-week series. A model that still fails on a
    series falls back to the series' historic average (statsforecast's own
    `fallback_model`), which never fails.
    """

    group = HISTORY

    def __init__(self, name: str, make: Callable[[int], object], seasonal: bool,
                 season_length: int = 52, n_jobs: int = 1) -> None:
        self.name, self.make, self.seasonal = name, make, seasonal
        self.season_length, self.n_jobs = season_length, n_jobs
        self.fitted: list = []

    def _partitions(self, df: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
        if not self.seasonal:
            return [(1, df)]
        length = df.groupby("unique_id")["y"].transform("size")
        long_enough = length >= 2 * self.season_length
        parts = [(self.season_length, df[long_enough]), (1, df[~long_enough])]
        return [(sl, part) for sl, part in parts if len(part)]

    def fit(self, fold: Fold) -> None:
        from statsforecast import StatsForecast
        from statsforecast.models import HistoricAverage

        self.fitted = []
        for season_length, part in self._partitions(long_history(fold)):
            sf = StatsForecast(models=[self.make(season_length)], freq="W-MON", n_jobs=self.n_jobs,
                               fallback_model=HistoricAverage())
            self.fitted.append(sf.fit(part))

    def predict(self, fold: Fold) -> np.ndarray:
        preds = pd.concat([sf.predict(h=fold.horizon) for sf in self.fitted])
        preds = preds.reset_index() if "unique_id" not in preds.columns else preds
        value = [c for c in preds.columns if c not in ("unique_id", "ds")][0]
        table = preds.pivot(index="unique_id", columns="ds", values=value)
        return table.reindex(index=fold.history_ids, columns=fold.history_dates()).to_numpy(dtype=float)


def statsforecast_contenders(n_jobs: int = 1) -> dict[str, Callable[[], StatsForecastHistory]]:
    """AutoETS, AutoTheta and the intermittent-demand trio, by CLI name."""
    from statsforecast.models import ADIDA, IMAPA, AutoETS, AutoTheta, CrostonOptimized

    def make(name: str, build: Callable[[int], object], seasonal: bool) -> Callable[[], StatsForecastHistory]:
        return lambda: StatsForecastHistory(name, build, seasonal, n_jobs=n_jobs)

    return {
        "autoets": make("autoets", lambda sl: AutoETS(season_length=sl), True),
        "autotheta": make("autotheta", lambda sl: AutoTheta(season_length=sl), True),
        "croston": make("croston", lambda sl: CrostonOptimized(), False),
        "adida": make("adida", lambda sl: ADIDA(), False),
        "imapa": make("imapa", lambda sl: IMAPA(), False),
    }
