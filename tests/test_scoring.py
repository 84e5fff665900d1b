"""The backtest's origins and fold targets, and the benchmark's scorer, exactly, on a hand-made panel.

Every figure in README comes through these functions: a cut-off one period off, an item
put in the wrong group or a forecast scored against the wrong week must fail here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.evaluation.backtest import _fold_targets, origins
from forecast.core.config import EvalConfig
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.core.errors import DataError
from forecast.models.base import HISTORY, NEW

from experiments import common  # the splits and the scorer that experiments/benchmark.py uses

MONDAYS = pd.date_range("2024-01-01", periods=10, freq="W-MON")


@pytest.fixture
def panel(tmp_path: Path):
    """Item a sells from period 0 (units 10 + t), b from period 5 (units 100, 101, ...), c never (new)."""
    rows = [("a", MONDAYS[t], 10 + t) for t in range(10)] + [("b", MONDAYS[t], 95 + t) for t in range(5, 10)]
    pd.DataFrame(rows, columns=["item_id", "date", "units"]).to_csv(tmp_path / "sales.csv", index=False)
    pd.DataFrame({"item_id": ["a", "b", "c"], "description": ["red mug", "blue mug", "green mug"]}).to_csv(
        tmp_path / "products.csv", index=False)
    return build_panel(load_tables(tmp_path / "sales.csv", tmp_path / "products.csv"))


def test_origins_step_back_from_the_end() -> None:
    assert origins(41, EvalConfig(horizon=12, folds=3, step=4)) == [21, 25, 29]
    assert origins(10, EvalConfig(horizon=3, folds=2, step=2)) == [5, 7]


def test_origins_drop_folds_without_enough_training_periods_and_refuse_a_short_table() -> None:
    assert origins(10, EvalConfig(horizon=3, folds=3, step=2)) == [5, 7]  # cut-off 3 leaves < 4 periods
    with pytest.raises(DataError, match="too short"):
        origins(6, EvalConfig(horizon=3, folds=1, step=1))


def test_fold_targets_split_history_and_new_at_the_cutoff(panel) -> None:
    fold = _fold_targets(panel, 4, 3)
    ids = panel.item_ids
    assert list(ids[fold.rows[HISTORY]]) == ["a"]
    assert list(ids[fold.rows[NEW]]) == ["b"]  # first sale after the cut-off; c has no truth at all
    np.testing.assert_array_equal(fold.truth[HISTORY], [[14, 15, 16]])  # the 3 periods from the cut-off
    np.testing.assert_array_equal(fold.truth[NEW], [[100, 101, 102]])  # b's first 3 periods from launch


def test_fold_targets_past_the_end_are_nan_and_an_item_selling_before_the_cutoff_is_history(panel) -> None:
    fold = _fold_targets(panel, 8, 3)
    ids = panel.item_ids
    assert list(ids[fold.rows[HISTORY]]) == ["a", "b"]
    assert fold.rows[NEW].size == 0
    np.testing.assert_array_equal(fold.truth[HISTORY], [[18, 19, np.nan], [103, 104, np.nan]])


def _frame(model: str, group: str, items: list[str], first: list[int], values: np.ndarray, **extra) -> pd.DataFrame:
    horizon = values.shape[1]
    return pd.DataFrame({
        "cutoff": MONDAYS[4].strftime("%Y-%m-%d"), "model": model, "group": group, "seed": 0,
        "item_id": np.repeat(items, horizon),
        "date": [MONDAYS[0] + pd.Timedelta(weeks=f + h) for f in first for h in range(horizon)],
        "units": values.ravel(), **extra,
    }).assign(date=lambda f: pd.to_datetime(f["date"]).dt.strftime("%Y-%m-%d"))


def _scores(panel, frame: pd.DataFrame, monkeypatch) -> dict:
    monkeypatch.setattr(common, "HORIZON", 3)
    truth = common.truth_table(panel, [4], (HISTORY, NEW))
    rows, _ = common.score_all("hand", panel, truth, frame)
    return {(r["model"], r["group"], r["cutoff"]): r for r in rows}


def test_scorer_aligns_dates_with_the_truth(panel, monkeypatch) -> None:
    perfect = _frame("perfect", HISTORY, ["a"], [4], np.array([[14.0, 15, 16]]))
    shifted = _frame("shifted", HISTORY, ["a"], [5], np.array([[14.0, 15, 16]]))  # one week late
    new = _frame("new", NEW, ["b"], [5], np.array([[101.0, 101, 101]]))
    scores = _scores(panel, pd.concat([perfect, shifted, new]), monkeypatch)
    assert scores["perfect", HISTORY, "all"]["wape"] == 0.0
    assert scores["perfect", HISTORY, "all"]["coverage"] == 1.0
    # shifted: the week-4 cell is missing (0) and weeks 5, 6 get 14, 15 against 15, 16
    assert scores["shifted", HISTORY, "all"]["wape"] == pytest.approx((14 + 1 + 1) / (14 + 15 + 16))
    assert scores["new", NEW, "all"]["wape"] == pytest.approx((1 + 0 + 1) / (100 + 101 + 102))
    assert scores["new", NEW, "all"]["bias"] == pytest.approx((1 + 0 - 1) / (100 + 101 + 102))


def test_item_errors_sum_to_the_scorer_wape_and_bias(panel, monkeypatch) -> None:
    """The paired comparisons resample these sums: summed over items they must give the scorer's figures."""
    monkeypatch.setattr(common, "HORIZON", 3)
    truth = common.truth_table(panel, [4], (HISTORY, NEW))
    frame = pd.concat([_frame("m", HISTORY, ["a"], [5], np.array([[14.0, 15, 16]])),
                       _frame("m", NEW, ["b"], [5], np.array([[101.0, 101, 101]]))])
    errors = common.item_errors("hand", panel, truth, frame).set_index("group")
    # 0, 14, 15 against 14, 15, 16
    assert errors.loc[HISTORY, ["abs_error", "error", "actual"]].tolist() == [16.0, -16.0, 45.0]
    rows = {r["group"]: r for r in common.score_all("hand", panel, truth, frame)[0] if r["cutoff"] == "all"}
    for group in (HISTORY, NEW):
        assert errors.loc[group, "abs_error"] / errors.loc[group, "actual"] == pytest.approx(rows[group]["wape"])
        assert errors.loc[group, "error"] / errors.loc[group, "actual"] == pytest.approx(rows[group]["bias"])


def test_scorer_counts_a_missing_item_as_zero_and_a_fallback_as_not_covered(panel, monkeypatch) -> None:
    monkeypatch.setattr(common, "HORIZON", 3)
    fold = _fold_targets(panel, 8, 3)
    truth = {(MONDAYS[8].strftime("%Y-%m-%d"), HISTORY): (panel.item_ids[fold.rows[HISTORY]],
                                                           np.full(2, 8), fold.truth[HISTORY], fold.scale[HISTORY])}
    frame = _frame("peer", HISTORY, ["a", "b"], [8, 8], np.array([[18.0, 19, 0], [103, 104, 0]]),
                   fallback=[False] * 3 + [True] * 3).assign(cutoff=MONDAYS[8].strftime("%Y-%m-%d"))
    only_a = frame[frame["item_id"] == "a"].assign(model="half")
    rows, _ = common.score_all("hand", panel, truth, pd.concat([frame, only_a]))
    scores = {r["model"]: r for r in rows if r["cutoff"] == "all"}
    assert scores["peer"]["wape"] == 0.0 and scores["peer"]["coverage"] == 0.5
    assert scores["half"]["wape"] == pytest.approx((103 + 104) / (18 + 19 + 103 + 104))
    assert scores["half"]["coverage"] == 0.5


def test_mean_launch_curve_averages_launches_known_before_the_cutoff(panel, monkeypatch) -> None:
    monkeypatch.setattr(common, "HORIZON", 3)
    assert common.mean_launch_curve(panel, [8]).empty  # no new item at cut-off 8
    frame = common.mean_launch_curve(panel, [4])
    # at cut-off 4 nothing launched inside the training data (a starts in period 0: no launch seen)
    assert frame["item_id"].tolist() == ["b"] * 3 and frame["units"].tolist() == [0.0, 0.0, 0.0]


def test_mean_launch_curve_uses_only_cells_before_the_cutoff(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(common, "HORIZON", 3)
    rows = ([("a", MONDAYS[t], 1) for t in range(10)] + [("b", MONDAYS[t], 10 * (t - 1)) for t in range(2, 10)]
            + [("c", MONDAYS[t], 1000) for t in range(8, 10)])
    pd.DataFrame(rows, columns=["item_id", "date", "units"]).to_csv(tmp_path / "sales.csv", index=False)
    pd.DataFrame({"item_id": list("abc"), "description": ["x", "y", "z"]}).to_csv(tmp_path / "products.csv",
                                                                                  index=False)
    panel = build_panel(load_tables(tmp_path / "sales.csv", tmp_path / "products.csv"))
    frame = common.mean_launch_curve(panel, [4])
    # b launched at 2 with 10, 20, (30 at period 4 = the cut-off: unknown): curve 10, 20, 0 for new item c
    assert frame["item_id"].tolist() == ["c"] * 3 and frame["units"].tolist() == [10.0, 20.0, 0.0]


class _TwoSettings:
    """A model whose one fit forecasts 1s, and as variant "double" 2s: the backtest scores both."""

    name, groups = "two", frozenset({HISTORY})

    def fit(self, panel, horizon):
        pass

    def predict(self, panel, horizon):
        from forecast.models.base import Prediction, forecast_targets

        rows, start = forecast_targets(panel, self.groups)
        ones = np.ones((len(rows), horizon))
        return Prediction(self.name, rows, start, ones, variants={"double": 2 * ones})


def test_backtest_scores_each_prediction_variant_as_a_model(panel) -> None:
    from forecast.evaluation.backtest import run_backtest
    from forecast.models.base import variant_name

    result = run_backtest(panel, {"two": _TwoSettings}, EvalConfig(horizon=3, folds=1, step=1), cutoffs=[4])
    wape = result.summary().set_index("model")["wape"]
    assert wape["two"] == pytest.approx((13 + 14 + 15) / (14 + 15 + 16))
    assert wape["two:double"] == pytest.approx((12 + 13 + 14) / (14 + 15 + 16))
    assert result.best_models()[HISTORY] == "two:double"
    assert variant_name("two:double") == ("two", "double") and variant_name("two") == ("two", None)


def _launch_panel(tmp_path: Path, n: int):
    """n products, product k launched in week k and selling 1 unit a week for 3 weeks."""
    weeks = pd.date_range("2024-01-01", periods=n + 3, freq="W-MON")
    rows = [(f"p{k:03d}", weeks[k + t], 1) for k in range(n) for t in range(3)]
    pd.DataFrame(rows, columns=["item_id", "date", "units"]).to_csv(tmp_path / "sales.csv", index=False)
    pd.DataFrame({"item_id": [f"p{k:03d}" for k in range(n)], "description": ["x"] * n}).to_csv(
        tmp_path / "products.csv", index=False)
    return load_tables(tmp_path / "sales.csv", tmp_path / "products.csv")


def test_visuelle_validation_cutoffs_lie_at_the_40_55_and_70_percent_launches_before_the_reported_one(tmp_path) -> None:
    tables = _launch_panel(tmp_path, 100)
    reported = build_panel(tables, series_end="last-sale")
    assert common.cutoffs_of("visuelle", reported, "reported") == [85]  # the latest 15 % are forecast
    validation = build_panel(common._launched_before(tables, common.visuelle_launch_quantile(tables, 0.85)),
                             series_end="last-sale")
    assert validation.n_items == 85  # the reported launches do not exist in validation
    assert common.cutoffs_of("visuelle", validation, "validation") == [40, 55, 70]


def test_online_retail_validation_origins_lie_12_8_and_4_weeks_before_the_first_reported_one(tmp_path) -> None:
    panel = build_panel(_launch_panel(tmp_path, 39))  # 41 weekly periods, as online_retail
    assert common.cutoffs_of("online_retail", panel, "reported") == [21, 25, 29]
    assert common.cutoffs_of("online_retail", panel, "validation") == [9, 13, 17]


def test_cached_forecasts_are_reused_only_for_the_same_cutoffs(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    assert common.cached(path, ["2024-01-01"]) is None
    pd.DataFrame({"cutoff": ["2024-01-01", "2024-01-08"], "item_id": ["1", "2"], "units": [1.0, 2.0]}).to_csv(
        path, index=False)
    assert common.cached(path, ["2024-01-08", "2024-01-01"])["item_id"].tolist() == ["1", "2"]
    assert common.cached(path, ["2024-01-08"]) is None  # a split whose origins changed runs afresh


def test_targets_hold_the_chosen_model_to_the_best_reference_its_seeds_and_its_bias(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)  # no validation run: fusion's plain forecast
    rows = [("fusion@t", "forecast", 0.60, -0.05, 0.02), ("fusion", "forecast", 0.99, 0.0, 0.0),
            ("knn@t", "forecast", 0.70, 0.0, np.nan), ("lgbm_new_onehot", "peer", 0.66, 0.0, 0.01),
            ("fusion@t [seed avg]", "forecast", 0.50, 0.0, np.nan)]
    table = pd.DataFrame([{"dataset": "online_retail", "group": NEW, "model": m, "source": s, "wape": w, "bias": b,
                           "seed_spread": sp, "seeds": 5} for m, s, w, b, sp in rows])
    goals = {g["target"]: g for g in common.targets(table, [], tag="t")}
    best = goals["online_retail new: fusion@t <= 0.95 x best reference"]
    assert best["bound"] == pytest.approx(0.95 * 0.66) and best["met"]  # the peer, not the seed average
    spread = goals["online_retail new: fusion@t seed spread <= 2 % of its WAPE"]
    assert spread["value"] == 0.02 and spread["bound"] == pytest.approx(0.012) and not spread["met"]
    assert goals["online_retail new: fusion@t |bias| <= 10 %"]["met"]
    chosen = {("online_retail", NEW): "knn@t"}
    named = {g["target"] for g in common.targets(table, [], "t", None, chosen)}
    assert "online_retail new: knn@t |bias| <= 10 %" in named


def test_visuelle_targets_compare_with_the_mean_launch_curve_on_every_origin(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    table = pd.DataFrame([{"dataset": "visuelle", "group": NEW, "model": "fusion", "source": "forecast", "wape": 0.6,
                           "bias": 0.0, "seed_spread": 0.0, "seeds": 5}])
    curve = common.MEAN_LAUNCH_CURVE
    origins = pd.DataFrame([("fusion", "c1", 0.60), (curve, "c1", 0.70), ("fusion", "c2", 0.70), (curve, "c2", 0.70)],
                           columns=["model", "cutoff", "wape"]).assign(dataset="visuelle", group=NEW)
    goals = {g["target"]: g["met"] for g in common.targets(table, [], origins=origins)}
    assert goals["visuelle new, origin c1: fusion <= 0.92 x mean launch curve"]
    assert not goals["visuelle new, origin c2: fusion <= 0.92 x mean launch curve"]
