"""Where neural training runs: Lightning's device settings, the text mode they imply, and
which process of a distributed training writes.

``train.accelerator``, ``train.devices``, ``train.strategy`` and ``train.precision`` are
passed to Lightning's ``Trainer`` as they are: Lightning picks the device, launches the
DDP processes (on CPU over gloo, on GPUs over NCCL) and shards the batches. With
``strategy: ddp`` Lightning starts the other ranks by rerunning the same command, so
every rank runs the whole ``fit`` (same data, same order of trainings) and only rank 0
writes: the MLflow run (``forecast.tracking``), saved models and the export.
"""

from __future__ import annotations

import os

from forecast.config import RunConfig, TrainConfig

# the environment variables Lightning (and torchrun, SLURM) give each rank, in Lightning's order
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_rank_zero() -> bool:
    """True in a single-process run and in rank 0 of a distributed one (the process that writes)."""
    for name in _RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name]) == 0
    return True


def trainer_devices(train: TrainConfig) -> dict:
    """The Trainer's device arguments, from the config."""
    return {"accelerator": train.accelerator, "devices": train.devices, "strategy": train.strategy,
            "precision": train.precision}


def on_cuda(train: TrainConfig) -> bool:
    """Whether training will run on CUDA GPUs: asked for, or ``auto`` on a machine that has one."""
    if train.accelerator in ("gpu", "cuda"):
        return True
    if train.accelerator != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def resolve_text_mode(cfg: RunConfig) -> RunConfig:
    """``neural.text_mode: auto`` made concrete: ``last-k`` (fine-tune the top encoder layers) on
    CUDA, ``frozen`` elsewhere. On CPU an epoch of 10,240 windows costs 1.5 s frozen and 123 s
    with last-k (experiments/results/benchmark.md), with no measured accuracy gain."""
    if cfg.neural.text_mode != "auto":
        return cfg
    return cfg.updated({"neural.text_mode": "last-k" if on_cuda(cfg.train) else "frozen"})
