"""PyTorch Forecasting contenders for history items: TemporalFusionTransformer and DeepAR.

They get the same training budget as forecast's default fusion model: the same
number of training windows per epoch (48,000, as batches of 128), epochs and hidden
size, which `benchmark.py` passes as `run_peers.py --peer-windows/--peer-epochs/--peer-hidden`.
They stand for "an off-the-shelf deep global model", untuned.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from peers_data import HISTORY, WEEK, Fold

ENCODER_LENGTH = 26


def _calendar_columns(dates: pd.Series) -> pd.DataFrame:
    """Week of year on the unit circle: known in advance and continuous across New Year."""
    angle = 2 * np.pi * dates.dt.isocalendar().week.to_numpy(dtype=float) / 52.18
    return pd.DataFrame({"woy_sin": np.sin(angle), "woy_cos": np.cos(angle)}, index=dates.index)


def _modelled_items(fold: Fold) -> np.ndarray:
    """Items with at least 2 observed weeks. A one-week series has no training
    window and a NaN per-item scale (std of one value), which turns into NaN
    forecasts (TFT) or crashes sampling (DeepAR); the runner's fallback
    forecasts those few items instead and counts them."""
    return (~np.isnan(fold.units)).sum(axis=1) >= 2


def _long_frame(fold: Fold, with_future: bool) -> pd.DataFrame:
    """item_id, time_idx, units, calendar; optionally H placeholder future rows per item.

    Units are clipped at 0 (visuelle has a few returns): the log1p transform and
    the negative-binomial likelihood both need non-negative values.
    """
    observed = ~np.isnan(fold.units) & _modelled_items(fold)[:, None]
    rows, cols = np.nonzero(observed)
    frame = pd.DataFrame({"item_id": fold.history_ids[rows], "time_idx": cols,
                          "units": np.maximum(fold.units[rows, cols], 0.0)})
    if with_future:
        ids, H = fold.history_ids[_modelled_items(fold)], fold.horizon
        future = pd.DataFrame({"item_id": np.repeat(ids, H),
                               "time_idx": np.tile(fold.n_weeks + np.arange(H), len(ids)), "units": 0.0})
        frame = pd.concat([frame, future], ignore_index=True)
    dates = pd.Series(fold.weeks[0] + frame["time_idx"].to_numpy() * WEEK)
    frame = pd.concat([frame, _calendar_columns(dates)], axis=1)
    frame["item_id"] = frame["item_id"].astype(str)
    return frame


class PytorchForecastingHistory:
    """Shared data handling for TFT and DeepAR; subclasses build the network."""

    group = HISTORY
    name = "pf"

    def __init__(self, seed: int = 0, threads: int = 2, max_epochs: int = 8, train_batches: int = 375,
                 batch_size: int = 128, hidden_size: int = 64) -> None:
        self.seed, self.threads, self.max_epochs, self.train_batches = seed, threads, max_epochs, train_batches
        self.batch_size, self.hidden_size = batch_size, hidden_size
        self.model = None
        self.train_set = None

    def _normalizer(self):
        """Per-item scaling of the target; log1p tames the heavy tail across items."""
        from pytorch_forecasting.data import GroupNormalizer

        return GroupNormalizer(groups=["item_id"], transformation="log1p")

    def _dataset(self, frame: pd.DataFrame, horizon: int):
        from pytorch_forecasting import TimeSeriesDataSet

        return TimeSeriesDataSet(
            frame, time_idx="time_idx", target="units", group_ids=["item_id"],
            max_encoder_length=ENCODER_LENGTH, min_encoder_length=1,
            max_prediction_length=horizon, min_prediction_length=1,
            time_varying_known_reals=["woy_sin", "woy_cos"],
            time_varying_unknown_reals=["units"],
            target_normalizer=self._normalizer(),
            add_relative_time_idx=True, add_target_scales=True,
        )

    def _network(self, dataset):
        raise NotImplementedError

    def fit(self, fold: Fold) -> None:
        import lightning.pytorch as pl
        import torch

        pl.seed_everything(self.seed, workers=True, verbose=False)
        torch.set_num_threads(self.threads)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        trainer = pl.Trainer(
            max_epochs=self.max_epochs, limit_train_batches=self.train_batches, accelerator="cpu",
            gradient_clip_val=0.1, enable_checkpointing=False, logger=False,
            enable_progress_bar=False, enable_model_summary=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.train_set = self._dataset(_long_frame(fold, with_future=False), fold.horizon)
            loader = self.train_set.to_dataloader(train=True, batch_size=self.batch_size, num_workers=0)
            self.model = self._network(self.train_set)
            trainer.fit(self.model, train_dataloaders=loader)

    def _predict_kwargs(self) -> dict:
        return {}

    def predict(self, fold: Fold) -> np.ndarray:
        from pytorch_forecasting import TimeSeriesDataSet

        frame = _long_frame(fold, with_future=True)
        pred_set = TimeSeriesDataSet.from_dataset(self.train_set, frame, predict=True, stop_randomization=True)
        loader = pred_set.to_dataloader(train=False, batch_size=512, num_workers=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = self.model.predict(
                loader, mode="prediction", return_index=True,
                trainer_kwargs={"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
                **self._predict_kwargs(),
            )
        values = result.output.detach().cpu().numpy()
        ids = result.index["item_id"].astype(str).to_numpy()
        out = pd.DataFrame(values, index=ids).reindex(fold.history_ids).to_numpy(dtype=float)
        return out


class TFTHistory(PytorchForecastingHistory):
    """TemporalFusionTransformer, quantile loss; the point forecast is the median."""

    name = "tft"

    def _network(self, dataset):
        from pytorch_forecasting import TemporalFusionTransformer

        return TemporalFusionTransformer.from_dataset(
            dataset, learning_rate=0.01, hidden_size=self.hidden_size, attention_head_size=1,
            dropout=0.1, hidden_continuous_size=8, log_interval=-1,
        )


class DeepARHistory(PytorchForecastingHistory):
    """DeepAR: LSTM with a negative-binomial likelihood (the DeepAR paper's choice
    for counts); point forecast = mean of sampled paths.

    The target is only rescaled by the item's mean (no centring, no log), as the
    negative binomial needs. A Gaussian on log1p units overflowed when sampled
    paths were fed back through exp() and crashed the run with NaN.
    """

    name = "deepar"

    def _normalizer(self):
        from pytorch_forecasting.data import GroupNormalizer

        return GroupNormalizer(groups=["item_id"], center=False)

    def _network(self, dataset):
        from pytorch_forecasting import DeepAR
        from pytorch_forecasting.metrics import NegativeBinomialDistributionLoss

        return DeepAR.from_dataset(dataset, learning_rate=0.01, hidden_size=self.hidden_size,
                                   rnn_layers=1, dropout=0.1, log_interval=-1,
                                   loss=NegativeBinomialDistributionLoss())

    def _predict_kwargs(self) -> dict:
        return {"n_samples": 100}
