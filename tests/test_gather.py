"""The tensor gather of training windows (PanelFeatures.gather) against the numpy code it replaced.

``reference_gather`` below is that code, kept verbatim: every block, target and index of a
batch must come out equal to the bit, in the same block order (the network concatenates
blocks in that order), for every option that adds or changes a block.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import Panel, build_panel
from forecast.models.base import forecast_targets
from forecast.models.neural.features import (AGE_SCALE, WINDOWS, PanelDataModule, PanelFeatures, Scaler,
                                             neighbour_curves, recent_launch_curves, scaled_curves,
                                             training_windows)
from forecast.models.registry import MODELS

H, L = 5, 6


# --- the numpy gather this replaced (commit e6400ed), kept as the reference ---------------------------
def reference_gather(self, items: np.ndarray, origins: np.ndarray, target_end: int | None = None) -> dict:
    """The batch of windows (item, origin); targets masked from period ``target_end`` on."""
    items, origins = np.asarray(items, dtype=np.int64), np.asarray(origins, dtype=np.int64)
    target_end = self.T if target_end is None else target_end
    rows = items[:, None]
    ctx = origins[:, None] + np.arange(self.L)[None, :]  # grid columns of periods t-L .. t-1
    fut = origins[:, None] + self.L + np.arange(self.H)[None, :]  # periods t .. t+H-1
    start = self.start[items][:, None]

    z_ctx = self.z[rows, ctx]
    observed = np.isfinite(z_ctx)
    n_obs = observed.sum(1)
    if self.window_scaling:  # divide by the window's level: 1 + mean f(units) of its context
        level = np.where(n_obs > 0, 1.0 + np.nansum(z_ctx, 1) / np.maximum(n_obs, 1), self.scaler.launch_level)
        z_ctx = z_ctx / level[:, None]
    else:
        level = np.ones(len(items))
    age_ctx = np.where(observed, np.log1p(np.clip(ctx - self.L - start, 0, None)) / AGE_SCALE, 0.0)
    plan = self.logp[items, origins + self.L - 1]
    plan = np.where(np.isfinite(plan), plan, self.listed_logp[items])
    plan_known = np.isfinite(plan)
    plan_z = np.where(plan_known, self.scaler.logprice_to_z(np.nan_to_num(plan)), 0.0)
    logp_ctx = self.logp[rows, ctx]
    price_known = np.isfinite(logp_ctx)
    price_z = np.where(price_known, self.scaler.logprice_to_z(np.nan_to_num(logp_ctx)), 0.0)
    price_rel = np.where(price_known & plan_known[:, None], np.nan_to_num(logp_ctx - plan[:, None]), 0.0)
    covs_ctx = np.nan_to_num(self.covs[rows, ctx])
    context = {  # per context step [B, L, width]
        "units": np.nan_to_num(z_ctx)[..., None], "observed": observed[..., None],
        "calendar": self.calendar[ctx], "age": age_ctx[..., None],
        "price": np.stack([price_z, price_rel, price_known], axis=-1), "covariates": covs_ctx,
    }
    signals_static = {}
    if self.signals is not None:
        context["signals"], signals_static["signals"] = self._signal_blocks(items, origins)

    age_fut = np.log1p(np.clip(fut - self.L - start, 0, None)) / AGE_SCALE
    covs_plan = np.nan_to_num(self.covs[items, origins + self.L - 1])
    future = {  # per horizon step [B, H, width]: what is known ahead
        "calendar": self.calendar[fut], "age": age_fut[..., None],
        "price_plan": np.repeat(np.stack([plan_z, plan_known], axis=-1)[:, None, :], self.H, 1),
        "covariates": np.repeat(covs_plan[:, None, :], self.H, 1),
    }
    age_steps = np.clip(fut - self.L - start, 0, None)
    age_curve, neighbours, attributes, recent = (self.inputs.get(name) for name in  # were attributes
                                                 ("age_curve", "neighbours", "attributes", "recent_launches"))
    if age_curve is not None:
        future["age_curve"] = age_curve[np.clip(age_steps, 0, len(age_curve) - 1)][..., None]
    if neighbours is not None:
        future["neighbours"] = neighbours[rows, np.clip(age_steps, 0, self.H - 1)][..., None]
    if attributes is not None:
        future["attributes"] = attributes[rows, np.clip(age_steps, 0, self.H - 1)]
    if recent is not None:  # as known at the origin, at each step's age since start
        future["recent_launches"] = recent[origins[:, None] + self.L, np.clip(age_steps, 0, self.H - 1)]

    zc = np.nan_to_num(z_ctx)
    last4 = observed[:, -4:].sum(1)
    static = {  # per window [B, width]
        "age": np.log1p(np.clip(origins - self.start[items], 0, None))[:, None] / AGE_SCALE,
        "sales": np.stack([  # what the context's sales say: the text-only model never reads it
            n_obs / self.L,
            np.log(level) if self.window_scaling else np.where(n_obs > 0, zc.sum(1) / np.maximum(n_obs, 1), 0.0),
            np.where(last4 > 0, zc[:, -4:].sum(1) / np.maximum(last4, 1), 0.0),
        ], axis=1),
        "price_plan": np.stack([plan_z, plan_known], axis=1),
        **signals_static,
    }

    beyond = (fut - self.L) >= target_end
    y = np.where(beyond, np.nan, self.z[rows, fut] / level[:, None])
    logp_fut = self.logp[rows, fut]
    price_y = np.where(beyond, np.nan, self.scaler.logprice_to_z(logp_fut))
    trend_y = np.where(beyond, np.nan, self.trend_z(min(target_end, self.T))[rows, fut] / level[:, None])
    weight = (level / self.scaler.launch_level) ** self.level_weight if self.window_scaling else level
    weight = weight * np.where(origins == self.start[items], self.launch_weight, 1.0)

    batch = {
        "context": _blocks(context), "future": _blocks(future), "static": _blocks(static),
        "y": _t(y), "price_y": _t(price_y), "trend_y": _t(trend_y),
        "item": torch.from_numpy(items), "origin": torch.from_numpy(origins),
        "level": _t(level), "weight": _t(weight),
    }
    if self.text is not None:
        unique, index = np.unique(items, return_inverse=True)
        batch["text_index"] = torch.from_numpy(index.astype(np.int64))
        for key, table in self.text.items():
            batch[f"text_{key}"] = table[torch.from_numpy(unique)]
    return batch


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _blocks(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: _t(a) for name, a in arrays.items()}


# --- the comparison ------------------------------------------------------------------------------------
def assert_same_batch(new: dict, old: dict, path: str = "batch") -> None:
    """Same keys in the same order, and every tensor equal to the bit (NaN where NaN), same dtype and shape."""
    assert list(new) == list(old), path
    for key in old:
        if isinstance(old[key], dict):
            assert_same_batch(new[key], old[key], f"{path}.{key}")
        else:
            torch.testing.assert_close(new[key], old[key], rtol=0, atol=0, equal_nan=True, msg=f"{path}.{key}")


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> Panel:
    """Prices with gaps, a covariate with gaps, products launching inside the panel and after its end."""
    sales, products = synthetic.write(tmp_path_factory.mktemp("gather"), n_items=24, n_periods=30, n_new=4, seed=5)
    panel = build_panel(load_tables(sales, products))
    rng = np.random.default_rng(0)
    price = np.where(rng.random(panel.units.shape) < 0.2, np.nan, panel.price)
    promo = np.where(rng.random(panel.units.shape) < 0.3, np.nan, rng.normal(size=panel.units.shape))
    return replace(panel, price=price, covariates={"promo": promo})


def features(panel: Panel, scaling: str = "global", age_curve: bool = False, neighbours: np.ndarray | None = None,
             attributes: np.ndarray | None = None, recent_launches: int = 0, **options) -> PanelFeatures:
    """The optional inputs as the constructor took them before the block table: launch curves in units,
    the recent launches' window (over this panel's own launches); the panel's signals when it has any."""
    scaler = Scaler.fit(panel, end=panel.n_periods - 2, transform="sqrt", scaling=scaling, launch_periods=H,
                        signals=panel.signals is not None)
    f = PanelFeatures(panel, scaler, L, H, trend_window=5, level_weight=0.5, **options)
    if age_curve:
        f.inputs["age_curve"] = np.asarray(scaler.age_curve, dtype=float)
    for name, curves in (("neighbours", neighbours), ("attributes", attributes)):
        if curves is not None:
            f.inputs[name] = scaled_curves(scaler, curves)
    if recent_launches and not f.window_scaling:
        launched = np.where(f.start > 0, f.start + f.L, -1)  # a start at period 0 may be older
        mean, count = recent_launch_curves(f.z, launched, recent_launches, H)
        overall = np.asarray(scaler.age_curve[:H], dtype=float)[None, :]  # where no recent launch did
        f.inputs["recent_launches"] = np.stack([np.where(count > 0, mean, overall), count > 0], axis=-1)
    return f


def all_windows(panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """Every training window, then every forecast window (origins at the end or at a launch)."""
    (items, origins), _, _ = training_windows(panel.start, panel.n_periods, 0)
    rows, start = forecast_targets(panel, MODELS["fusion"].groups)
    return np.concatenate([items, rows]), np.concatenate([origins, start])


@pytest.mark.parametrize("scaling", ["global", "window"])
def test_the_tensor_gather_equals_the_numpy_gather_to_the_bit(panel, scaling):
    rng = np.random.default_rng(1)
    n = panel.n_items
    embeddings = rng.normal(size=(n, 8)).astype(np.float32)
    attributes = np.where(rng.random((n, H, 2)) < 0.2, np.nan, rng.gamma(2.0, 3.0, size=(n, H, 2)))
    f = features(panel, scaling, text={"emb": torch.from_numpy(embeddings)}, age_curve=True,
                 neighbours=neighbour_curves(embeddings, panel.units, panel.start.astype(np.int64), 3, H),
                 attributes=attributes, recent_launches=6, launch_weight=2.5)
    items, origins = all_windows(panel)
    for target_end in (panel.n_periods, panel.n_periods - 4):
        assert_same_batch(f.gather(items, origins, target_end), reference_gather(f, items, origins, target_end))


@pytest.mark.parametrize("model", ["fusion", "text", "sequence"])
@pytest.mark.parametrize("scaling", ["global", "window"])
def test_the_block_table_gathers_what_the_numpy_gather_did_for_every_variant(panel, model, scaling, monkeypatch):
    """build_features with every option on (the blocks of forecast.models.neural.blocks.BLOCKS, their inputs
    from the config) for each neural model: the batch equals the numpy gather's on the same arrays."""
    from forecast.models.neural.features import build_features
    from forecast.models.neural.variants import READS
    from tests.test_retrieval import bag_of_words

    monkeypatch.setattr("forecast.models.encoders.text.embed_texts", bag_of_words)
    config = RunConfig().updated({"neural.context_length": L, "neural.scaling": scaling, "neural.text_mode": "frozen",
                                  "neural.age_curve": True, "neural.knn_feature": 3, "neural.attribute_curves": True,
                                  "neural.recent_launches": 6, "neural.launch_weight": 2.0})
    scaler = Scaler.fit(panel, end=panel.n_periods, transform="sqrt", scaling=scaling, launch_periods=H)
    f = build_features(panel, scaler, config, H, use_text="text" in READS[model])
    expected = {"age_curve", "recent_launches"} if scaling == "global" else {"age_curve"}
    expected |= {"neighbours", "attributes"} if "text" in READS[model] else set()
    assert set(f.inputs) == expected
    items, origins = all_windows(panel)
    assert_same_batch(f.gather(items, origins), reference_gather(f, items, origins))


def test_the_tensor_gather_equals_the_numpy_gather_without_the_options(panel):
    f = features(replace(panel, covariates={}), text=None)
    items, origins = all_windows(panel)
    assert_same_batch(f.gather(items, origins), reference_gather(f, items, origins))


def test_the_tensor_gather_equals_the_numpy_gather_with_signals(tmp_path):
    from tests.test_signal_features import panel_from
    from tests.test_signals import signal_csv

    p = panel_from(tmp_path, signal_csv())
    f = features(p, text=None)
    assert f.signals is not None
    items, origins = all_windows(p)
    assert_same_batch(f.gather(items, origins), reference_gather(f, items, origins))


def test_the_training_loader_moves_indices_and_the_datamodule_gathers_them(panel):
    """num_workers 0: the DataLoader yields (items, origins, target end); the windows are gathered after
    the transfer, equal to the dataset's own full batch of the same windows."""
    cfg = RunConfig().updated({"neural.context_length": L, "train.batch_size": 16, "train.windows_per_epoch": 40,
                               "train.val_periods": 3})
    dm = PanelDataModule(panel, H, cfg, use_text=False)
    dm.setup("fit")
    for loader, dataset in ((dm.train_dataloader(), dm.train_set), (dm.val_dataloader(), dm.val_set)):
        index_batch = next(iter(loader))
        items, origins, target_end = index_batch[WINDOWS]
        assert items.dtype == origins.dtype == torch.int64 and target_end == dataset.target_end
        gathered = dm.on_after_batch_transfer(index_batch, 0)
        positions = [int(np.flatnonzero((dataset.items == i) & (dataset.origins == o))[0])
                     for i, o in zip(items.tolist(), origins.tolist())]
        assert_same_batch(gathered, dataset.__getitems__(positions))
