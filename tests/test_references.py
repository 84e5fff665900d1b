"""The simple references as models: the mean launch curve for new products, and Croston (SBA),
TSB and IMAPA for items with history, each exactly against a hand computation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.holtwinters import SimpleExpSmoothing

from forecast.evaluation.backtest import run_backtest
from forecast.cli import main
from forecast.models.baselines.knn import knn_launch_forecast, mean_launch_curve
from forecast.models.baselines.statistical import (
    IMAPA,
    TSB,
    Croston,
    demand_intervals,
    forecast_many,
    optimised_alpha,
    ses,
    ses_sse,
)
from forecast.core.config import EvalConfig, RunConfig
from forecast.data.contract import load_tables
from forecast.data.panel import Panel, Signals, attribute_columns, build_panel
from forecast.core.errors import DataError
from forecast.models import registry
from forecast.models.base import HISTORY, NEW

WEEKS = pd.date_range("2024-01-01", periods=16, freq="W-MON")
INTERMITTENT = np.array([0.0, 3.0, 0.0, 0.0, 5.0, 0.0, 2.0])  # sizes 3, 5, 2; intervals 2, 3, 2


def panel_from(tmp_path: Path, sales: list[tuple[str, int, float]], items: list[str], **attributes: list[str]):
    """A weekly panel from (item, week, units) rows; products without rows are new."""
    frame = pd.DataFrame([(i, WEEKS[t], u) for i, t, u in sales], columns=["item_id", "date", "units"])
    frame.to_csv(tmp_path / "sales.csv", index=False)
    pd.DataFrame({"item_id": items, "description": [f"product {i}" for i in items], **attributes}).to_csv(
        tmp_path / "products.csv", index=False)
    return build_panel(load_tables(tmp_path / "sales.csv", tmp_path / "products.csv"))


# ------------------------------------------------------------------ exponential smoothing


def test_ses_is_statsmodels_simple_exponential_smoothing_from_the_first_value():
    y = np.array([4.0, 7.0, 1.0, 0.0, 9.0, 3.0])
    expected = SimpleExpSmoothing(y, initialization_method="known", initial_level=y[0]).fit(
        smoothing_level=0.3, optimized=False).forecast(1)[0]
    assert ses(y, 0.3) == pytest.approx(expected, rel=1e-12)
    assert ses(np.array([3.0, 5.0, 2.0]), 0.1) == pytest.approx(3.08, rel=1e-12)  # 3 -> 3.2 -> 3.08
    assert ses(np.array([6.0]), 0.1) == 6.0


def test_optimised_alpha_minimises_the_one_step_errors_inside_the_bounds():
    y = np.array([5.0, 9.0, 2.0, 8.0, 3.0, 7.0, 1.0, 6.0])
    grid = np.linspace(0.1, 0.3, 20001)
    best = grid[np.argmin([ses_sse(y, a) for a in grid])]
    assert optimised_alpha(y) == pytest.approx(best, abs=2e-5)
    assert optimised_alpha(np.array([4.0, 0.0, 4.0, 0.0])) == pytest.approx(0.3, abs=1e-9)  # error falls to the bound
    assert optimised_alpha(np.array([4.0, 4.0])) == pytest.approx(0.2)  # every alpha fits: the middle


def test_demand_intervals_count_the_first_from_before_the_series():
    np.testing.assert_array_equal(demand_intervals(INTERMITTENT), [2.0, 3.0, 2.0])
    np.testing.assert_array_equal(demand_intervals(np.array([4.0, 0.0, 4.0, 0.0])), [1.0, 2.0])


# ------------------------------------------------------------------ the three methods


def test_croston_sba_is_095_times_smoothed_size_over_smoothed_interval():
    # sizes 3, 5, 2 -> 3.08; intervals 2, 3, 2 -> 2 -> 2.1 -> 2.09; 0.95 * 3.08 / 2.09 = 1.4
    np.testing.assert_allclose(Croston().forecast(INTERMITTENT, 3, 52), [1.4, 1.4, 1.4], rtol=1e-12)
    np.testing.assert_allclose(Croston(debias=1.0).forecast(INTERMITTENT, 1, 52), [3.08 / 2.09], rtol=1e-12)
    np.testing.assert_array_equal(Croston().forecast(np.zeros(5), 2, 52), [0.0, 0.0])


def test_tsb_is_the_smoothed_sale_probability_times_the_smoothed_size():
    # probability of [0, 1, 0, 0, 1, 0, 1] at alpha 0.3: 0, 0.3, 0.21, 0.147, 0.4029, 0.28203, 0.497421
    np.testing.assert_allclose(TSB().forecast(INTERMITTENT, 2, 52), [0.497421 * 3.08] * 2, rtol=1e-12)
    quiet = np.r_[INTERMITTENT, np.zeros(4)]  # stops selling: TSB decays, Croston does not
    np.testing.assert_allclose(TSB().forecast(quiet, 1, 52), [0.497421 * 0.7 ** 4 * 3.08], rtol=1e-12)
    assert Croston().forecast(quiet, 1, 52)[0] == pytest.approx(1.4)
    np.testing.assert_array_equal(TSB().forecast(np.zeros(3), 2, 52), [0.0, 0.0])


def test_imapa_averages_the_per_period_forecasts_of_every_aggregation_level():
    # mean interval of [4, 0, 4, 0] is 1.5 -> levels 1 and 2.
    # level 1: alpha 0.3 (the bound): 4 -> 4 -> 2.8 -> 3.16 -> 2.212; level 2: sums [4, 4] -> 4, per period 2
    y = np.array([4.0, 0.0, 4.0, 0.0])
    np.testing.assert_allclose(IMAPA().forecast(y, 2, 52), [(2.212 + 2.0) / 2] * 2, rtol=1e-9)
    # the oldest n mod k periods are dropped: [7 | 0, 4, 0, 4] in blocks of 2 is [4, 4]
    assert IMAPA._level_forecast(np.array([7.0, 0.0, 4.0, 0.0, 4.0]), 2) == 2.0
    np.testing.assert_array_equal(IMAPA().forecast(np.zeros(4), 2, 52), [0.0, 0.0])


def test_the_registry_builds_the_intermittent_chains_and_they_run_in_forecast_many():
    cfg = RunConfig().updated({"baselines.moving_average_window": 3})
    for name, kind in (("croston", Croston), ("tsb", TSB), ("imapa", IMAPA)):
        model = registry.build(name, cfg).model
        assert [m.name for m in model.chain()] == [name, "moving_average", "mean"]
        assert isinstance(model, kind) and model.fallback.window == 3
    batch = forecast_many([INTERMITTENT, np.array([2.0])], 2, 52, registry.build("croston", cfg).model,
                          n_jobs=1, progress=False)
    np.testing.assert_allclose(batch.values, [[1.4, 1.4], [1.9, 1.9]])  # a single sale: 0.95 * 2 / 1
    assert batch.fallbacks == []


def test_intermittent_models_forecast_history_items_in_a_backtest(tmp_path):
    # x sells [4, 0, 4, 0] before the cut-off at week 4, then 1 a week
    panel = panel_from(tmp_path, [("x", 0, 4), ("x", 2, 4)] + [("x", t, 1) for t in range(4, 7)], ["x"])
    cfg = RunConfig()
    models = {name: (lambda name=name: registry.build(name, cfg)) for name in ("croston", "tsb", "imapa")}
    result = run_backtest(panel, models, EvalConfig(horizon=3), cutoffs=[4])
    forecasts = {name: result.folds[0].forecasts[name][HISTORY] for name in models}
    np.testing.assert_allclose(forecasts["croston"], [[0.95 * 4 / 1.1] * 3])  # intervals 1, 2 -> 1.1
    np.testing.assert_allclose(forecasts["tsb"], [[0.7 * (0.3 + 0.7 ** 2) * 4] * 3])  # probability 1, 0.7, 0.79, 0.553
    np.testing.assert_allclose(forecasts["imapa"], [[(2.212 + 2.0) / 2] * 3], rtol=1e-9)
    assert set(result.summary()["model"]) >= set(models)


# ------------------------------------------------------------------ launch curve


def launches(tmp_path: Path, **attributes: list[str]):
    """Product Lj (j = 0..11) launches in week 1 + j and sells (j + 1) * (a + 1) at age a; `old` sells
    1000 a week from week 0 (its launch is not observed); `n` (and `m` with attributes) has no sales (new)."""
    rows = [("old", t, 1000.0) for t in range(16)]
    rows += [(f"L{j}", 1 + j + a, (j + 1) * (a + 1.0)) for j in range(12) for a in range(16 - 1 - j)]
    items = ["old", *[f"L{j}" for j in range(12)], "n"] + (["m"] if attributes else [])
    return panel_from(tmp_path, rows, items, **attributes)


def test_launch_curve_forecasts_every_new_product_with_the_mean_launch_curve(tmp_path):
    panel = launches(tmp_path)
    model = registry.build("launch_curve", RunConfig())
    model.fit(panel, 3)
    prediction = model.predict(panel, 3)
    assert list(panel.item_ids[prediction.item_index]) == ["n"]  # only new products
    # all 12 launches reach age 2 before week 16; `old` is no launch: mean (j + 1) = 6.5 at age 0
    np.testing.assert_allclose(prediction.units, [[6.5, 13.0, 19.5]])


def test_launch_curve_offers_attribute_curves_shrunk_toward_the_overall_curve_as_a_variant(tmp_path):
    # the even launches (and `old`, no launch) are red: (j + 1) = 1, 3, ..., 11, mean 6 over 6 products
    colour = ["red"] + ["red" if j % 2 == 0 else "blue" for j in range(12)] + ["red", "green"]
    panel = launches(tmp_path, colour=colour)
    prediction = registry.build("launch_curve", RunConfig()).predict(panel, 3)
    assert list(panel.item_ids[prediction.item_index]) == ["n", "m"]
    np.testing.assert_allclose(prediction.units, [[6.5, 13.0, 19.5]] * 2)  # the plain curve ignores colour
    red = (6 * 6.0 + 5 * 6.5) / (6 + 5)  # shrunk toward 6.5 with the weight of 5 products
    np.testing.assert_allclose(prediction.variants["attributes"],
                               [[red, 2 * red, 3 * red], [6.5, 13.0, 19.5]])  # green: no launch, the overall curve
    launched = panel.take(np.arange(panel.n_items - 2))  # no new product left: fit's refit still finds the variant
    empty = registry.build("launch_curve", RunConfig()).predict(launched, 3)
    assert empty.units.shape == (0, 3) and empty.variant("attributes").units.shape == (0, 3)


def test_launch_curve_in_a_backtest_averages_only_the_ages_each_launch_reached(tmp_path):
    panel = launches(tmp_path)
    result = run_backtest(panel, {"launch_curve": lambda: registry.build("launch_curve", RunConfig())},
                          EvalConfig(horizon=3), cutoffs=[12])
    fold = result.folds[0]
    assert list(panel.item_ids[fold.rows[NEW]]) == ["L11"]  # launched at the cut-off
    # before week 12, Lj reached age a when 1 + j + a < 12: age 0 j <= 10, age 1 j <= 9, age 2 j <= 8
    np.testing.assert_allclose(fold.forecasts["launch_curve"][NEW], [[6.0, 11.0, 15.0]])
    np.testing.assert_allclose(fold.truth[NEW], [[12.0, 24.0, 36.0]])
    wape = result.summary().set_index(["model", "group"]).loc[("launch_curve", NEW), "wape"]
    assert wape == pytest.approx((6 + 13 + 21) / 72)


def test_launch_curve_without_any_sold_product_says_so():
    # a hand-built panel (a table always has a product selling in its first week): no product sold yet
    panel = Panel(np.array(["a", "b"]), WEEKS[:2], np.full((2, 2), np.nan), None, {}, np.array([2, 3]),
                  pd.DataFrame({"description": ["a", "b"]}), "W-MON", 52)
    with pytest.raises(DataError, match="launch_curve: none of the 2 products sold before"):
        registry.build("launch_curve", RunConfig()).predict(panel, 2)


def test_mean_launch_curve_is_the_knn_with_every_reference_as_a_neighbour():
    curves = np.array([[1.0, 2.0, np.nan], [3.0, np.nan, np.nan], [5.0, 6.0, np.nan]])
    np.testing.assert_allclose(mean_launch_curve(curves), [3.0, 4.0, np.nan])
    embeddings = np.random.default_rng(0).normal(size=(3, 4))
    knn = knn_launch_forecast(embeddings[:1], embeddings, curves, k=3)
    np.testing.assert_allclose(knn, [[3.0, 4.0, 0.0]])  # a step no reference reached: 0 in both models


def test_fit_chooses_and_exports_the_attribute_variant_when_it_wins_the_backtest(tmp_path, workdir):
    # L0..L12 launch in weeks 1..13; the red ones (even j) sell 10 a week, the blue ones 2; `n` is a new red product
    rows = [("old", t, 5.0) for t in range(16)] + [(f"L{j}", t, 10.0 if j % 2 == 0 else 2.0)
                                                  for j in range(13) for t in range(1 + j, 16)]
    items = ["old", *[f"L{j}" for j in range(13)], "n"]
    colour = ["blue"] + ["red" if j % 2 == 0 else "blue" for j in range(13)] + ["red"]
    panel_from(tmp_path, rows, items, colour=colour)
    code = main(["fit", "--sales", str(tmp_path / "sales.csv"), "--products", str(tmp_path / "products.csv"),
                 "--horizon", "3", "--folds", "1", "--models", "moving_average,launch_curve", "--no-progress"])
    assert code == 0
    export = pd.read_csv("forecast.csv").set_index("item_id").loc["n"]
    assert set(export["model"]) == {"launch_curve:attributes"}  # L12 (red) in the backtest: the red curve won
    overall = (7 * 10 + 6 * 2) / 13  # 7 red launches at 10, 6 blue at 2
    np.testing.assert_allclose(export["units"], [(7 * 10 + 5 * overall) / (7 + 5)] * 3, atol=0.005)  # 2 decimals


def two_kinds_of_launch(tmp_path: Path, **columns: list[str]):
    """40 launches in weeks 1..10, the even ones (kind a) selling 10 a week, the odd ones (kind b) 2, each
    until week 15; three new products, of kind a, b and one no launch had. ``columns`` get one value per
    product (40 launches, then the three new ones)."""
    rows = [(f"L{j}", 1 + j // 4 + t, 10.0 if j % 2 == 0 else 2.0) for j in range(40) for t in range(15 - j // 4)]
    return panel_from(tmp_path, rows, [f"L{j}" for j in range(40)] + ["new_a", "new_b", "new_c"], **columns)


def test_launch_boosting_forecasts_a_new_product_from_the_launches_with_its_attributes(tmp_path):
    kinds = ["silk" if j % 2 == 0 else "cotton" for j in range(40)]
    panel = two_kinds_of_launch(tmp_path, fabric=kinds + ["silk", "cotton", "linen"])
    prediction = registry.build("launch_boosting", RunConfig()).predict(panel, 3)
    assert list(panel.item_ids[prediction.item_index]) == ["new_a", "new_b", "new_c"]
    a, b, unseen = prediction.units
    np.testing.assert_allclose(a, 10.0, rtol=0.1)
    np.testing.assert_allclose(b, 2.0, rtol=0.1)
    assert np.all(np.isfinite(unseen) & (unseen >= 0))  # a value no launch had: none of the column's indicators
    again = registry.build("launch_boosting", RunConfig(seed=7)).predict(panel, 3)
    np.testing.assert_array_equal(again.units, prediction.units)  # deterministic: the seed changes nothing


def test_launch_boosting_reads_each_products_signals_from_before_its_launch(tmp_path):
    # no attribute column: only the signals (one per product, constant) tell a 10-a-week launch from a 2-a-week
    panel = two_kinds_of_launch(tmp_path)
    hot = {f"L{j}": 90.0 if j % 2 == 0 else 10.0 for j in range(40)} | {"new_a": 90.0, "new_b": 10.0, "new_c": 50.0}
    level = np.array([hot[i] for i in panel.item_ids])
    signals = Signals([f"s{r}" for r in range(panel.n_items)], np.repeat(level[:, None], 60 + panel.n_periods, axis=1),
                      -60, [np.array([r]) for r in range(panel.n_items)])
    a, b, _ = registry.build("launch_boosting", RunConfig()).predict(replace(panel, signals=signals), 3).units
    np.testing.assert_allclose(a, 10.0, rtol=0.1)
    np.testing.assert_allclose(b, 2.0, rtol=0.1)
    hidden = replace(panel, signals=signals.known_before(signals.first))  # no value known: no signal to read
    np.testing.assert_allclose(registry.build("launch_boosting", RunConfig()).predict(hidden, 3).units, 6.0, rtol=0.02)


def test_the_trend_features_are_the_same_computed_in_blocks_of_products(tmp_path, monkeypatch):
    from forecast.models.baselines import boosting

    panel = two_kinds_of_launch(tmp_path)
    rng = np.random.default_rng(0)
    signals = Signals([f"s{r}" for r in range(4)], rng.normal(size=(4, 60 + panel.n_periods)), -60,
                      [rng.choice(4, size=2, replace=False) for _ in range(panel.n_items)])
    panel = replace(panel, signals=signals)
    rows = np.arange(panel.n_items)
    whole = boosting.trend_features(panel, rows)
    monkeypatch.setattr(boosting, "TREND_BLOCK", 3)  # 43 products: 15 blocks, the last of one
    assert whole.shape == (panel.n_items, 3) and np.isfinite(whole).all()
    np.testing.assert_array_equal(boosting.trend_features(panel, rows), whole)
    assert boosting.trend_features(panel, rows[:0]).shape == (0, 3)


def test_launch_boosting_without_attributes_forecasts_the_mean_launch_curve(tmp_path):
    # no attribute column, launches within a season (weeks 1..10): nothing but the step since launch to read
    panel = two_kinds_of_launch(tmp_path)
    assert not attribute_columns(panel.products)
    np.testing.assert_allclose(registry.build("launch_boosting", RunConfig()).predict(panel, 3).units, 6.0, rtol=0.02)
