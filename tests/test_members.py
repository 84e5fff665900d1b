"""``neural.members``: the forecast fit exports averages K networks trained with seeds seed .. seed + K - 1,
each on the full budget; the backtest trains one network per fold."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from forecast import pipeline
from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import Panel, build_panel
from forecast.models.neural.estimator import META, NeuralEstimator
from forecast.models.neural.network import NetworkAverage

H = 4
TINY = {"train.max_epochs": 2, "train.progress": False, "neural.hidden_size": 16, "neural.context_length": 8,
        "train.batch_size": 64, "train.windows_per_epoch": 256, "neural.knn_feature": 0,
        "evaluation.horizon": H, "evaluation.folds": 2, "seed": 7}


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> Panel:
    sales, products = synthetic.write(tmp_path_factory.mktemp("members"), n_items=24, n_periods=40, n_new=4, seed=5)
    return build_panel(load_tables(sales, products))


def trained(panel: Panel, **overrides) -> NeuralEstimator:
    model = NeuralEstimator("fusion", RunConfig().updated(TINY | overrides))
    model.fit(panel, H)
    return model


@pytest.fixture(scope="module")
def pair(panel) -> NeuralEstimator:
    return trained(panel, **{"neural.members": 2})


def test_member_k_is_the_single_network_of_seed_plus_k(panel, pair):
    assert isinstance(pair.network, NetworkAverage) and len(pair.network.members) == 2
    for k, member in enumerate(pair.network.members):
        single = trained(panel, seed=TINY["seed"] + k, **{"neural.members": 1}).network.state_dict()
        own = member.state_dict()
        assert own.keys() == single.keys()
        assert all(torch.equal(own[name], single[name]) for name in own), f"member {k} differs from seed + {k}"
    first, second = (m.state_dict()["heads.demand.weight"] for m in pair.network.members)
    assert not torch.equal(first, second)  # two seeds, two networks


def test_the_forecast_is_the_members_mean_in_the_scaled_space(panel, pair):
    batch = {k: v[:5] if torch.is_tensor(v) else v for k, v in _a_batch(pair, panel).items()}
    with torch.inference_mode():
        outputs = [member(batch) for member in pair.network.members]
        averaged = pair.network(batch)
    for head in ("demand", "price", "trend"):
        assert torch.allclose(averaged[head], (outputs[0][head] + outputs[1][head]) / 2)


def _a_batch(model: NeuralEstimator, panel: Panel) -> dict:
    from forecast.models.base import forecast_targets
    from forecast.models.neural.features import build_features

    rows, start = forecast_targets(panel, model.groups)
    features = build_features(panel, model.scaler, model.config, model.horizon, True, model.reference)
    return features.gather(rows[:5], start[:5])


def test_saved_members_forecast_identically(panel, pair, tmp_path):
    pair.save(tmp_path / "fusion")
    assert json.loads((tmp_path / "fusion" / META).read_text())["fit"]["members"] == 2
    loaded = NeuralEstimator.load(tmp_path / "fusion")
    assert isinstance(loaded.network, NetworkAverage) and len(loaded.network.members) == 2
    np.testing.assert_array_equal(loaded.predict(panel, H).units, pair.predict(panel, H).units)


def test_the_backtest_trains_one_network_per_fold_and_the_refit_all(panel, caplog):
    cfg = RunConfig().updated(TINY | {"neural.members": 2, "models": ["fusion", "moving_average"]})
    with caplog.at_level(logging.INFO, logger="forecast.models.neural.estimator"):
        planned = pipeline.plan(cfg, panel)
        refitted = pipeline.refit(cfg, panel, planned)
    trainings = [r.getMessage() for r in caplog.records if "fusion: trained" in r.getMessage()]
    assert len(trainings) == len(planned.backtest.folds) + 1
    assert not any("networks" in line for line in trainings[:-1])  # the folds: one network each
    assert "2 networks" in trainings[-1]
    assert len(refitted.models["fusion"].network.members) == 2


class EpochsRun(Callback):
    """Counts the training epochs run (over the members); ``interrupt_at``: Ctrl-C at the start of that one."""

    def __init__(self, interrupt_at: int | None = None):
        self.interrupt_at, self.started = interrupt_at, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started += 1
        if self.started == self.interrupt_at:
            raise KeyboardInterrupt


def test_a_resumed_fit_continues_each_member_from_its_own_checkpoint(panel, pair, tmp_path):
    cfg = RunConfig().updated(TINY | {"neural.members": 2})
    killed = NeuralEstimator("fusion", cfg, callbacks=[EpochsRun(interrupt_at=4)], checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):  # member 0 finished its 2 epochs, member 1 its first
        killed.fit(panel, H)
    assert (tmp_path / "fusion" / "last.ckpt").is_file() and (tmp_path / "fusion-member1" / "last.ckpt").is_file()
    epochs = EpochsRun()
    resumed = NeuralEstimator("fusion", cfg, callbacks=[epochs], checkpoint_dir=tmp_path)
    resumed.fit(panel, H, ckpt_path=str(tmp_path / "fusion" / "last.ckpt"))
    assert epochs.started == 1  # only member 1's second epoch: each member went on from its own checkpoint
    np.testing.assert_array_equal(resumed.predict(panel, H).units, pair.predict(panel, H).units)
