"""The opt-in accuracy options of the neural models (issue 11): bias correction and extra features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.datamodule import Scaler, attribute_onehots, attribute_vocabulary, build_features, neighbour_curves
from forecast.data.panel import build_panel
from forecast.errors import ConfigError
from forecast.models.calibration import BiasCorrection, check
from forecast.models.forecaster import NeuralForecaster

H = 6
FAST = {"train.max_epochs": 2, "train.windows_per_epoch": 2000, "train.progress": False, "neural.hidden_size": 16,
        "neural.context_length": 8, "train.batch_size": 128, "train.lr_schedule": "constant"}


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    sales, products = synthetic.write(tmp_path_factory.mktemp("syn"), n_items=24, n_periods=30, n_new=4, seed=1)
    return build_panel(load_tables(sales, products))


def test_variance_correction_restores_the_mean_of_a_squared_noisy_prediction():
    rng = np.random.default_rng(0)
    v_true = 3 + rng.normal(0, 1.5, size=(20_000, 2))
    v_pred = np.full_like(v_true, 3.0)  # the MSE optimum in sqrt space: E[v]
    corrected = BiasCorrection.fit("variance", v_pred, v_true).apply(v_pred)
    assert np.square(v_pred).mean() < 0.85 * np.square(v_true).mean()  # squaring E[v] is biased low ...
    assert corrected.mean() == pytest.approx(np.square(v_true).mean(), rel=0.02)  # ... the correction is not


def test_binned_correction_grows_with_the_predicted_level():
    rng = np.random.default_rng(1)
    v_pred = rng.uniform(0, 10, size=(20_000, 1))
    v_true = v_pred + rng.normal(0, 1, size=v_pred.shape) * v_pred / 5  # noise grows with the level
    corr = BiasCorrection.fit("binned", v_pred, v_true)
    low, high = corr.apply(np.array([[1.0]])) - 1.0, corr.apply(np.array([[9.0]])) - 81.0
    assert 0 <= low[0, 0] < high[0, 0]


def test_correction_is_refused_outside_the_sqrt_global_transform():
    with pytest.raises(ConfigError, match="bias_correction"):
        check("variance", "log1p", "global")
    with pytest.raises(ConfigError, match="choose from"):
        check("mean", "sqrt", "global")


def test_corrected_fusion_saves_and_loads_the_same_forecast(panel, tmp_path):
    cfg = RunConfig().updated(FAST | {"neural.bias_correction": "variance"})
    model = NeuralForecaster("fusion", cfg)
    model.fit(panel, H)
    plain = NeuralForecaster("fusion", cfg.updated({"neural.bias_correction": "none"}))
    plain.network, plain.scaler, plain.horizon = model.network, model.scaler, model.horizon
    corrected, uncorrected = model.predict(panel, H).units, plain.predict(panel, H).units
    assert corrected.sum() > uncorrected.sum()
    model.save(tmp_path / "m")
    np.testing.assert_allclose(NeuralForecaster.load(tmp_path / "m").predict(panel, H).units, corrected)


def test_neighbour_curves_never_use_the_product_itself():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    units = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]])
    curves = neighbour_curves(emb, units, np.array([0, 0, 0]), k=1, horizon=2)
    np.testing.assert_allclose(curves, [[5, 5], [1, 1], [5, 5]])


def test_attribute_onehots_use_the_fitted_vocabulary():
    products = pd.DataFrame({"item_id": ["a", "b", "c"], "description": ["x", "y", "z"],
                             "colour": ["red", "blue", "red"], "launch_date": ["2020-01-06"] * 3})
    vocab = attribute_vocabulary(products)
    assert vocab == {"colour": ["blue", "red"]}
    later = pd.DataFrame({"colour": ["red", "green"]})  # green: unseen -> all zeros
    np.testing.assert_array_equal(attribute_onehots(later, vocab), [[0, 1], [0, 0]])


def test_optional_features_widen_the_inputs_and_fusion_trains_with_them(panel):
    cfg = RunConfig().updated(FAST | {"neural.age_curve": True, "neural.knn_feature": 3,
                                      "neural.aggregate_level": True})
    base = build_features(panel, Scaler.fit(panel), RunConfig().updated(FAST), H, True)
    wide = build_features(panel, Scaler.fit(panel), cfg, H, True)
    assert (wide.n_context, wide.n_future) == (base.n_context + 1, base.n_future + 2)
    model = NeuralForecaster("fusion", cfg)
    model.fit(panel, H)
    assert np.isfinite(model.predict(panel, H).units).all()


def test_training_windows_without_any_observed_target_are_dropped():
    from forecast.data.datamodule import with_targets

    units = np.array([[1.0, 2.0, np.nan, np.nan, np.nan, np.nan], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    items, origins = np.array([0, 0, 0, 0, 1]), np.array([0, 1, 2, 3, 5])
    kept = with_targets((items, origins), units, cut=6, horizon=2)
    np.testing.assert_array_equal(kept[0], [0, 0, 1])  # item 0 from period 2 on: nothing left to learn
    np.testing.assert_array_equal(kept[1], [0, 1, 5])


def test_text_mix_zero_forecasts_every_new_product_from_the_average_description(panel):
    cfg = RunConfig().updated(FAST | {"neural.text_dropout": 0.5})
    model = NeuralForecaster("fusion", cfg)
    model.fit(panel, H)
    full = model.predict(panel, H)
    new = ~panel.has_history[full.item_index]
    with_text = full.units[new]
    model.config = cfg.updated({"neural.text_mix_new": 0.0})
    without = model.predict(panel, H).units[new]
    launches = panel.start[~panel.has_history]
    same_launch = launches == launches[0]
    assert same_launch.sum() > 1
    np.testing.assert_allclose(without[same_launch], without[same_launch][:1].repeat(same_launch.sum(), 0), rtol=1e-5)
    assert not np.allclose(with_text[same_launch], with_text[same_launch][:1])
    np.testing.assert_allclose(model.predict(panel, H).units[~new], full.units[~new])  # history: unchanged
