"""MLflow: where runs go and what a run holds. The one module that calls MLflow: the verbs log
through the functions here; Lightning's ``MLFlowLogger`` writes training curves and Optuna's
``MLflowCallback`` writes each trial's run (both built here).

Default store: ``sqlite:///mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``
(MLflow 3 refuses a plain file store), overridable by ``--tracking-uri`` or
``$MLFLOW_TRACKING_URI``. One ``fit`` is one run. Metric keys are
``<model>/<group>/<metric>`` (e.g. ``ets/history/wape``) so the UI's compare view
lines models up; per-horizon-step curves are logged as ``.../wape_by_step`` with
the step as MLflow's step. A run that dies is marked FAILED, one that is
interrupted KILLED — never left RUNNING. In a distributed (DDP) training every rank runs
the verb; only rank 0 opens the run and writes to it (the others' calls here do nothing).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.config import RunConfig, TrackingConfig
from forecast.metrics import METRICS

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("mlruns")


def _rank_zero_only(function):
    """``function`` in rank 0 (or a single process); elsewhere a call that does nothing and returns None."""
    @wraps(function)
    def wrapper(*args, **kwargs):
        from forecast.models.neural.devices import is_rank_zero

        return function(*args, **kwargs) if is_rank_zero() else None
    return wrapper


def resolve_uri(cfg: TrackingConfig) -> str:
    """Explicit option, then $MLFLOW_TRACKING_URI, then the embedded sqlite store."""
    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    DEFAULT_DIR.mkdir(exist_ok=True)
    return f"sqlite:///{(DEFAULT_DIR / 'mlflow.db').resolve()}"


def quiet_mlflow() -> None:
    """MLflow configures its own INFO logging on import (database migrations etc.): keep warnings only."""
    import mlflow  # noqa: F401  (import first: it resets its loggers)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def sqlite_lock(uri: str) -> Iterator[None]:
    """Serialise the first touch of a local sqlite database across processes.

    MLflow and Optuna create and migrate their schemas on first connection; two
    processes doing it at once collide ("duplicate column", "table already
    exists"), so they take turns.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock", timeout=300):
        yield


def _experiment_id(name: str, uri: str) -> str:
    with sqlite_lock(uri):
        return _get_or_create_experiment(name, uri)


def _get_or_create_experiment(name: str, uri: str) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        # Artifacts beside the database, not in the current directory's ./mlartifacts.
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        return mlflow.get_experiment_by_name(name).experiment_id


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@contextmanager
def tracked_run(cfg: RunConfig, verb: str) -> Iterator[str]:
    """An MLflow run for the duration of the block; yields its run id. Its experiment becomes the
    active one, so runs nested in it (tuning trials) land beside it."""
    from forecast.models.neural.devices import is_rank_zero

    if not is_rank_zero():
        yield ""
        return
    import mlflow

    quiet_mlflow()
    uri = resolve_uri(cfg.tracking)
    mlflow.set_tracking_uri(uri)
    experiment = _experiment_id(cfg.tracking.experiment, uri)
    mlflow.set_experiment(experiment_id=experiment)
    run = mlflow.start_run(experiment_id=experiment, run_name=cfg.tracking.run_name,
                           tags={"forecast.verb": verb, "forecast.pid": str(os.getpid()),
                                 "forecast.host": socket.gethostname()})
    run_id = run.info.run_id
    try:
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(cfg.to_dict()).items()})
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        yield run_id
    except (KeyboardInterrupt, SystemExit):
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


@_rank_zero_only
def mark_abandoned_runs(cfg: TrackingConfig) -> int:
    """Mark RUNNING runs whose process on this host is gone (e.g. SIGKILL) as KILLED."""
    import mlflow
    from mlflow.tracking import MlflowClient

    quiet_mlflow()
    uri = resolve_uri(cfg)
    mlflow.set_tracking_uri(uri)
    with sqlite_lock(uri):
        found = mlflow.get_experiment_by_name(cfg.experiment)
    if found is None:
        return 0
    client = MlflowClient()
    host, marked = socket.gethostname(), 0
    for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        pid = tags.get("forecast.pid")
        if tags.get("forecast.host") != host or not pid or _alive(int(pid)):
            continue
        client.set_terminated(run.info.run_id, status="KILLED")
        marked += 1
    return marked


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@_rank_zero_only
def mlflow_logger(cfg: RunConfig, run_id: str, prefix: str = ""):
    """Lightning's MLFlowLogger writing into an existing run (so curves sit beside the baselines)."""
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(tracking_uri=resolve_uri(cfg.tracking), run_id=run_id, prefix=prefix,
                        experiment_name=cfg.tracking.experiment)


@_rank_zero_only
def log_backtest(table: pd.DataFrame) -> None:
    """Every model's pooled metrics, and per-step WAPE curves, into the active run."""
    import mlflow

    metrics = {}
    for row in table.itertuples(index=False):
        for name in METRICS:
            value = getattr(row, name)
            if not np.isfinite(value):
                continue
            if row.step == 0:
                metrics[f"{row.model}/{row.group}/{name}"] = float(value)
            elif name == "wape":
                mlflow.log_metric(f"{row.model}/{row.group}/wape_by_step", float(value), step=int(row.step))
        if row.step == 0:
            metrics[f"{row.model}/fit_seconds"] = float(row.fit_seconds)
    mlflow.log_metrics(metrics)


@_rank_zero_only
def log_file(path: str | Path, folder: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=folder)


@_rank_zero_only
def log_params(params: dict[str, object]) -> None:
    """Parameters of the active run."""
    import mlflow

    mlflow.log_params(params)


@_rank_zero_only
def log_metrics(metrics: dict[str, float]) -> None:
    """Metrics of the active run."""
    import mlflow

    mlflow.log_metrics(metrics)


@_rank_zero_only
def set_tags(tags: dict[str, str]) -> None:
    """Tags of the active run."""
    import mlflow

    mlflow.set_tags(tags)


def active_run_id() -> str:
    import mlflow

    return mlflow.active_run().info.run_id


def trial_tracker(metric: str):
    """Optuna's MLflowCallback: every trial a run nested in the active one, holding the trial's
    params, its value as ``metric``, its distributions and its ``state`` (COMPLETE, PRUNED) as tags.
    Wrap the objective with ``tracker.track_in_mlflow()`` so the run is open while the trial trains."""
    from optuna_integration.mlflow import MLflowCallback

    return MLflowCallback(metric_name=metric, create_experiment=False, mlflow_kwargs={"nested": True})


def launch_ui(uri: str | None, port: int) -> int:
    """`mlflow ui` on this store, bound to 127.0.0.1 (one worker: enough, and sqlite-friendly)."""
    import subprocess

    uri = resolve_uri(TrackingConfig(uri=uri))
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    print(f"MLflow UI on http://127.0.0.1:{port} (store {uri}); Ctrl-C stops it", file=sys.stderr)
    return subprocess.call(cmd)
