"""The training system: one LightningModule around :class:`ForecastNetwork`.

Lightning's "systems vs models" split: the network (and its encoders) are plain
``nn.Module``s that know nothing of training; this module owns the loss weights,
the shared train/val step, logging and the optimiser. The text encoder's
fine-tuned weights get their own, lower learning rate: pretrained weights move
little before they forget what they knew, the fresh layers need a large step.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from forecast.models.neural.network import HEADS, ForecastNetwork


class ForecastSystem(pl.LightningModule):
    """Every setting comes from the RunConfig (see NeuralEstimator); none has a default here."""

    def __init__(self, network: ForecastNetwork, weights: dict[str, float], learning_rate: float,
                 text_learning_rate: float, weight_decay: float, lr_schedule: str, seed: int):
        super().__init__()
        # Recorded in every checkpoint (not sent to the logger: the run already holds the config).
        self.save_hyperparameters(ignore=["network"], logger=False)
        self.seed, self.lr_schedule = seed, lr_schedule
        self.network = network
        self.weights = dict(weights)
        self.learning_rate, self.text_learning_rate, self.weight_decay = learning_rate, text_learning_rate, weight_decay

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.network(batch)

    def model_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Forward, loss, and logging under ``{stage}/...``: the same code for every stage."""
        losses = self.network.loss(batch, self.network(batch), self.weights)
        on_step = stage == "train"
        size = batch["y"].shape[0]
        self.log(f"{stage}/loss", losses["loss"], on_step=on_step, on_epoch=True,
                 prog_bar=True, batch_size=size)
        for name in HEADS:
            self.log(f"{stage}/{name}_mse", losses[name], on_step=False, on_epoch=True, batch_size=size)
        return losses["loss"]

    def on_train_batch_start(self, batch, batch_idx) -> None:
        """Dropout draws from (seed, step): a resumed run repeats an uninterrupted one exactly. Seeding per
        epoch was not enough: a resumed epoch's DataLoader draws its base seed from the global generator
        at a different point than an uninterrupted one's, shifting the first batch's dropout masks."""
        torch.manual_seed(self.seed * 100_003 + self.global_step)

    def on_fit_start(self) -> None:
        """The Trainer's ``deterministic=True`` also fills every new tensor's memory with NaN
        (``torch.utils.deterministic.fill_uninitialized_memory``), a guard for kernels that read memory
        they did not write; none of this network's do (the forecasts are identical without it), and on
        a CPU the fills cost about 5 % of a training step (experiments/results/throughput.md). Restored
        at the end of the fit."""
        import torch.utils.deterministic as deterministic

        self._fill_uninitialized = deterministic.fill_uninitialized_memory
        deterministic.fill_uninitialized_memory = False

    def on_fit_end(self) -> None:
        import torch.utils.deterministic as deterministic

        deterministic.fill_uninitialized_memory = getattr(self, "_fill_uninitialized", True)

    def training_step(self, batch, batch_idx):
        return self.model_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.model_step(batch, "val")

    def param_groups(self) -> list[dict]:
        """Fresh layers at ``learning_rate``; trainable text-encoder weights at ``text_learning_rate``."""
        encoder = self.network.text_encoder
        text_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
        text = [p for p in self.network.parameters() if p.requires_grad and id(p) in text_ids]
        rest = [p for p in self.network.parameters() if p.requires_grad and id(p) not in text_ids]
        groups = [{"params": rest, "lr": self.learning_rate, "name": "network"}]
        if text:
            groups.append({"params": text, "lr": self.text_learning_rate, "name": "text_encoder"})
        return groups

    def configure_optimizers(self):
        """AdamW; with ``lr_schedule="onecycle"`` a per-step one-cycle schedule over the whole run
        (10 % warm-up, cosine decay to ~0), which Lightning checkpoints and restores on resume."""
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.learning_rate, weight_decay=self.weight_decay)
        if self.lr_schedule == "constant":
            return optimizer
        # OneCycleLR divides by its warm-up length (10 % of the steps, minus one): a run of fewer than 20
        # steps (a tiny panel, or one split across DDP ranks) would divide by zero; it then ends mid-decay
        total = max(int(self.trainer.estimated_stepping_batches), 20)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total, pct_start=0.1,
            anneal_strategy="cos", cycle_momentum=False)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
