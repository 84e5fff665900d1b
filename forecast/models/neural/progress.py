"""Lightning's progress bar as a planner reads it: ``fusion: epoch 3/8`` counted from 1 like the log
lines (:class:`~forecast.models.neural.estimator.EpochLine`), without the logger's ``v_num``."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar


class EpochBar(TQDMProgressBar):
    """The terminal's training bar, named after the model, epochs counted 1..max_epochs."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def on_train_epoch_start(self, trainer: pl.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"{self.name}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the MLflow logger's run version: not the user's business
        return items
