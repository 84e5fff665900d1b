"""The accuracy options of the neural models: text dropout and the average-description blend, the
age-curve and retrieval features, the opt-in bias correction, and windows that all carry a target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.core.errors import ForecastError
from forecast.models.calibration import BiasCorrection
from forecast.models.neural.estimator import NeuralEstimator
from forecast.models.neural.features import (ATTRIBUTE_PRIOR, PanelDataModule, attribute_curves, neighbour_curves,
                                             recent_launch_curves, without_censored_launches)
from forecast.models.neural.network import ForecastNetwork
from tests.conftest import refused

H = 6
FAST = {"train.max_epochs": 2, "train.windows_per_epoch": 2000, "train.progress": False, "neural.hidden_size": 16,
        "neural.context_length": 8, "train.batch_size": 128, "train.lr_schedule": "constant"}
OFF = {"neural.text_dropout": 0.0, "neural.text_mix": 1.0, "neural.text_mix_new": 1.0, "neural.age_curve": False,
       "neural.knn_feature": 0, "neural.attribute_curves": False, "neural.recent_launches": 0, "neural.bias_correction": "none"}


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    sales, products = synthetic.write(tmp_path_factory.mktemp("syn"), n_items=24, n_periods=30, n_new=4, seed=1)
    return build_panel(load_tables(sales, products))


def fast(**overrides) -> RunConfig:
    return RunConfig().updated(FAST | OFF | {f"neural.{k}": v for k, v in overrides.items()})


# --- bias correction ---------------------------------------------------------------
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


@pytest.mark.parametrize(("key", "value", "needles"), [
    ("neural.transform", "log1p", ["neural.bias_correction", "'variance'", "'sqrt'", "'log1p'"]),
    ("neural.scaling", "window", ["neural.bias_correction", "'variance'", "'global'", "'window'"]),
])
def test_bias_correction_is_refused_outside_the_sqrt_global_transform(workdir, capsys, key, value, needles):
    section, leaf = key.split(".")
    Path("cfg.yaml").write_text(yaml.safe_dump({"neural": {"bias_correction": "variance", leaf: value}}))
    refused(capsys, ["fit", "--config", "cfg.yaml", "--no-progress"], *needles)


@pytest.mark.parametrize(("key", "value"), [("text_dropout", 1.5), ("text_mix", -0.1), ("knn_feature", -3),
                                            ("recent_launches", -1), ("censored_launches", -2), ("launch_weight", 0)])
def test_out_of_range_options_are_refused(workdir, capsys, key, value):
    Path("cfg.yaml").write_text(yaml.safe_dump({"neural": {key: value}}))
    refused(capsys, ["fit", "--config", "cfg.yaml", "--no-progress"], f"neural.{key}", str(value))


def test_corrected_fusion_saves_and_loads_the_same_forecast(panel, tmp_path):
    model = NeuralEstimator("fusion", fast(bias_correction="variance"))
    model.fit(panel, H)
    plain = NeuralEstimator("fusion", fast())
    plain.network, plain.scaler, plain.horizon = model.network, model.scaler, model.horizon
    corrected, uncorrected = model.predict(panel, H).units, plain.predict(panel, H).units
    assert corrected.sum() > uncorrected.sum()
    loaded = NeuralEstimator.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(panel, H).units, corrected)


# --- features ------------------------------------------------------------------
def test_neighbour_curves_never_use_the_product_itself():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    units = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]])
    curves = neighbour_curves(emb, units, np.array([0, 0, 0]), k=1, horizon=2)
    np.testing.assert_allclose(curves, [[5, 5], [1, 1], [5, 5]])
    copies = neighbour_curves(emb, units, np.array([0, 0, 0]), k=1, horizon=2, ids=np.array(["a", "a", "b"]))
    # a copy of the same product is no neighbour, and a product is one reference (its first row)
    np.testing.assert_allclose(copies, [[9, 9], [9, 9], [1, 1]])
    # a product with copies is one reference: copies appended (the occlusion's) leave the others' neighbours alone
    alone = neighbour_curves(emb, units, np.zeros(3, int), k=2, horizon=2, ids=np.array(["a", "b", "c"]))
    appended = neighbour_curves(np.vstack([emb, emb[1]]), np.vstack([units, units[1]]), np.zeros(4, int), k=2,
                                horizon=2, ids=np.array(["a", "b", "c", "b"]))
    np.testing.assert_allclose(alone, [[7, 7], [5, 5], [3, 3]])
    np.testing.assert_allclose(appended[:3], alone)


def test_attribute_curves_are_leave_one_out_value_means_shrunk_toward_the_overall_curve():
    values = pd.DataFrame({"colour": ["red", "red", "red", "blue", "green"]})
    units = np.array([[2.0, 4.0], [4.0, 8.0], [6.0, np.nan], [10.0, 10.0], [np.nan, np.nan]])
    start = np.array([0, 0, 0, 0, 2])  # the green product is new: no curve of its own
    curves = attribute_curves(values, units, start, horizon=2)[:, :, 0]
    m = ATTRIBUTE_PRIOR

    def expected(same: list[float], others: list[float]) -> float:
        prior = np.mean(same + others)  # the overall curve without the product itself
        return (sum(same) + m * prior) / (len(same) + m)

    assert curves[0, 0] == pytest.approx(expected([4.0, 6.0], [10.0]))  # its own 2.0 never enters
    assert curves[0, 1] == pytest.approx(expected([8.0], [10.0]))  # a step the third red never reached
    assert curves[3, 0] == pytest.approx(expected([], [2.0, 4.0, 6.0]))  # alone in its value: the prior
    assert curves[4, 0] == pytest.approx(np.mean([2.0, 4.0, 6.0, 10.0]))  # an unseen value: the overall curve


def test_attribute_curves_are_a_future_block_of_text_models_and_survive_save_and_load(panel, tmp_path):
    dm = PanelDataModule(panel, H, fast(attribute_curves=True), use_text=True)
    dm.setup()
    assert dm.scaler.attributes == ["colour", "fabric", "category"]  # the synthetic products' attributes
    assert dm.features.widths["future"]["attributes"] == 3
    model = NeuralEstimator("fusion", fast(attribute_curves=True))
    model.fit(panel, H)
    loaded = NeuralEstimator.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(panel, H).units, model.predict(panel, H).units)
    without = panel.take(np.arange(panel.n_items), panel.products.drop(columns="fabric"))
    with pytest.raises(ForecastError, match="attribute column.*fabric"):
        loaded.predict(without, H)


def test_recent_launch_curves_see_only_launches_in_the_window_and_cells_before_the_origin():
    nan = np.nan
    z = np.array([[1.0, 2.0, 3.0, nan, nan, nan],   # launched in column 0
                  [nan, nan, 5.0, 7.0, nan, nan],   # launched in column 2
                  [nan, nan, nan, nan, 9.0, 9.0]])  # launched in column 4
    mean, count = recent_launch_curves(z, np.array([0, 2, 4]), window=3, ages=2)
    assert np.isnan(mean[0]).all()  # nothing launched before column 0
    np.testing.assert_allclose(mean[2], [1.0, 2.0])  # at origin 2 only the first launch, both ages before 2
    np.testing.assert_allclose(mean[3], [(1.0 + 5.0) / 2, 2.0])  # column 2's launch is seen at age 0 only
    np.testing.assert_allclose(mean[4], [5.0, 7.0])  # column 0's launch left the 3-column window
    np.testing.assert_allclose(count[4], [1, 1])
    np.testing.assert_allclose(mean[5], [(5.0 + 9.0) / 2, 7.0])


def test_recent_launches_is_a_future_block_read_at_the_origin(panel):
    dm = PanelDataModule(panel, H, fast(recent_launches=8), use_text=False)
    dm.setup()
    f = dm.features
    assert f.widths["future"]["recent_launches"] == 2
    item = int(np.flatnonzero(panel.start == 10)[0])
    batch = f.gather(np.array([item]), np.array([12]))  # origin 12, ages 2..7 (clipped to H - 1)
    launched = np.where(panel.start > 0, panel.start + f.L, -1)
    mean, count = recent_launch_curves(f.z, launched, 8, H)
    ages = np.clip(np.arange(2, 2 + H), 0, H - 1)
    expected = np.where(count[12 + f.L, ages] > 0, mean[12 + f.L, ages], np.asarray(dm.scaler.age_curve)[ages])
    np.testing.assert_allclose(batch["future"]["recent_launches"][0, :, 0].numpy(), expected, rtol=1e-5)
    assert 0 < count[12 + f.L, 0]  # products launched in periods 4..11 are seen


def test_censored_launches_drop_only_the_launch_windows_of_undated_early_starts(panel):
    items = np.arange(panel.n_items).repeat(2)
    origins = np.stack([panel.start, panel.start + 1], axis=1).ravel()
    dated = panel.products.assign(launch_date=pd.NaT)
    dated.loc[0, "launch_date"] = panel.dates[0]  # item 0 starts at 0 but its launch is known
    p = panel.take(np.arange(panel.n_items), dated)
    kept_items, kept_origins = without_censored_launches((items, origins), p, periods=5)
    dropped = set(zip(items.tolist(), origins.tolist())) - set(zip(kept_items.tolist(), kept_origins.tolist()))
    expected = {(i, int(p.start[i])) for i in range(p.n_items) if p.start[i] < 5 and i != 0}
    assert dropped == expected and len(expected) > 0
    assert without_censored_launches((items, origins), p, periods=0)[0] is items
    undated = panel.take(np.arange(panel.n_items), panel.products.drop(columns="launch_date", errors="ignore"))
    kept_items, kept_origins = without_censored_launches((items, origins), undated, periods=5)
    assert len(kept_items) == len(items) - int((panel.start < 5).sum())  # no launch_date column: none is dated
    assert not ((kept_origins == panel.start[kept_items]) & (panel.start[kept_items] < 5)).any()


def test_launch_weight_weighs_only_the_launch_windows(panel):
    dm = PanelDataModule(panel, H, fast(launch_weight=3.0), use_text=False)
    dm.setup()
    batch = dm.train_set.__getitems__(np.arange(len(dm.train_set)))
    launch = (batch["origin"] == torch.from_numpy(panel.start)[batch["item"]]).numpy()
    assert launch.any() and not launch.all()
    np.testing.assert_allclose(batch["weight"].numpy(), np.where(launch, 3.0, 1.0))


def test_age_curve_and_neighbours_are_named_future_blocks_and_fusion_trains_with_them(panel):
    def future(cfg: RunConfig, use_text: bool) -> dict[str, int]:
        dm = PanelDataModule(panel, H, cfg, use_text=use_text)
        dm.setup()
        return dm.features.widths["future"]

    base, wide = future(fast(), True), future(fast(age_curve=True, knn_feature=3), True)
    assert wide == base | {"age_curve": 1, "neighbours": 1}
    assert "neighbours" not in future(fast(age_curve=True, knn_feature=3), False)  # retrieval reads descriptions
    model = NeuralEstimator("fusion", fast(age_curve=True, knn_feature=3))
    model.fit(panel, H)
    assert np.isfinite(model.predict(panel, H).units).all()


def test_age_curve_is_the_mean_scaled_units_at_each_age(panel):
    dm = PanelDataModule(panel, H, fast(age_curve=True), use_text=False)
    dm.setup()
    s = dm.scaler
    z = s.units_to_z(panel.units)
    i = np.flatnonzero(panel.has_history & (panel.start >= 0))
    at_age_2 = z[i, panel.start[i] + 2]
    assert s.age_curve[2] == pytest.approx(np.nanmean(at_age_2))
    batch = dm.train_set.__getitems__(np.arange(len(dm.train_set)))
    launch = (batch["origin"] == torch.from_numpy(panel.start)[batch["item"]]).numpy()
    np.testing.assert_allclose(batch["future"]["age_curve"][launch, 2, 0].numpy(), s.age_curve[2], rtol=1e-5)


def test_every_training_window_has_an_observed_target(tmp_path):
    """Series that end (NaN after their last sale) add no windows that carry no loss."""
    sales, products = synthetic.write(tmp_path, n_items=12, n_periods=30, n_new=0, seed=2)
    p = build_panel(load_tables(sales, products), series_end="last-sale")
    assert np.isnan(p.units).any()  # some series ended before the table's end
    dm = PanelDataModule(p, H, fast().updated({"train.val_periods": 4}), use_text=False)
    dm.setup()
    batch = dm.train_set.__getitems__(np.arange(len(dm.train_set)))
    assert torch.isfinite(batch["y"]).any(1).all()


# --- text dropout and the average-description forecast ------------------------
def test_text_dropout_one_makes_training_read_only_the_average_description(panel):
    dm = PanelDataModule(panel, H, fast(), use_text=True)
    dm.setup()
    spec = NeuralEstimator("fusion", fast(text_dropout=1.0, dropout=0.0))._spec(dm, H)
    assert spec.text_dropout == 1.0
    assert NeuralEstimator("text", fast(text_dropout=1.0))._spec(dm, H).text_dropout == 0.0  # fusion only
    net = ForecastNetwork(spec)
    batch = dm.train_set.__getitems__(np.arange(16))
    net.train()
    dropped = net(batch)["demand"]
    net.eval()
    torch.testing.assert_close(dropped, net(batch, average_text=True)["demand"])
    assert not torch.allclose(dropped, net(batch)["demand"])


def test_text_mix_new_zero_forecasts_every_new_product_from_the_average_description(panel):
    model = NeuralEstimator("fusion", fast(text_dropout=0.5))
    model.fit(panel, H)
    full = model.predict(panel, H)
    new = ~panel.has_history[full.item_index]
    model.config = fast(text_dropout=0.5, text_mix_new=0.0)
    mixed = model.predict(panel, H).units
    launches = full.start[new]
    same = launches == launches[0]
    assert same.sum() > 1
    without = mixed[new][same]
    np.testing.assert_allclose(without, without[:1].repeat(len(without), 0), rtol=1e-5)  # words no longer matter
    assert not np.allclose(full.units[new][same], full.units[new][same][:1])
    np.testing.assert_allclose(mixed[~new], full.units[~new])  # history items: text_mix 1, unchanged


def test_fusion_offers_the_average_description_forecast_of_new_products_as_a_variant(synthetic_csv, workdir):
    """fit chooses text_mix_new on its backtest: fusion's prediction carries the average_text_new variant, which
    differs from the forecast only on new products, and use_variant makes it the model's forecast."""
    from forecast.core.config import RunConfig
    from forecast.data.contract import load_tables
    from forecast.data.panel import build_panel
    from forecast.models.neural.estimator import NeuralEstimator

    panel = build_panel(load_tables(*synthetic_csv))
    cfg = RunConfig.from_dict({"train": {"max_epochs": 1, "windows_per_epoch": 512, "progress": False},
                               "evaluation": {"horizon": 4}})
    model = NeuralEstimator("fusion", cfg)
    model.fit(panel, 4)
    prediction = model.predict(panel, 4)
    variant = prediction.variants["average_text_new"]
    new = ~panel.has_history[prediction.item_index]
    assert new.any() and (~new).any()
    np.testing.assert_allclose(variant[~new], prediction.units[~new])
    assert not np.allclose(variant[new], prediction.units[new])
    model.use_variant("average_text_new")
    again = model.predict(panel, 4)
    np.testing.assert_allclose(again.units, variant, rtol=1e-5)
    assert again.variants == {}
    # saved and loaded, predict names the new products' rows as fit's export does, the others as fusion
    from forecast.outputs.artifact import labelled

    loaded = NeuralEstimator.load(model.save(workdir / "saved"))
    assert loaded.variant == "average_text_new"
    parts = labelled(loaded.predict(panel, 4), panel, loaded.variant)
    assert {p.model: bool(panel.has_history[p.item_index].all()) for p in parts} == {
        "fusion": True, "fusion:average_text_new": False}
    assert sum(len(p.item_index) for p in parts) == len(prediction.item_index)
