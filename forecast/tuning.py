"""Optuna sweeps of the fusion model: pruned, resumable, every trial an MLflow run.

- The search space is YAML (dotted RunConfig keys -> distributions); the packaged
  default is ``forecast/search_space.yaml``.
- Objective: WAPE on the holdout (the last ``horizon`` periods) of items with
  history, the model trained on everything before it. Inside that training the
  last ``horizon`` periods are held out for validation, whose per-epoch
  ``val/loss`` feeds Optuna's ``PyTorchLightningPruningCallback`` and a median pruner.
- The study lives in an RDB storage (default ``sqlite:///mlruns/optuna.db``), so
  rerunning the same command resumes it; ``--trials N`` is the number of finished
  (complete or pruned) trials the study should hold, so a killed sweep picks up
  where it stopped, and several processes (or machines, with
  ``--storage postgresql://...``) can share one study.
- MLflow: one parent run per invocation, each trial a nested run; the parent gets
  the best params, the winner's backtest beside every baseline, and Optuna's
  optimisation-history and parameter-importance plots.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

from forecast.backtest import origins, run_backtest
from forecast.config import RunConfig
from forecast.data.contract import input_paths
from forecast.data.panel import Panel
from forecast.errors import ConfigError
from forecast.export import check_writable
from forecast.models.registry import check_models
from forecast.models.base import HISTORY

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
FINISHED = ("COMPLETE", "PRUNED")


def load_search_space(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """The search space YAML, checked against the config tree before any trial runs."""
    source = Path(path) if path else resources.files("forecast") / "search_space.yaml"
    if path and not Path(path).is_file():
        raise ConfigError(f"search space {path}: file not found")
    space = yaml.safe_load(source.read_text()) or {}
    if not isinstance(space, dict):
        raise ConfigError(f"search space {source}: expected a mapping of config keys to distributions")
    probe = RunConfig()
    for key, spec in space.items():
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise ConfigError(f"search space {source}: {key!r} needs type float, int or categorical")
        for value in _examples(key, spec):  # an unknown key, or a value its type refuses: ConfigError
            probe.updated({key: value})
    return space


def _examples(key: str, spec: dict[str, Any]) -> list[Any]:
    """Every value a trial could be given, as far as the config's type checks can tell: the
    choices of a categorical, the bounds of a range."""
    if spec["type"] == "categorical":
        if not spec.get("choices"):
            raise ConfigError(f"search space: {key!r} is categorical with no choices")
        return list(spec["choices"])
    absent = [bound for bound in ("low", "high") if spec.get(bound) is None]
    if absent:
        raise ConfigError(f"search space: {key!r} is a {spec['type']} range without {' and '.join(map(repr, absent))}; "
                          f"give both, e.g. {{type: {spec['type']}, low: 1, high: 10}}")
    return [spec["low"], spec["high"]]


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "float":
            params[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "int":
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1))
        else:
            params[key] = trial.suggest_categorical(key, spec["choices"])
    return params


def holdout_wape(cfg: RunConfig, panel: Panel, callbacks: list, logger=None) -> float:
    """Train fusion before the holdout origin; WAPE of items with history on the holdout."""
    from forecast.models.neural.estimator import NeuralEstimator

    cutoff = origins(panel.n_periods, cfg.evaluation)[-1]
    make = lambda: NeuralEstimator("fusion", cfg, logger=logger, callbacks=callbacks)  # noqa: E731
    summary = run_backtest(panel, {"fusion": make}, cfg.evaluation, cutoffs=[cutoff]).summary()
    return float(summary.loc[summary["group"] == HISTORY, "wape"].iloc[0])


def open_study(study_name: str, storage: str | None):
    """Create or load the study; a heartbeat lets a later run fail trials whose process died."""
    import optuna

    from forecast.tracking import sqlite_lock

    storage = storage or DEFAULT_STORAGE
    sqlite = storage.startswith("sqlite")
    with sqlite_lock(storage):
        rdb = _rdb_storage(storage, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None)
        return optuna.create_study(study_name=study_name, storage=rdb, direction="minimize", load_if_exists=True,
                                   pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2))


def _rdb_storage(storage: str, engine_kwargs: dict | None, attempts: int = 5):
    """Optuna's RDBStorage; on a server database (PostgreSQL) workers started together race to create
    its schema ("duplicate key ... pg_type"), and the loser retries once the winner's tables exist."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=90,
                                              engine_kwargs=engine_kwargs)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


def finished_trials(study) -> int:
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


def tune(cfg: RunConfig, trials: int, study_name: str, storage: str | None, search_space: str | None,
         best_config: str | Path):
    """Run the sweep up to `trials` finished trials, write the best config, refit and export it.

    Returns (the study, the winning RunConfig, the winner's FitResult).
    """
    import optuna

    from forecast import pipeline, tracking

    if trials <= 0:
        raise ConfigError(f"--trials must be positive, got {trials}")
    cfg = check_models(cfg.updated({"neural.models": ["fusion"]}).validate())
    space = load_search_space(search_space)
    inputs = [*input_paths(cfg.data), *([search_space] if search_space else [])]
    best_path = check_writable(best_config, inputs)
    export_path = check_writable(cfg.output.export, inputs) if cfg.output.export else None
    pipeline.check_checkpoint_dir(cfg)
    tracking.check_store(cfg.tracking)
    panel = pipeline.load_panel(cfg)
    origins(panel.n_periods, cfg.evaluation)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(study_name, storage)
    tracking.mark_abandoned_runs(cfg.tracking)

    with tracking.tracked_run(cfg, "tune", pipeline.data_paths(cfg)[0]) as parent_id:
        tracking.set_tags({"optuna.study": study_name, "optuna.storage": storage or DEFAULT_STORAGE})
        todo = trials - finished_trials(study)
        if todo > 0:
            log.info("study %r: %d finished trial(s); running up to %d more", study_name, trials - todo, todo)
            tracker = tracking.trial_tracker(f"holdout/{HISTORY}/wape")
            objective = tracker.track_in_mlflow()(lambda t: _objective(t, cfg, panel, space))
            study.optimize(objective, n_trials=todo, gc_after_trial=True,
                           callbacks=[optuna.study.MaxTrialsCallback(trials, states=_states()), tracker, _progress])
        else:
            log.info("study %r already holds %d finished trials (asked for %d): nothing to run",
                     study_name, trials - todo, trials)
        completed = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not completed:
            raise ConfigError(f"study {study_name!r} has no completed trial (all pruned or failed); run more trials")
        best = study.best_trial
        winner = cfg.updated(best.params)
        winner.to_yaml(best_path)
        tracking.log_params({f"best.{k}": v for k, v in best.params.items()})
        tracking.log_metrics({"best/holdout_wape": best.value, "best/trial": best.number})
        tracking.log_file(best_path)
        _log_study_plots(study)
        log.info("best trial #%d: holdout WAPE %.4f; config written to %s (rerun: python -m forecast fit --config %s)",
                 best.number, best.value, best_path, best_path)
        result = pipeline.fit_in_run(winner, panel, parent_id, export_path)
    return study, winner, result


def _states():
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _objective(trial, cfg: RunConfig, panel: Panel, space: dict[str, dict[str, Any]]) -> float:
    """One trial inside its own MLflow run (opened by the tracker): per-epoch curves go there, and
    the tracker adds the params, the value and the state when the trial ends."""
    from optuna_integration import PyTorchLightningPruningCallback

    from forecast import tracking

    params = suggest(trial, space)
    # Trials hold out the last horizon of their training data so that Lightning logs val/loss each epoch
    # for the pruner; the winner's config keeps the default (train on everything, fixed epochs).
    trial_cfg = cfg.updated(params | {"train.progress": False, "train.val_periods": None})
    logger = tracking.mlflow_logger(trial_cfg, tracking.active_run_id())
    callback = PyTorchLightningPruningCallback(trial, monitor="val/loss")
    return holdout_wape(trial_cfg, panel, [callback], logger)


def _progress(study, trial) -> None:
    """One line per trial: number, state, value, best so far."""
    try:
        best = f"{study.best_value:.4f} (#{study.best_trial.number})"
    except ValueError:
        best = "-"
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    log.info("trial %d %s value=%s best=%s", trial.number, trial.state.name.lower(), value, best)


def _log_study_plots(study) -> None:
    """Optimisation history and parameter importances, as PNG artifacts of the parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    from forecast import tracking

    with TemporaryDirectory() as tmp:
        plots = {"optimization_history.png": ovm.plot_optimization_history}
        if sum(t.state.name == "COMPLETE" for t in study.trials) >= 2:
            plots["param_importances.png"] = ovm.plot_param_importances
        for name, plot in plots.items():
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as err:  # e.g. importances of a constant objective
                log.warning("could not draw %s: %s", name, err)
                continue
            path = Path(tmp) / name
            ax.figure.set_size_inches(8, 5)
            ax.figure.tight_layout()
            ax.figure.savefig(path, dpi=90)
            plt.close(ax.figure)
            tracking.log_file(path, "optuna")
