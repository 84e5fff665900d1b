"""The signals block the neural models read (--signals with neural.signals: true): standardised, and only ever from before the origin."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from forecast.cli import main
from forecast.core.config import DataConfig, RunConfig
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.data.signals import attach_signals
from forecast.models.base import forecast_targets
from forecast.models.neural.estimator import NeuralEstimator
from forecast.models.neural.features import PanelDataModule
from forecast.models.registry import MODELS
from tests.conftest import refused, write_csv
from tests.test_signals import PRODUCTS, SALES, WEEKS, signal_csv

H = 3
FAST = {"train.max_epochs": 2, "train.windows_per_epoch": 200, "train.progress": False, "neural.hidden_size": 8,
        "neural.context_length": 6, "train.batch_size": 32, "train.lr_schedule": "constant", "neural.signals": True}
# C uses no signal; A uses red (1000 + grid position, so a value names its own date) and wool
GREY = "".join(f"C,{d.date()},{u}\n" for d, u in zip(WEEKS, [1, 3, 2, 5, 4, 6, 5, 7, 6, 8]))
PLAIN = "C,plain linen shirt,grey,\n"


def panel_from(tmp_path: Path, signals: str, weeks: int = len(WEEKS)):
    rows = [line for line in (SALES + GREY).splitlines()[1:] if pd.Timestamp(line.split(",")[1]) < WEEKS[weeks]] \
        if weeks < len(WEEKS) else (SALES + GREY).splitlines()[1:]
    sales = write_csv(tmp_path, "sales.csv", "item_id,date,units\n" + "\n".join(rows) + "\n")
    products = write_csv(tmp_path, "products.csv", PRODUCTS + PLAIN)
    panel = build_panel(load_tables(sales, products, DataConfig()))
    return attach_signals(panel, write_csv(tmp_path, "signals.csv", signals))


def test_the_network_sees_only_standardised_signal_values_from_before_each_origin(tmp_path):
    p = panel_from(tmp_path, signal_csv())
    cfg = RunConfig().updated(FAST)
    dm = PanelDataModule(p, H, cfg, use_text=False)
    dm.setup()
    red, names = p.signals.names.index("red"), list(dm.scaler.signals)
    assert names == p.signals.names  # the statistics are saved per signal, in the block's order
    mean, std = dm.scaler.signals["red"]
    assert mean == pytest.approx(1000 + np.arange(-13, 10).mean())  # over the training periods only
    train = dm.train_set.__getitems__(np.arange(len(dm.train_set)))
    rows, start = forecast_targets(p, MODELS["sequence"].groups)
    predict = dm.features.gather(rows, start)
    for batch in (train, predict):
        block = batch["context"]["signals"].numpy()
        assert block.shape[1:] == (6, len(names) + 1)
        origin, item = batch["origin"].numpy(), batch["item"].numpy()
        position = block[..., red] * std + mean - 1000
        a = p.item_ids[item] == "A"
        np.testing.assert_allclose(position[a], origin[a, None] - 6 + np.arange(6), atol=1e-3)  # t-6 .. t-1
        c = p.item_ids[item] == "C"
        assert (block[c] == 0).all()  # no matching signal: zeros, and the flag says so
        assert (block[~c, :, -1] == 1).all()
        np.testing.assert_allclose(batch["static"]["signals"][:, -1].numpy(), (~c).astype(float))


def test_a_signal_equal_to_the_future_truth_does_not_change_the_forecast(tmp_path):
    """The trap: 'red' (A's signal) holds A's sales in the forecast weeks, or noise; the forecasts are the same."""
    known = 6
    trap = signal_csv().splitlines()
    noise = list(trap)
    rng = np.random.default_rng(0)
    for k, line in enumerate(trap[1:], start=1):
        date, red, *rest = line.split(",")
        position = (pd.Timestamp(date) - WEEKS[0]).days // 7
        if position >= known:  # the forecast weeks and later
            trap[k] = ",".join([date, str(4.0 * 1000), *rest])  # A sells 4 a week: the future truth, scaled
            noise[k] = ",".join([date, f"{rng.normal(1000, 50):.3f}", *rest])
    forecasts = []
    for name, lines in (("trap", trap), ("noise", noise)):
        folder = tmp_path / name
        folder.mkdir()
        p = panel_from(folder, "\n".join(lines) + "\n", weeks=known)
        assert p.n_periods == known
        model = NeuralEstimator("fusion", RunConfig().updated(FAST))
        model.fit(p, H)
        forecasts.append(model.predict(p, H).units)
    np.testing.assert_array_equal(forecasts[0], forecasts[1])


def test_fit_with_signals_saves_models_that_read_them_and_predict_needs_them(workdir, capsys):
    p_sales = write_csv(workdir, "sales.csv", SALES + GREY)
    p_products = write_csv(workdir, "products.csv", PRODUCTS + PLAIN)
    p_signals = write_csv(workdir, "signals.csv", signal_csv())
    Path("fast.yaml").write_text(yaml.safe_dump({"train": {k.split(".")[1]: v for k, v in FAST.items()
                                                            if k.startswith("train.")},
                                                  "neural": {"hidden_size": 8, "context_length": 6,
                                                             "signals": True}}))
    code = main(["fit", "--sales", p_sales, "--products", p_products, "--signals", p_signals, "--config", "fast.yaml",
                 "--horizon", "2", "--folds", "1", "--models", "moving_average,fusion,sequence,text", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = {m.parent.name: json.loads(m.read_text()) for m in Path("checkpoints").glob("*/*/meta.json")}
    assert saved, "no neural model was saved"
    for name, meta in saved.items():
        assert meta["spec"]["blocks"]["context"]["signals"] == 4  # red, wool, cotton + the known flag
        assert meta["spec"]["blocks"]["static"]["signals"] == 7
    model_dir = str(next(Path("checkpoints").glob("*/*/meta.json")).parent)
    capsys.readouterr()
    refused(capsys, ["predict", "--model-dir", model_dir, "--sales", p_sales, "--products", p_products,
                     "--export", "again.csv"], "--signals", outputs=("again.csv",))
    assert main(["predict", "--model-dir", model_dir, "--sales", p_sales, "--products", p_products,
                 "--signals", p_signals, "--export", "again.csv"]) == 0


def test_by_default_the_network_reads_no_signals_and_forecasts_as_without_them(tmp_path):
    """neural.signals is off by default (they made fusion worse on VISUELLE): same forecast with or without."""
    with_signals = panel_from(tmp_path, signal_csv())
    without = replace(with_signals, signals=None)
    cfg = RunConfig().updated({k: v for k, v in FAST.items() if k != "neural.signals"})
    assert cfg.neural.signals is False
    forecasts = []
    for panel in (with_signals, without):
        model = NeuralEstimator("fusion", cfg)
        model.fit(panel, H)
        assert "signals" not in model.network.spec.blocks["context"]
        assert "signals" not in model.network.spec.blocks["static"]
        forecasts.append(model.predict(panel, H).units)
    np.testing.assert_array_equal(forecasts[0], forecasts[1])
