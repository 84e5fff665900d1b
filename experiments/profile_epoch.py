"""Where one fusion training epoch spends its time, by Lightning callback + module hooks.

    python experiments/profile_epoch.py                       # prints both text modes on online_retail
    python experiments/profile_epoch.py --json profile.json   # also writes them (what benchmark.py reads)

Epoch wall time is split into: data loading (epoch time outside the training
steps: the DataLoader and the loop), the text encoder's forward, the sequence
encoder's forward, the rest of the forward (fusion, heads, loss), and backward +
optimiser step. Forward hooks time the encoders; the Lightning callback times
the epoch and each batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

from pathlib import Path

import lightning.pytorch as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import load  # noqa: E402
from forecast.core.config import RunConfig  # noqa: E402
from forecast.data.panel import Panel  # noqa: E402


PROFILE_WINDOWS = 10_240  # 20 batches of 512 in both modes, so the shares are comparable


class EpochTimer(pl.Callback):
    """Accumulates epoch, batch and per-module forward times for the first training epoch."""

    def __init__(self) -> None:
        self.t = defaultdict(float)
        self._start: dict[str, float] = {}
        self._handles = []
        self.epochs = 0

    def _hook(self, module, name: str) -> None:
        def pre(*_):
            self._start[name] = time.perf_counter()

        def post(*_):
            if module.training:
                self.t[name] += time.perf_counter() - self._start[name]

        self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def on_fit_start(self, trainer, pl_module) -> None:
        net = pl_module.network
        self._hook(net, "forward")
        if getattr(net, "text_encoder", None) is not None:
            self._hook(net.text_encoder, "text_encoder")
        if getattr(net, "sequence", None) is not None:
            self._hook(net.sequence, "sequence_encoder")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start["epoch"] = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start["batch"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.t["batches"] += time.perf_counter() - self._start["batch"]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.t["epoch"] += time.perf_counter() - self._start["epoch"]
        self.epochs += 1
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def shares(self) -> dict[str, float]:
        t, epoch = self.t, self.t["epoch"]
        parts = {
            "data_loading": epoch - t["batches"],
            "text_encoder": t["text_encoder"],
            "sequence_encoder": t["sequence_encoder"],
            "other": t["forward"] - t["text_encoder"] - t["sequence_encoder"],
            "optimiser": t["batches"] - t["forward"],
        }
        return {k: max(v, 0.0) / epoch for k, v in parts.items()}


def profile_epoch(panel: Panel, mode: str, seed: int = 0) -> dict:
    """Train fusion for one epoch in text mode `mode` and time its parts."""
    from forecast.models.neural.estimator import NeuralEstimator

    cfg = RunConfig(seed=seed)
    cfg.neural.text_mode = mode
    cfg.train.max_epochs = 1
    cfg.train.windows_per_epoch = PROFILE_WINDOWS  # last-k costs ~6 s a step on CPU: profile a slice of an epoch
    cfg.train.progress = False
    timer = EpochTimer()
    model = NeuralEstimator("fusion", cfg, callbacks=[timer])
    tic = time.perf_counter()
    model.fit(panel, cfg.evaluation.horizon)
    return {"mode": mode, "epoch_seconds": timer.t["epoch"], "fit_seconds": time.perf_counter() - tic,
            "shares": timer.shares()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the measurements (a list, one per text mode) here")
    args = parser.parse_args()
    panel = load("online_retail")
    results = [profile_epoch(panel, text_mode, args.seed) for text_mode in ("frozen", "last-k")]
    for result in results:
        print(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
