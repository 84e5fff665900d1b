"""The Lightning side of :mod:`forecast.models.neural.ranks`: a callback of every training that, in a
distributed one, takes the launched ranks over from Lightning and keeps the process's own interrupt
handlers during the training in place of Lightning's (which broadcast from inside a signal handler)."""

from __future__ import annotations

import signal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from forecast.models.neural.ranks import adopt

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RankWatch(Callback):
    """For a distributed training: take over the ranks Lightning launched
    (:func:`forecast.models.neural.ranks.adopt`) and keep the process's own interrupt handlers during the
    training instead of Lightning's. Does nothing in a single-process training."""

    def __init__(self) -> None:
        self._handlers: dict[int, object] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Runs after Lightning launched the ranks (first training only) and before it installs its handlers."""
        if trainer.world_size < 2:
            return
        adopt(getattr(trainer.strategy.launcher, "procs", None) or [])
        self._handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Runs after Lightning installed its handlers (its ``_SignalConnector`` puts ours back at the end)."""
        for sig, handler in self._handlers.items():
            if handler is not None:
                try:
                    signal.signal(sig, handler)
                except ValueError:  # not the main thread: handlers cannot be changed (nor were they)
                    return
