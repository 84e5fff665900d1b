"""The ensemble: it recovers a known mixture, its weights lie on the simplex, its backtest score is
leave-one-fold-out (never from the folds that set its weights), and fit chooses and exports it when it wins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.evaluation import combination
from forecast.evaluation.backtest import run_backtest
from forecast.cli import main
from forecast.core.config import EvalConfig
from forecast.core.errors import DataError
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.evaluation.metrics import score
from forecast.models import registry
from forecast.models.base import HISTORY, Prediction, forecast_targets
from tests.conftest import mlflow_runs, refused, store_uri

CUTOFFS = (18, 22, 26)  # the default rolling origins of a 30-week table with horizon 4, step 4


def test_the_wape_fit_recovers_the_weights_of_a_known_mixture() -> None:
    rng = np.random.default_rng(0)
    forecasts = rng.gamma(2.0, 5.0, size=(4000, 3))
    truth = forecasts @ np.array([0.6, 0.3, 0.1]) + rng.laplace(0.0, 0.5, size=4000)
    assert combination.wape_weights(forecasts, truth) == pytest.approx([0.6, 0.3, 0.1], abs=0.02)


def test_shrinkage_pulls_the_fitted_weights_toward_equal_ones() -> None:
    forecasts = np.array([[1.0, 5.0], [2.0, 7.0], [3.0, 1.0]])
    truth = forecasts[:, 0]  # the first model is exact: fitted weights (1, 0)
    stacks = [forecasts.reshape(3, 1, 2)]
    assert combination.fit_weights([truth.reshape(3, 1)], stacks, 0.0) == pytest.approx([1.0, 0.0], abs=1e-6)
    assert combination.fit_weights([truth.reshape(3, 1)], stacks, 0.5) == pytest.approx([0.75, 0.25], abs=1e-6)
    assert combination.fit_weights([truth.reshape(3, 1)], stacks, 1.0) == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("shrinkage", [0.0, 0.3, 1.0])
def test_weights_are_non_negative_and_sum_to_one(shrinkage: float) -> None:
    rng = np.random.default_rng(1)
    forecasts = rng.normal(0.0, 3.0, size=(500, 5))  # some negative, noisy: nothing forces a simplex answer
    truth = rng.gamma(1.0, 2.0, size=500)
    truth[::7] = np.nan  # cells with no actual are left out, not propagated
    weights = combination.fit_weights([truth.reshape(100, 5)], [forecasts.reshape(100, 5, 5)], shrinkage)
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0, abs=1e-12)


# --- on a backtest: a panel selling 1 unit a week, and models whose forecasts depend on the fold ----
def _flat_panel(directory: Path, n_items: int = 6, n_weeks: int = 30):
    weeks = pd.date_range("2024-01-01", periods=n_weeks, freq="W-MON")
    pd.DataFrame([(f"p{k}", week.date(), 1) for k in range(n_items) for week in weeks],
                 columns=["item_id", "date", "units"]).to_csv(directory / "sales.csv", index=False)
    pd.DataFrame({"item_id": [f"p{k}" for k in range(n_items)], "description": [f"thing {k}" for k in range(n_items)]}
                 ).to_csv(directory / "products.csv", index=False)
    return directory / "sales.csv", directory / "products.csv"


class _Scaled:
    """Forecasts ``factor[cut-off] x 1`` for every item with history (the truth is 1 everywhere)."""

    groups = frozenset({HISTORY})

    def __init__(self, name: str, factors: dict[int, float]):
        self.name, self.factors = name, factors

    def fit(self, panel, horizon):
        pass

    def predict(self, panel, horizon):
        rows, start = forecast_targets(panel, self.groups)
        factor = self.factors.get(panel.n_periods, 1.0)  # not a fold: the future forecast
        return Prediction(self.name, rows, start, np.full((len(rows), horizon), factor))


def _backtest(tmp_path: Path, factors: dict[str, dict[int, float]], cutoffs=CUTOFFS):
    panel = build_panel(load_tables(*_flat_panel(tmp_path)))
    models = {name: (lambda name=name, f=f: _Scaled(name, f)) for name, f in factors.items()}
    return run_backtest(panel, models, EvalConfig(horizon=4, folds=3, step=4), cutoffs=list(cutoffs))


def test_the_reported_score_is_leave_one_fold_out_not_in_sample(tmp_path: Path) -> None:
    # Fold by fold, a forecasts (1, 3, 1) and b (2, 1, 2) against a truth of 1. Any weights on all three
    # folds score WAPE 2/3 there, but the weights each fold gets from the other two point the wrong way:
    # held-out fold 2 gets a (folds 1 and 3 say so), folds 1 and 3 get b.
    a, b = dict(zip(CUTOFFS, (1.0, 3.0, 1.0))), dict(zip(CUTOFFS, (2.0, 1.0, 2.0)))
    result, ensemble = combination.add_to_backtest(_backtest(tmp_path, {"a": a, "b": b}), shrinkage=0.5)
    reported = result.summary().set_index(["model", "group"]).loc[(combination.NAME, HISTORY)]

    gw = ensemble.groups[HISTORY]
    folds = result.folds
    truth = np.concatenate([f.truth[HISTORY] for f in folds])
    stack = np.concatenate([np.stack([f.forecasts[m][HISTORY] for m in gw.members], axis=-1) for f in folds])
    in_sample = score(truth, stack @ gw.weights)["wape"]
    assert in_sample == pytest.approx(2 / 3, abs=1e-6)
    # By hand, shrinkage 0.5 toward (1/2, 1/2): held-out weights (1/4, 3/4), (3/4, 1/4), (1/4, 3/4) give
    # forecasts 1.75, 2.5, 1.75: errors 0.75 + 1.5 + 0.75 over a truth of 3 = WAPE 1.
    assert reported["wape"] == pytest.approx(1.0, abs=1e-3)
    assert reported["wape"] > in_sample  # scoring on the folds that set the weights would flatter it
    assert np.array(gw.fold_weights) == pytest.approx(np.array([[0.25, 0.75], [0.75, 0.25], [0.25, 0.75]]), abs=1e-3)


def test_with_one_fold_the_ensemble_is_not_scored(tmp_path: Path) -> None:
    result, ensemble = combination.add_to_backtest(
        _backtest(tmp_path, {"a": {26: 1.5}, "b": {26: 0.5}}, cutoffs=[26]), shrinkage=0.5)
    assert combination.NAME not in set(result.summary()["model"])
    assert combination.NAME not in result.best_models().values()
    assert ensemble.groups[HISTORY].weights.sum() == pytest.approx(1.0)  # still fitted, for --model ensemble


def test_fit_chooses_and_exports_the_ensemble_when_it_wins(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "over" forecasts 1.5 and "under" 0.5 every week, the truth is 1: each alone has WAPE 0.5; their
    # average is exact, so the ensemble wins the backtest, and its export is 0.5 x 1.5 + 0.5 x 0.5 = 1.
    for name, level in (("over", 1.5), ("under", 0.5)):
        build = lambda name, cfg, level=level, **_: _Scaled(name, {c: level for c in (*CUTOFFS, 30)})  # noqa: E731
        monkeypatch.setitem(registry.MODELS, name, registry.ModelEntry(name, frozenset({HISTORY}), build))
    sales, products = _flat_panel(workdir)
    assert main(["fit", "--sales", str(sales), "--products", str(products), "--models", "over,under,ensemble",
                 "--horizon", "4", "--no-progress", "--export", "out.csv"]) == 0
    export = pd.read_csv("out.csv")
    assert set(export["model"]) == {combination.NAME}
    assert export["units"].to_numpy() == pytest.approx(1.0, abs=1e-3)
    _, [parent], _ = mlflow_runs(store_uri())
    assert parent.data.tags["forecast.model.history"] == combination.NAME
    assert float(parent.data.params["ensemble.history.over"]) == pytest.approx(0.5, abs=1e-3)
    logged = json.loads(next(Path("mlruns").rglob("ensemble.json")).read_text())
    assert set(logged["groups"][HISTORY]["weights"]) == {"over", "under"}


def test_an_ensemble_of_nothing_and_a_shrinkage_outside_0_1_are_refused(workdir: Path, capsys) -> None:
    from forecast.core.config import RunConfig
    from forecast.core.errors import ConfigError

    sales, products = _flat_panel(workdir)
    refused(capsys, ["fit", "--sales", str(sales), "--products", str(products), "--models", "ensemble",
                     "--no-progress"], "add the models to combine", outputs=("forecast.csv",))
    with pytest.raises(ConfigError, match="baselines.ensemble_shrinkage: 1.5 is out of range; it must be between 0 and 1"):
        RunConfig().updated({"baselines.ensemble_shrinkage": 1.5}).validate()


class _WithVariant(_Scaled):
    """_Scaled whose prediction also offers the variant ``exact``: the truth, 1 everywhere."""

    def predict(self, panel, horizon):
        prediction = super().predict(panel, horizon)
        return Prediction(prediction.model, prediction.item_index, prediction.start, prediction.units,
                          variants={"exact": np.ones_like(prediction.units)})


def test_a_prediction_variant_is_a_member_and_the_ensemble_forecasts_it(tmp_path: Path) -> None:
    # a forecasts 2 (its variant a:exact the truth, 1) and b forecasts 3 on every fold: the weight goes to a:exact
    panel = build_panel(load_tables(*_flat_panel(tmp_path)))
    models = {"a": lambda: _WithVariant("a", dict.fromkeys(CUTOFFS, 2.0)), "b": lambda: _Scaled("b", dict.fromkeys(CUTOFFS, 3.0))}
    backtest = run_backtest(panel, models, EvalConfig(horizon=4, folds=3, step=4), cutoffs=list(CUTOFFS))
    result, ensemble = combination.add_to_backtest(backtest, shrinkage=0.0)
    gw = ensemble.groups[HISTORY]
    assert gw.members == ["a", "a:exact", "b"]
    assert dict(zip(gw.members, gw.weights))["a:exact"] == pytest.approx(1.0, abs=1e-3)
    assert result.summary().set_index(["model", "group"]).loc[(combination.NAME, HISTORY), "wape"] == pytest.approx(0.0, abs=1e-3)
    # the future forecast takes the variant from its model's prediction: 1, not a's own 2
    future = {"a": _WithVariant("a", {}).predict(panel, 4), "b": _Scaled("b", {}).predict(panel, 4)}
    future["a"] = Prediction("a", future["a"].item_index, future["a"].start, future["a"].units * 2,
                             variants={"exact": np.ones_like(future["a"].units)})
    np.testing.assert_allclose(combination.combine(panel, future, HISTORY, gw).units, 1.0, atol=1e-3)


def test_an_ensemble_member_whose_variant_is_missing_is_refused() -> None:
    plain = {"launch_curve": Prediction("launch_curve", np.arange(2), np.zeros(2, dtype=int), np.ones((2, 3)))}
    with pytest.raises(DataError, match="launch_curve:attributes: launch_curve did not forecast its attributes variant"):
        combination.member_forecast(plain, "launch_curve:attributes")
