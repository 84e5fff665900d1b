"""Where neural training runs: Lightning's device settings, the text mode they imply, and
which process of a distributed training writes.

``train.accelerator``, ``train.devices``, ``train.strategy`` and ``train.precision`` are
passed to Lightning's ``Trainer`` as they are: Lightning picks the device, launches the
DDP processes (on CPU over gloo, on GPUs over NCCL) and shards the batches. With
``strategy: ddp`` Lightning starts the other ranks by rerunning the same command, so
every rank runs the whole ``fit`` (same data, same order of trainings) and only rank 0
writes: the MLflow run (``forecast.tracking.runs``), saved models and the export.
"""

from __future__ import annotations

import os

from forecast.core.config import RunConfig, TrainConfig
from forecast.core.errors import ConfigError

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


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_devices(train: TrainConfig) -> None:
    """Refuse, before any training, device options this machine cannot honour: an accelerator it
    lacks (Lightning would fail mid-run with an internal error), more devices than it has (on CPU each
    device is a training process: ``--devices 64`` on 2 cores started 64 of them and exhausted memory)."""
    from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator

    shown = ",".join(map(str, train.devices)) if isinstance(train.devices, list) else train.devices
    where = f"--accelerator {train.accelerator} --devices {shown}"
    available = {"gpu": CUDAAccelerator.is_available, "cuda": CUDAAccelerator.is_available,
                 "mps": MPSAccelerator.is_available, "tpu": XLAAccelerator.is_available}
    if train.accelerator == "hpu" or (train.accelerator in available and not available[train.accelerator]()):
        raise ConfigError(f"{where}: this machine has no {train.accelerator.upper()} device that torch can use; "
                          f"give --accelerator cpu (or auto, which takes a GPU when there is one)")
    devices = train.devices
    if devices == "auto" or devices == -1:
        return
    on_gpu = train.accelerator in ("gpu", "cuda") or (train.accelerator == "auto" and CUDAAccelerator.is_available())
    if isinstance(devices, int) and devices < 1:
        raise ConfigError(f"{where}: give a positive number of devices, -1 or auto (all), or a list such as 0,1")
    if on_gpu:
        count = CUDAAccelerator.auto_device_count()
        wanted = devices if isinstance(devices, list) else list(range(devices))
        if max(wanted) >= count or len(set(wanted)) != len(wanted):
            raise ConfigError(f"{where}: this machine has {count} GPU(s) (indices 0-{count - 1}); give at most "
                              f"{count} devices, or distinct indices below {count}")
        return
    if train.accelerator not in ("cpu", "auto"):
        return
    if isinstance(devices, list):
        raise ConfigError(f"{where}: on CPU, --devices is a number of training processes (e.g. 2), not a list "
                          f"of device indices")
    cores = cpu_cores()
    if devices > cores:
        raise ConfigError(f"{where}: on CPU each device is a training process and this machine has {cores} "
                          f"core(s); give --devices {cores} or fewer")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In a rank other than 0 of a distributed training (Lightning starts them by rerunning the
    command from rank 0), ask Linux to kill this process when its parent dies: a killed or crashed
    rank 0 must not leave the other ranks running (or waiting on it) for ever. Elsewhere nothing."""
    import signal
    import sys

    if is_rank_zero() or not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent or parent == 1:  # the parent died before the request took effect
        os._exit(1)
