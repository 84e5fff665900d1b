"""The neural forecasters: windows, text encoders, training, persistence.

Models are tiny and trained for a few epochs on generated data where the
description decides the level (forecast.data.synthetic), so the whole file runs
in about a minute on two cores.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.models.neural.features import calendar_features, EpochShuffle, PanelDataModule, training_windows
from forecast.data.smoothing import centred_moving_average
from forecast.data.panel import Panel, build_panel
from forecast.models.encoders.text import TextEncoder, default_encoder_path, embed_texts, load_pretrained
from forecast.core.errors import ForecastError
from forecast.models.base import carried_price
from forecast.models.neural.estimator import WEIGHTS, NeuralEstimator
from forecast.models.neural.system import ForecastSystem
from forecast.models.neural.network import ForecastNetwork, NetworkSpec

H = 8
TRAIN = {"train.max_epochs": 8, "train.progress": False, "train.patience": 8, "neural.hidden_size": 32,
         "neural.context_length": 12, "train.batch_size": 128, "train.learning_rate": 5e-3,
         "train.val_periods": None,  # hold out the horizon: several tests score the validation windows
         # the architecture as such, reading every description in training: the accuracy options
         # (text dropout, age curve, retrieval) have their own tests in test_accuracy_options.py
         "neural.text_dropout": 0.0, "neural.age_curve": False, "neural.knn_feature": 0,
         "neural.members": 1}  # one network: averaging members has its own tests (test_members.py)


def recent_launches(panel: Panel, every: int = 2) -> Panel:
    """Every `every`-th product launches inside the last H periods: its level is only in its words."""
    units, start = panel.units.copy(), panel.start.copy()
    price = panel.price.copy()
    T = panel.n_periods
    for k, i in enumerate(np.flatnonzero(panel.has_history)[::every]):
        start[i] = T - H + k % (H - 2)
        units[i, :start[i]] = np.nan
        price[i, :start[i]] = np.nan
    return replace(panel, units=units, price=price, start=start)


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> Panel:
    sales, products = synthetic.write(tmp_path_factory.mktemp("syn"), n_items=48, n_periods=60, n_new=8, seed=3)
    return recent_launches(build_panel(load_tables(sales, products)))


@pytest.fixture(scope="module")
def cfg() -> RunConfig:
    return RunConfig().updated(TRAIN)


@pytest.fixture(scope="module")
def trained(panel, cfg) -> dict[str, NeuralEstimator]:
    models = {}
    for name in ("fusion", "sequence"):
        models[name] = NeuralEstimator(name, cfg)
        models[name].fit(panel, H)
    return models


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A random 4-layer BERT with MiniLM's tokenizer: fast stand-in for fine-tuning tests."""
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny_bert")
    source = default_encoder_path()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(f"{source}/{name}", path / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return str(path)


# --- windows -------------------------------------------------------------------
def test_windows_cover_every_origin_and_split_at_the_cutoff():
    start = np.array([0, 5, 9, 20])  # the last one is a new product (T = 10)
    (items, origins), (v_items, v_origins), cut = training_windows(start, n_periods=10, val_periods=3)
    assert cut == 7
    assert origins[items == 0].tolist() == list(range(7)) and origins[items == 1].tolist() == [5, 6]
    assert 2 not in items and 3 not in items
    assert v_items.tolist() == [0, 1, 2] and v_origins.tolist() == [7, 7, 9]


def test_no_target_leakage_and_launch_windows_have_empty_context(panel, cfg):
    dm = PanelDataModule(panel, H, cfg, use_text=False)
    dm.setup("fit")
    T, cut = panel.n_periods, dm.cut
    assert cut == T - H
    train = dm.train_set.__getitems__(list(range(len(dm.train_set))))
    periods = train["origin"][:, None] + torch.arange(H)
    for key in ("y", "price_y", "trend_y"):
        assert not torch.isfinite(train[key][periods >= cut]).any(), key
    assert torch.isfinite(train["y"][periods < cut]).any()
    launch = train["origin"] == torch.from_numpy(panel.start)[train["item"]]
    assert launch.sum() == panel.has_history[panel.start < cut].sum()
    assert (train["context"]["observed"][launch] == 0).all()  # nothing observed
    assert (train["context"]["units"][launch] == 0).all()
    val = dm.val_set.__getitems__(list(range(len(dm.val_set))))
    assert ((val["origin"] >= cut) & (val["origin"] < T)).all()
    periods = val["origin"][:, None] + torch.arange(H)
    assert not torch.isfinite(val["y"][periods >= T]).any()


def test_context_features_never_read_past_the_panel_end(panel, cfg):
    """A window's inputs are the same whether or not later periods exist."""
    cut = panel.n_periods - 10
    full = PanelDataModule(panel, H, cfg, use_text=False)
    full.setup()
    short = PanelDataModule(panel.truncate(cut), H, cfg, use_text=False, scaler=full.scaler)
    short.setup()
    rows = np.flatnonzero(panel.start < cut)
    origins = np.full(len(rows), cut)
    a, b = full.features.gather(rows, origins), short.features.gather(rows, origins)
    for key in ("context", "future", "static"):
        torch.testing.assert_close(a[key], b[key])  # every named block


def test_price_plan_is_the_carried_price(panel, cfg):
    dm = PanelDataModule(panel, H, cfg, use_text=False)
    dm.setup()
    rows = np.flatnonzero(panel.has_history)
    batch = dm.features.gather(rows, np.full(len(rows), panel.n_periods))
    plan = carried_price(panel, rows, H)
    z = dm.scaler.logprice_to_z(np.log(plan))
    np.testing.assert_allclose(batch["future"]["price_plan"][..., 0].numpy(), z, rtol=1e-5, atol=1e-5)


def test_trend_is_a_centred_moving_average():
    units = np.array([[np.nan, 1.0, 2.0, 3.0, 4.0, 5.0]])
    out = centred_moving_average(units, 3)
    np.testing.assert_allclose(out, [[np.nan, 1.5, 2.0, 3.0, 4.0, 4.5]])


# --- text ------------------------------------------------------------------------
def test_minilm_loads_offline_and_embeds_meaning():
    vectors = embed_texts(["red wool winter coat", "warm red woollen coat", "stainless steel kitchen sink"])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    tokenizer, _ = load_pretrained(None)
    encoder = TextEncoder(None, "frozen").eval()
    batch = tokenizer(["red wool winter coat"], padding="max_length", max_length=32, truncation=True,
                      return_tensors="pt")
    with torch.no_grad():
        vec = encoder(batch["input_ids"], batch["attention_mask"])
    np.testing.assert_allclose(vec.numpy()[0], vectors[0], atol=1e-4)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_a_text_embeds_the_same_whatever_it_is_batched_with(monkeypatch):
    """embed_texts sorts a call's new texts by token length before batching them: each vector must
    still be its own text's (in the caller's order), the same as when the text is embedded alone."""
    from forecast.models.encoders import text

    texts = ["red wool winter coat with a hood and deep pockets", "coat", "red coat", "coat",
             "stainless steel kitchen sink"]
    monkeypatch.setattr(text, "_EMBED_CACHE", {})
    together = embed_texts(texts, batch_size=2)
    monkeypatch.setattr(text, "_EMBED_CACHE", {})
    alone = np.stack([embed_texts([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    assert np.array_equal(together[1], together[3])


def test_last_k_trains_only_the_top_layers_at_a_lower_rate(tiny_bert, panel, cfg):
    config = cfg.updated({"neural.text_mode": "last-k", "neural.finetune_layers": 1, "neural.text_encoder": tiny_bert,
                          "train.max_epochs": 1, "train.limit_train_batches": 3})
    model = NeuralEstimator("fusion", config)
    encoder = model._text_encoder()
    trainable = {n for n, p in encoder.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layer.3.") for n in trainable)
    before = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    model.fit(panel, H)
    after = dict(model.network.text_encoder.model.named_parameters())
    assert not torch.equal(before["encoder.layer.3.output.dense.weight"], after["encoder.layer.3.output.dense.weight"])
    assert torch.equal(before["encoder.layer.2.output.dense.weight"], after["encoder.layer.2.output.dense.weight"])
    groups = ForecastSystem(model.network, {}, 1e-3, 1e-5, 1e-4, "constant", 0).param_groups()
    text_group = next(g for g in groups if g["name"] == "text_encoder")
    assert text_group["lr"] == 1e-5 < groups[0]["lr"]
    assert {id(p) for p in text_group["params"]} == {id(p) for n, p in encoder.model.named_parameters() if n in trainable}


def test_last_k_saves_the_fine_tuned_encoder(tiny_bert, panel, cfg, tmp_path):
    config = cfg.updated({"neural.text_mode": "last-k", "neural.text_encoder": tiny_bert,
                          "train.max_epochs": 1, "train.limit_train_batches": 2})
    model = NeuralEstimator("text", config)
    model.fit(panel, H)
    loaded = NeuralEstimator.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(model.predict(panel, H).units, loaded.predict(panel, H).units)


class _EncoderCalls(pl.Callback):
    """Counts forward calls of a module, per training epoch."""

    def __init__(self, module: torch.nn.Module):
        self.calls, self.per_epoch = 0, []
        module.register_forward_hook(lambda *_: setattr(self, "calls", self.calls + 1))

    def on_train_epoch_end(self, trainer, pl_module):
        self.per_epoch.append(self.calls)


def test_frozen_mode_never_runs_the_encoder_while_training(panel, cfg):
    _, hf_model = load_pretrained(None)
    counter = _EncoderCalls(hf_model)
    model = NeuralEstimator("fusion", cfg.updated({"train.max_epochs": 3, "train.limit_train_batches": 2}),
                             callbacks=[counter])
    model.fit(panel, H)
    assert len(counter.per_epoch) == 3
    assert counter.per_epoch[0] == counter.per_epoch[-1]  # embeddings came from the per-product cache
    assert model.network.text_encoder is None


# --- training and forecasting ---------------------------------------------------------
def test_fusion_reads_the_description_and_sequence_does_not(panel, cfg):
    """Other words, other forecast for fusion; the same forecast for sequence, and for fusion's
    average-description forecast. (How much the words help is measured by
    experiments/synthetic_words.py, not asserted here.)"""
    dm = PanelDataModule(panel, H, cfg, use_text=True)
    dm.setup()
    batch = dm.val_set.__getitems__(list(range(5)))
    reworded = dict(batch, text_emb=torch.randn_like(batch["text_emb"]))
    torch.manual_seed(0)
    fusion, sequence = (ForecastNetwork(NetworkSpec(variant, dm.features.widths, H, 384, 16, 0.0, "lstm", "gated"))
                        .eval() for variant in ("fusion", "sequence"))
    with torch.no_grad():
        assert not torch.allclose(fusion(batch)["demand"], fusion(reworded)["demand"])
        torch.testing.assert_close(sequence(batch)["demand"], sequence(reworded)["demand"])
        torch.testing.assert_close(fusion(batch, average_text=True)["demand"],
                                   fusion(reworded, average_text=True)["demand"])


def test_new_product_forecast_follows_its_description(trained, panel):
    products = panel.products.copy()
    new = np.flatnonzero(~panel.has_history)
    colours = np.where(np.arange(len(new)) % 2, "yellow", "red")
    products.loc[new, "description"] = [f"classic {c} cotton jeans" for c in colours]
    forecast = trained["fusion"].predict(replace(panel, products=products), H)
    level = forecast.units[np.isin(forecast.item_index, new)].mean(axis=1)
    red, yellow = level[colours == "red"].mean(), level[colours == "yellow"].mean()
    assert red > 2 * yellow, (red, yellow)
    assert np.isfinite(forecast.units).all() and (forecast.units >= 0).all()
    assert forecast.price is not None and forecast.trend is not None


def test_forecast_covers_both_groups_from_the_right_period(trained, panel):
    forecast = trained["sequence"].predict(panel, H)
    assert len(forecast.item_index) == panel.n_items
    expected = np.where(panel.has_history, panel.n_periods, panel.start)
    np.testing.assert_array_equal(forecast.start, expected[forecast.item_index])
    assert forecast.units.shape == (panel.n_items, H)


def test_save_load_gives_identical_forecasts_and_refuses_tampering(trained, panel, tmp_path):
    model = trained["fusion"]
    directory = model.save(tmp_path / "fusion")
    loaded = NeuralEstimator.load(directory)
    a, b = model.predict(panel, H), loaded.predict(panel, H)
    for key in ("units", "price", "trend"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    weights = directory / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ForecastError, match="corrupt"):
        NeuralEstimator.load(directory)
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ForecastError):
        NeuralEstimator.load(directory)


@pytest.mark.parametrize("encoder,fusion", [("attention", "gated"), ("lstm", "init")])
def test_network_variants_forward(panel, cfg, encoder, fusion):
    dm = PanelDataModule(panel, H, cfg, use_text=True)
    dm.setup()
    f = dm.features
    for variant in ("fusion", "sequence", "text"):
        spec = NetworkSpec(variant, f.widths, H, 384, 16, 0.0, encoder, fusion)
        out = ForecastNetwork(spec)(dm.val_set.__getitems__([0, 1, 2]))
        assert {k: v.shape for k, v in out.items()} == {k: (3, H) for k in ("demand", "price", "trend")}


def test_text_model_ignores_sales_history(panel, cfg):
    dm = PanelDataModule(panel, H, cfg, use_text=True)
    dm.setup()
    f = dm.features
    net = ForecastNetwork(NetworkSpec("text", f.widths, H, 384, 16, 0.0, "lstm", "gated")).eval()
    batch = dm.val_set.__getitems__(list(range(5)))
    scrambled = dict(batch, context={k: torch.randn_like(v) for k, v in batch["context"].items()},
                     static=dict(batch["static"], sales=torch.randn_like(batch["static"]["sales"])))
    torch.testing.assert_close(net(batch)["demand"], net(scrambled)["demand"])


# --- sampling, window scaling, training without a holdout ----------------------------
def test_epoch_shuffle_subset_depends_on_seed_and_epoch_only():
    a, b = EpochShuffle(100, seed=1, per_epoch=30), EpochShuffle(100, seed=1, per_epoch=30)
    a.set_epoch(2), b.set_epoch(2)
    first = list(a)
    assert len(first) == len(a) == 30 and len(set(first)) == 30 and first == list(b)
    b.set_epoch(3)
    assert list(b) != first
    assert sorted(EpochShuffle(10, seed=1, per_epoch=50)) == list(range(10))


def test_window_scaling_levels_and_save_load(panel, cfg, tmp_path):
    config = cfg.updated({"neural.scaling": "window", "neural.level_weight": 2.0, "train.val_periods": 0,
                          "train.max_epochs": 1, "train.limit_train_batches": 3, "train.lr_schedule": "onecycle"})
    dm = PanelDataModule(panel, H, config, use_text=False)
    dm.setup()
    assert not dm.has_validation and dm.cut == panel.n_periods
    batch = dm.train_set.__getitems__(list(range(len(dm.train_set))))
    launch = batch["context"]["observed"].sum((1, 2)) == 0
    assert launch.any() and torch.allclose(batch["level"][launch], torch.tensor(dm.scaler.launch_level))
    # targets times the window's level give back the transformed units
    fu = dm.scaler.f(panel.units)
    i, t = batch["item"][~launch][:5].numpy(), batch["origin"][~launch][:5].numpy()
    y = batch["y"][~launch][:5, 0].numpy() * batch["level"][~launch][:5].numpy()
    np.testing.assert_allclose(y, fu[i, t], rtol=1e-5, equal_nan=True)
    model = NeuralEstimator("fusion", config)
    model.fit(panel, H)
    loaded = NeuralEstimator.load(model.save(tmp_path / "w"))
    a, b = model.predict(panel, H), loaded.predict(panel, H)
    np.testing.assert_array_equal(a.units, b.units)
    assert np.isfinite(a.units).all() and (a.units >= 0).all()


def test_network_layers_are_sized_from_the_named_feature_blocks(panel, cfg):
    dm = PanelDataModule(panel, H, cfg, use_text=False)
    dm.setup()
    widths = dm.features.widths
    calendar = calendar_features(panel.dates[:1]).shape[1]
    assert widths["context"] == {"units": 1, "observed": 1, "calendar": calendar, "age": 1, "price": 3,
                                 "covariates": len(panel.covariates)}
    assert list(widths["static"]) == ["age", "sales", "price_plan"]
    h = 16
    for variant, static in (("sequence", ["age", "sales", "price_plan"]), ("text", ["age", "price_plan"])):
        net = ForecastNetwork(NetworkSpec(variant, widths, H, 384, h, 0.0, "lstm", "gated"))
        assert net.summary[0].in_features == h + sum(widths["static"][k] for k in static)
        assert net.decoder[0].in_features == h + sum(widths["future"].values()) + h // 4


def test_fusion_offers_its_variant_on_a_panel_without_new_products(trained, panel):
    """A fit whose backtest chose fusion's average-description variant for new products refits on a
    panel where every product has sales: the refit model must still offer that variant (it did not,
    and the fit ended in an internal KeyError)."""
    history_only = panel.take(np.flatnonzero(panel.has_history))
    forecast = trained["fusion"].predict(history_only, H)
    np.testing.assert_array_equal(forecast.variant("average_text_new").units, forecast.units)
