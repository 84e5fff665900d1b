"""MLflow: where runs go and what a run holds. The one module that calls MLflow: the verbs log
through the functions here; Lightning's ``MLFlowLogger`` writes training curves and Optuna's
``MLflowCallback`` writes each trial's run (both built here).

Default store: ``sqlite:///mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``
(MLflow 3 refuses a plain file store), overridable by ``--tracking-uri`` or
``$MLFLOW_TRACKING_URI``. One ``fit`` (or ``tune``) is one parent run named after what it
did (``fit retail/sales.csv 300 items h12``) holding the overview: config, backtest table, plots, export, the
model chosen per group. Every model of the backtest gets a child run nested in it, named
after the model, with a ``model`` param and the same metric keys in every child
(``history/wape``, ``new/mase``, ``history/coverage``, ...; per-horizon-step curves as
``history/wape_by_step`` with the step as MLflow's step), so the runs table, the compare view
and the charts put models side by side. A refit neural model is logged to its child run
as an MLflow pyfunc model (built by :mod:`forecast.tracking.serving`). The experiment is tagged as model
development, so the UI opens on training runs rather than GenAI traces. A run that dies is
marked FAILED, one that is interrupted KILLED — never left RUNNING. In a distributed (DDP) training
every rank runs the verb; only rank 0 opens the run and writes to it (the others' calls here do nothing).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecast.core.config import RunConfig, TrackingConfig
from forecast.core.errors import ConfigError, ForecastError
from forecast.core.files import process_alive
from forecast.evaluation.metrics import INTERVAL_METRICS, METRICS

if TYPE_CHECKING:
    from forecast.evaluation.combination import Ensemble

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("mlruns")
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's "Model training" view
MODEL_PATH = "model"  # a child run's logged model: runs:/<run id>/model


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
    try:
        DEFAULT_DIR.mkdir(exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the MLflow store {DEFAULT_DIR.resolve()} ({err.strerror}): run from a "
                          f"writable folder or give --tracking-uri (e.g. sqlite:////tmp/mlruns/mlflow.db)") from None
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


def run_name(cfg: RunConfig, verb: str, sales: str, items: int | None = None) -> str:
    """``--run-name``, else what ran on what: ``fit retail/sales.csv 300 items h12 tuned``. The data's
    folder tells two ``sales.csv`` apart; "tuned" marks a config written by ``tune``."""
    where = Path(sales).resolve()
    parts = [verb, f"{where.parent.name}/{where.name}" if where.parent.name else where.name]
    if items is not None:
        parts.append(f"{items} items")
    parts.append(f"h{cfg.evaluation.horizon}")
    if cfg.tracking.tuned_from and verb != "tune":
        parts.append("tuned")
    return cfg.tracking.run_name or " ".join(parts)


def _tag_experiment(client, experiment: str) -> None:
    """Set the experiment's kind tag unless it already holds it: two fits starting together on a
    database-backed server would otherwise both insert it, and the second fails on its primary key."""
    from mlflow.exceptions import MlflowException

    tags = client.get_experiment(experiment).tags
    for key, value in EXPERIMENT_KIND.items():
        if tags.get(key) == value:
            continue
        try:
            client.set_experiment_tag(experiment, key, value)
        except MlflowException:  # the other fit set it in between: check it did
            if client.get_experiment(experiment).tags.get(key) != value:
                raise


def publish_runs_view(client, experiment: str) -> None:
    """The experiment's headline runs view (:mod:`forecast.tracking.runs_view`), tolerating a concurrent fit
    that writes the same tag at the same moment."""
    from mlflow.exceptions import MlflowException

    from forecast.tracking import runs_view

    try:
        runs_view.publish(client, experiment)
    except MlflowException:
        log.debug("the runs view tag was being written by another process", exc_info=True)


@contextmanager
def tracked_run(cfg: RunConfig, verb: str, sales: str, items: int | None = None) -> Iterator[str]:
    """An MLflow run for the duration of the block, named by :func:`run_name`; yields its run id. Its
    experiment becomes the active one, so runs nested in it (models, tuning trials) land beside it."""
    from forecast.models.neural.devices import is_rank_zero

    if not is_rank_zero():
        yield ""
        return
    import mlflow
    from mlflow.tracking import MlflowClient

    quiet_mlflow()
    uri = resolve_uri(cfg.tracking)
    mlflow.set_tracking_uri(uri)
    experiment = _experiment_id(cfg.tracking.experiment, uri)
    mlflow.set_experiment(experiment_id=experiment)
    _tag_experiment(MlflowClient(), experiment)
    publish_runs_view(MlflowClient(), experiment)
    run = mlflow.start_run(experiment_id=experiment, run_name=run_name(cfg, verb, sales, items),
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
        if tags.get("forecast.host") != host or not pid or process_alive(int(pid)):
            continue
        client.set_terminated(run.info.run_id, status="KILLED")
        marked += 1
    return marked


@_rank_zero_only
def mlflow_logger(cfg: RunConfig, run_id: str, prefix: str = ""):
    """Lightning's MLFlowLogger writing into an existing run (so curves sit beside the baselines)."""
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(tracking_uri=resolve_uri(cfg.tracking), run_id=run_id, prefix=prefix,
                        experiment_name=cfg.tracking.experiment)


@_rank_zero_only
def log_model_runs(table: pd.DataFrame, interval: float | list[float],
                   bands: pd.DataFrame | None = None) -> dict[str, str] | None:
    """One finished child run of the active run per model of the backtest table, holding that
    model's metrics under the same keys as every other child (with ``bands``, the backtest's
    per-band coverage, its ranges' ``<group>/coverage_<band>`` and ``<group>/width_<band>``);
    returns {model: run id} (None off rank 0)."""
    import time

    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from forecast.tracking.runs_view import CHILD_RUN_TAGS

    client, parent = MlflowClient(), mlflow.active_run()
    now, runs = int(time.time() * 1000), {}
    for model, part in table.groupby("model", sort=False):
        # started fit_seconds before it ends, so the runs table's Duration is the model's backtest fit time
        started = now - int(1000 * float(part["fit_seconds"].iloc[0]))
        run = client.create_run(parent.info.experiment_id, run_name=model, start_time=started,
                                tags={MLFLOW_PARENT_RUN_ID: parent.info.run_id, "forecast.model": model,
                                      **CHILD_RUN_TAGS})  # shown expanded under the fit's run
        rows = _model_metrics(part)
        if bands is not None:
            rows = [*rows, *_band_metrics(bands[bands["model"] == model])]
        metrics = [Metric(key, value, now, step) for key, value, step in rows]
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param("model", model), Param("evaluation.interval", str(interval))])
        client.set_terminated(run.info.run_id, end_time=now)
        runs[model] = run.info.run_id
    return runs


def _model_metrics(part: pd.DataFrame) -> Iterator[tuple[str, float, int]]:
    """(key, value, step) of one model's rows of the backtest table: pooled metrics at step 0,
    the per-step WAPE as the steps of ``<group>/wape_by_step``."""
    for row in part.itertuples(index=False):
        if row.step == 0:
            for name in (*METRICS, *INTERVAL_METRICS):
                value = getattr(row, name)
                if np.isfinite(value):
                    yield f"{row.group}/{name}", float(value), 0
        elif np.isfinite(row.wape):
            yield f"{row.group}/wape_by_step", float(row.wape), int(row.step)
    yield "fit_seconds", float(part["fit_seconds"].iloc[0]), 0


def _band_metrics(bands: pd.DataFrame) -> Iterator[tuple[str, float, int]]:
    """(key, value, 0) of the chosen range method's coverage and width per volume band, at the headline
    level (the first of the table's levels)."""
    chosen = bands[bands["chosen"]]
    if chosen.empty:
        return
    for row in chosen[chosen["level"] == chosen["level"].iloc[0]].itertuples(index=False):
        for name, value in (("coverage", row.coverage), ("width", row.width)):
            if np.isfinite(value):
                yield f"{row.group}/{name}_{row.band}", float(value), 0


@contextmanager
def in_run(run_id: str) -> Iterator[None]:
    """Reopen a finished (child) run as the active one for the block, e.g. to log a model into it, then
    end it at its former end time: a model run's Duration is its backtest fit time, not the logging's."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    ended = client.get_run(run_id).info.end_time
    with mlflow.start_run(run_id=run_id, nested=True):
        yield
    if ended is not None:
        client.set_terminated(run_id, end_time=ended)


def log_pyfunc_model(model_dir: Path, loader_module: str, input_example: pd.DataFrame, required: tuple[str, ...],
                     output_example: pd.DataFrame, pip_requirements: list[str], register: str | None = None,
                     name: str = MODEL_PATH, code_paths: list[str] | None = None) -> str:
    """Log a saved model to the active run as an MLflow pyfunc model named ``name`` (the model's own
    name, e.g. ``runs:/<id>/fusion``): its folder as the model's data, loaded by ``loader_module``
    (nothing is pickled), a signature of text input columns (only ``required`` ones required) and of
    the typed output (:func:`output_schema`), an input example, and ``code_paths`` copied in.
    ``register`` also registers it in the model registry under that name. Returns its URI."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", c, required=c in required) for c in input_example.columns])
    mlflow.pyfunc.log_model(name=name, loader_module=loader_module, data_path=str(model_dir),
                            signature=ModelSignature(inputs, output_schema(output_example)),
                            input_example=input_example, registered_model_name=register,
                            pip_requirements=pip_requirements, code_paths=code_paths)
    return f"runs:/{active_run_id()}/{name}"


def output_schema(example: pd.DataFrame):
    """The output's columns typed as a planner reads them: numbers as doubles, ``date`` as a
    datetime, everything else as text (inferring from the example would type a column that
    happens to hold only NaN, or dates written as text, as strings)."""
    from mlflow.types import ColSpec, Schema

    def kind(column: str) -> str:
        if column == "date" or column == "origin":
            return "datetime"
        return "double" if pd.api.types.is_numeric_dtype(example[column]) else "string"

    return Schema([ColSpec(kind(c), c) for c in example.columns])


@_rank_zero_only
def log_inputs(tables: dict[str, tuple[pd.DataFrame, str]]) -> None:
    """The run's input tables as MLflow datasets (name, digest, rows, schema; the Dataset column of the
    runs table): ``{name: (frame, source path)}``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    for name, (frame, source) in tables.items():
        dataset = mlflow.data.from_pandas(frame, source=str(Path(source).resolve()), name=name)
        try:
            mlflow.log_input(dataset, context="training")
        except MlflowException:  # another run (a second tune worker) created the same dataset at that moment:
            mlflow.log_input(dataset, context="training")  # it exists now, and this links it to the run


def download_model(uri: str, destination: Path, loader_module: str) -> Path:
    """The saved-model folder inside a logged pyfunc model (``runs:/<id>/model``,
    ``models:/<name>/<version>``), downloaded under ``destination``."""
    import mlflow
    from mlflow.models import Model

    quiet_mlflow()
    mlflow.set_tracking_uri(resolve_uri(TrackingConfig()))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
        flavor = Model.load(str(local)).flavors.get("python_function", {})
    except Exception as err:  # MlflowException, OSError: an unknown run, model or store
        raise ForecastError(f"--model-uri {uri}: cannot load it from {resolve_uri(TrackingConfig())} "
                            f"({str(err).splitlines()[0]})") from None
    if flavor.get("loader_module") != loader_module or "data" not in flavor:
        raise ForecastError(f"--model-uri {uri}: not a model logged by forecast fit")
    return local / flavor["data"]


@_rank_zero_only
def log_file(path: str | Path, folder: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=folder)

@_rank_zero_only
def log_ensemble(ensemble: Ensemble, folder: Path) -> None:
    """The ensemble's members and weights: printed (INFO) and logged to the active MLflow run as params
    ``ensemble.<group>.<member>`` and the artifact ``ensemble.json`` (with the per-fold weights)."""
    if not ensemble.groups:
        return
    log.info("ensemble weights (shrinkage %.2f toward equal): %s", ensemble.shrinkage, ensemble.describe())
    params = {"ensemble.shrinkage": ensemble.shrinkage}
    params |= {f"ensemble.{group}.{m}": round(float(w), 4)
               for group, gw in ensemble.groups.items() for m, w in zip(gw.members, gw.weights)}
    log_params(params)
    path = Path(folder) / "ensemble.json"
    path.write_text(json.dumps(ensemble.to_dict(), indent=2))
    log_file(path)


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


REACH_SECONDS = 5  # how long a tracking server may take to accept a connection before the run is refused


def check_store(cfg: TrackingConfig) -> str:
    """Open the tracking store before any work, so that a mistyped or unreachable URI fails in
    seconds with the URI named (MLflow itself retries an unreachable server for minutes, then
    fails mid-run). Returns the URI."""
    from urllib.parse import urlparse

    if cfg.register is not None:
        check_register_name(cfg.register)
    uri = resolve_uri(cfg)
    where = f"tracking URI {uri!r} (--tracking-uri or $MLFLOW_TRACKING_URI)"
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=REACH_SECONDS).close()
        except OSError as err:
            raise ConfigError(f"{where}: cannot reach the MLflow server ({err.strerror or err}); start it "
                              f"(mlflow server) or give another URI") from None
        return uri
    from mlflow.tracking import MlflowClient

    quiet_mlflow()
    try:
        with sqlite_lock(uri):
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:  # an unknown scheme, a missing driver, a file store MLflow 3 refuses...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(" See ")[0]
        raise ConfigError(f"{where}: MLflow cannot open it ({first[:300]}); use e.g. sqlite:///mlruns/mlflow.db "
                          f"or http://host:5000") from None
    return uri


REGISTERED_NAME_MAX = 256  # the model registry's name column (MLflow's SQL schema)


def check_register_name(name: str) -> None:
    """``--register NAME``, refused before training when MLflow's registry would refuse it at the end
    (empty, a ``/`` or ``:``, a path such as ``a/../b``, too long)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
    except MlflowException as err:
        raise ConfigError(f"--register {name!r}: not a valid model name ({err.message}); use letters, digits, "
                          f"'-', '_' and '.', e.g. --register demand-fusion") from None
    if len(name) > REGISTERED_NAME_MAX:
        raise ConfigError(f"--register: the name is {len(name)} characters long; the model registry takes at most "
                          f"{REGISTERED_NAME_MAX}")


def ui_address(uri: str, experiment: str, port: int) -> str:
    """The address ``ui`` prints: the experiment's runs table in the model-training view with the
    headline columns (:mod:`forecast.tracking.runs_view`), or the UI's home when the experiment does not exist."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from forecast.tracking import runs_view

    base = f"http://127.0.0.1:{port}"
    mlflow.set_tracking_uri(uri)
    with sqlite_lock(uri):
        found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return base
    publish_runs_view(MlflowClient(uri), found.experiment_id)
    return runs_view.runs_table_url(base, found.experiment_id)


def launch_ui(uri: str | None, port: int, experiment: str = "forecast", open_browser: bool = False) -> int:
    """`mlflow ui` on this store, bound to 127.0.0.1 (one worker: enough, and sqlite-friendly); prints
    the address of the experiment's runs table (:func:`ui_address`) and opens it with ``open_browser``.
    A local store that does not exist is not created: the line says where to fit first.

    The server runs in its own process group: Ctrl-C or SIGTERM here (which the CLI turns
    into a KeyboardInterrupt) stops that whole group (server and workers, freeing the port)
    with SIGTERM, quietly, instead of the terminal's Ctrl-C reaching every worker at once.
    """
    import subprocess

    from forecast.tracking import runs_view

    check_port(port)
    given = uri or os.environ.get("MLFLOW_TRACKING_URI")
    default = f"sqlite:///{(DEFAULT_DIR / 'mlflow.db').resolve()}"
    missing = runs_view.local_store_missing(given or default)
    if missing is not None:
        raise ConfigError(f"no MLflow store here: {missing} does not exist; run python -m forecast fit in this "
                          f"folder first, or give the store of an earlier fit with --tracking-uri")
    uri = check_store(TrackingConfig(uri=uri))  # a non-database file, an unknown scheme: refused by name
    quiet_mlflow()
    address = ui_address(uri, experiment, port)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    print(f"MLflow UI (store {uri}); Ctrl-C stops it\nruns of experiment {experiment!r}: {address}",
          file=sys.stderr, flush=True)
    server = subprocess.Popen(cmd, start_new_session=True)
    if open_browser:
        _open_when_listening(address, port, server)
    try:
        code = server.wait()
    finally:
        _stop_group(server)
    # the server stops only when told to (an interrupt here, handled above): on its own it failed
    raise ForecastError(f"the MLflow UI stopped on its own (exit code {code}) on port {port}, store {uri}; "
                        f"see its messages above")


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """A port the UI can listen on: 1-65535 and free now (a busy port made the server exit at once)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: a port is a number from 1 to 65535 (e.g. 5000)")
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}; another program, "
                              f"perhaps an MLflow UI, uses it); give another --port") from None


def _open_when_listening(address: str, port: int, server, wait_s: float = 60) -> None:
    """Open ``address`` in the default browser once the server accepts connections (before that the
    browser would show a connection error)."""
    import time
    import webbrowser

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                webbrowser.open(address)
                return
        time.sleep(0.2)


def _stop_group(server) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after a grace period."""
    import signal
    import subprocess

    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(server.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
