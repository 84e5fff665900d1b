"""Optuna sweeps of the fusion model: pruned, resumable, every trial an MLflow run.

- The search space is YAML (dotted RunConfig keys -> distributions); the packaged
  default is ``forecast/search_space.yaml``.
- Objective: WAPE on the holdout (the last ``horizon`` periods) of items with
  history, the model trained on everything before it. Inside that training the
  last ``horizon`` periods are held out for validation, whose per-epoch
  ``val/loss`` feeds Optuna's ``PyTorchLightningPruningCallback`` and a median pruner.
- The study lives in an RDB storage (``tune.storage``, default ``sqlite:///mlruns/optuna.db``), so
  rerunning the same command resumes it; ``--trials N`` is the number of finished
  (complete or pruned) trials the study should hold, so a killed sweep picks up
  where it stopped, and several processes (or machines, with
  ``--storage postgresql://...``) can share one study.
- Trial 0 is the current defaults (the config ``tune`` was given, on the searched keys),
  enqueued with ``study.enqueue_trial`` and never pruned. The config written is the best
  trial's only when it beats trial 0 on this same holdout; otherwise (ties too) the defaults
  are written, and the log says so.
- MLflow: one parent run per invocation, each trial a nested run; the parent gets
  the best params, the winner's backtest beside every baseline, and Optuna's
  optimisation-history and parameter-importance plots.
"""

from __future__ import annotations

import logging
import os
import time
from importlib import resources
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

from forecast.evaluation.backtest import origins, run_backtest
from forecast.core.config import RunConfig
from forecast.data.contract import input_paths
from forecast.data.panel import Panel
from forecast.core.errors import ConfigError
from forecast.core.files import check_writable, write_atomic
from forecast.models.registry import NEURAL, check_models
from forecast.models.base import HISTORY

log = logging.getLogger(__name__)

FINISHED = ("COMPLETE", "PRUNED")
DEFAULTS_ATTR = "defaults"  # user attribute of the trial that runs the current defaults


def load_search_space(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """The search space YAML, checked before any trial runs: each entry must make a valid Optuna
    distribution (``low <= high``, a log range above 0, a positive step) and every value it can
    give must be one its config key accepts (an unknown key, a float range on an integer key)."""
    source = Path(path) if path else resources.files("forecast") / "search_space.yaml"
    if path and not Path(path).is_file():
        raise ConfigError(f"search space {path}: file not found")
    try:
        space = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"search space {source}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(space, dict):
        raise ConfigError(f"search space {source}: expected a mapping of config keys to distributions")
    probe = RunConfig()
    for key, spec in space.items():
        if not isinstance(spec, dict) or spec.get("type") not in SPEC_FIELDS:
            raise ConfigError(f"search space {source}: {key!r} needs type float, int or categorical")
        _check_spec(source, key, spec)
        for value in _examples(key, spec):  # an unknown key, or a value its type refuses: ConfigError
            try:
                probe.updated({key: value})
            except ConfigError as err:
                raise ConfigError(f"search space {source}: {key!r} ({spec['type']}) can give {value!r}, which the "
                                  f"configuration refuses: {err}") from None
    return space


# the fields each distribution type takes (as optuna's suggest_float, suggest_int, suggest_categorical)
SPEC_FIELDS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}


def _check_spec(source: Path | Any, key: str, spec: dict[str, Any]) -> None:
    """Optuna's own checks of a distribution, made now with the key named (in a trial they end the
    sweep with Optuna's internal error), and the ones Optuna does not make: a categorical's choices
    must be a list (a string would be split into its letters), bounds must be numbers of the type."""
    import optuna

    where, kind = f"search space {source}: {key!r}", spec["type"]
    unknown = sorted(set(spec) - SPEC_FIELDS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} for type {kind}; "
                          f"a {kind} takes {', '.join(sorted(SPEC_FIELDS[kind] - {'type'}))}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, e.g. choices: [lstm, attention], "
                              f"got {choices!r}")
        return
    number = int if kind == "int" else (int, float)
    for bound in ("low", "high", "step"):
        value = spec.get(bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, number)):
            raise ConfigError(f"{where}: {bound} {value!r} is not {'an integer' if kind == 'int' else 'a number'}")
    if not isinstance(spec.get("log", False), bool):
        raise ConfigError(f"{where}: log must be true or false, got {spec['log']!r}")
    if spec.get("low") is None or spec.get("high") is None:
        return  # _examples names the missing bound
    make = optuna.distributions.IntDistribution if kind == "int" else optuna.distributions.FloatDistribution
    try:
        make(spec["low"], spec["high"], log=spec.get("log", False),
             step=spec.get("step", 1 if kind == "int" else None))
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def _examples(key: str, spec: dict[str, Any]) -> list[Any]:
    """Every value a trial could be given, as far as the config's type checks can tell: the
    choices of a categorical, the bounds of a range (and a fraction, for a float range)."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    absent = [bound for bound in ("low", "high") if spec.get(bound) is None]
    if absent:
        raise ConfigError(f"search space: {key!r} is a {spec['type']} range without {' and '.join(map(repr, absent))}; "
                          f"give both, e.g. {{type: {spec['type']}, low: 1, high: 10}}")
    if spec["type"] == "float":  # a float range gives fractions: an integer key refuses them
        return [float(spec["low"]), float(spec["high"]), (spec["low"] + spec["high"]) / 2]
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


def current_values(cfg: RunConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The config's own values of the searched keys: trial 0's params. A value the space cannot hold
    (e.g. a categorical without it) is left to the sampler, with a warning naming it."""
    values, tree = {}, cfg.to_dict()
    for key in space:
        node = tree
        for part in key.split("."):
            node = node[part]
        values[key] = node
    outside = [key for key, value in values.items() if not _holds(space[key], value)]
    if outside:
        log.warning("the current value of %s lies outside the search space: trial 0 (the defaults) samples it instead",
                    ", ".join(f"{key}={values[key]!r}" for key in outside))
    return {key: value for key, value in values.items() if key not in outside}


def _holds(spec: dict[str, Any], value: Any) -> bool:
    if spec["type"] == "categorical":
        return value in spec["choices"]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not spec["low"] <= value <= spec["high"]:
        return False
    return spec["type"] == "float" or (value - spec["low"]) % spec.get("step", 1) == 0


def _defaults_trial_exists(study) -> bool:
    """Whether the study already ran, runs or queues the defaults' trial (a resumed sweep adds none;
    one that failed, e.g. killed, is queued again)."""
    return any(t.user_attrs.get(DEFAULTS_ATTR) and t.state.name in ("COMPLETE", "RUNNING", "WAITING")
               for t in study.get_trials(deepcopy=False))


def chosen_trial(study):
    """The trial whose config is written: the best one if it beats the defaults' trial, else the
    defaults' (a tie goes to the defaults). Without a completed defaults trial, the best one, with a warning."""
    best = study.best_trial
    defaults = [t for t in study.trials if t.user_attrs.get(DEFAULTS_ATTR) and t.state.name == "COMPLETE"]
    if not defaults:
        log.warning("the study holds no completed trial of the defaults: the best trial is written unchecked")
        return best
    return best if best.value < defaults[0].value else defaults[0]


def holdout_wape(cfg: RunConfig, panel: Panel, callbacks: list, logger=None) -> float:
    """Train fusion before the holdout origin; WAPE of items with history on the holdout."""
    from forecast.models.neural.estimator import NeuralEstimator

    cutoff = origins(panel.n_periods, cfg.evaluation)[-1]
    make = lambda: NeuralEstimator("fusion", cfg.one_network(), logger=logger, callbacks=callbacks)  # noqa: E731
    summary = run_backtest(panel, {"fusion": make}, cfg.evaluation, cutoffs=[cutoff]).summary()
    return float(summary.loc[summary["group"] == HISTORY, "wape"].iloc[0])


def _optimize(study, objective, todo: int, callbacks: list) -> None:
    """``study.optimize``, resumed when another worker finished the same queued trial first: on SQLite
    two workers can pop one queued trial (the defaults) at once (SQLite has no row lock), and the
    second one's result is then refused ("Cannot tell a COMPLETE trial"). The trial holds the same
    parameters and its result, so this worker goes on with the next ones (MaxTrialsCallback counts)."""
    while True:
        try:
            study.optimize(objective, n_trials=todo, gc_after_trial=True, callbacks=callbacks)
            return
        except ValueError as err:
            if "Cannot tell a COMPLETE trial" not in str(err):
                raise
            log.warning("another worker finished the same queued trial first; going on with the next ones")


def open_study(study_name: str, storage: str):
    """Create or load the study; a heartbeat lets a later run fail trials whose process died."""
    import optuna

    from forecast.tracking.runs import sqlite_lock

    sqlite = storage.startswith("sqlite")
    _check_sqlite_folder(storage)
    try:
        with sqlite_lock(storage):
            rdb = _rdb_storage(storage, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None)
            return optuna.create_study(study_name=study_name, storage=rdb, direction="minimize", load_if_exists=True,
                                       pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2))
    except Exception as err:  # sqlalchemy, optuna or OS errors: an unknown scheme, a missing driver, a bad file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(" (Background on")[0]
        raise ConfigError(f"--storage {storage}: Optuna cannot open it ({first[:300]}); give a writable "
                          f"sqlite:///path/optuna.db or a database URL such as postgresql://user@host/db") from None


def _check_sqlite_folder(storage: str) -> None:
    """A sqlite study needs its folder writable (the database, its journal and the lock file beside it)."""
    if not storage.startswith("sqlite:///"):
        return
    db = Path(storage.removeprefix("sqlite:///"))
    folder = next((p for p in (db.parent, *db.parent.parents) if p.exists()), Path("."))
    if db.is_dir():
        raise ConfigError(f"--storage {storage}: {db} is a folder; name a database file, e.g. {db / 'optuna.db'}")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"--storage {storage}: the folder {folder} is not writable (Optuna keeps the study, "
                          f"its journal and a lock file there); give a --storage in a writable folder")
    if db.exists() and not os.access(db, os.W_OK):
        raise ConfigError(f"--storage {storage}: {db} is read-only; make it writable or give another --storage")


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


def tune(cfg: RunConfig):
    """Run the sweep up to ``cfg.tune.trials`` finished trials (the study, its storage, the search space
    and where the best config goes: ``cfg.tune``), write the best config, refit and export it.

    Returns (the study, the winning RunConfig, the winner's FitResult).
    """
    import optuna

    from forecast import pipeline
    from forecast.tracking import runs as tracking

    trials, study_name, storage = cfg.tune.trials, cfg.tune.study_name, cfg.tune.storage
    search_space, best_config = cfg.tune.search_space, cfg.tune.best_config
    cfg = check_models(cfg.updated({"models": [m for m in cfg.models if m not in NEURAL] + ["fusion"]}).validate())
    space = load_search_space(search_space)
    inputs = [*input_paths(cfg.data), *([search_space] if search_space else [])]
    best_path = check_writable(best_config, inputs)
    export_path = check_writable(cfg.output.export, inputs) if cfg.output.export else None
    pipeline.check_checkpoint_dir(cfg)
    tracking.check_store(cfg.tracking)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(study_name, storage)
    panel = pipeline.load_panel(cfg)
    origins(panel.n_periods, cfg.evaluation)
    tracking.mark_abandoned_runs(cfg.tracking)

    with tracking.tracked_run(cfg, "tune", pipeline.data_paths(cfg)[0], panel.n_items) as parent_id:
        tracking.set_tags({"optuna.study": study_name, "optuna.storage": storage})
        todo = trials - finished_trials(study)
        if todo > 0:
            log.info("study %r: %d finished trial(s); running up to %d more", study_name, trials - todo, todo)
            if not _defaults_trial_exists(study):
                study.enqueue_trial(current_values(cfg, space), user_attrs={DEFAULTS_ATTR: True})
            tracker = tracking.trial_tracker(f"holdout/{HISTORY}/wape")
            objective = tracker.track_in_mlflow()(lambda t: _objective(t, cfg, panel, space))
            _optimize(study, objective, todo, [optuna.study.MaxTrialsCallback(trials, states=_states()), tracker,
                                               _progress])
        else:
            log.info("study %r already holds %d finished trials (asked for %d): nothing to run",
                     study_name, trials - todo, trials)
        completed = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not completed:
            raise ConfigError(f"study {study_name!r} has no completed trial (all pruned or failed); run more trials")
        best = chosen_trial(study)
        is_defaults = bool(best.user_attrs.get(DEFAULTS_ATTR))
        source = f"study {study_name} trial {best.number}" + (" (the defaults: no trial beat them)" if is_defaults else "")
        winner = cfg.updated(best.params | {"tracking.tuned_from": source})
        write_atomic(best_path, lambda handle: yaml.safe_dump(winner.to_dict(), handle, sort_keys=False))
        tracking.log_params({f"best.{k}": v for k, v in best.params.items()})
        tracking.log_metrics({"best/holdout_wape": best.value, "best/trial": best.number,
                              "best/is_defaults": float(is_defaults)})
        tracking.log_file(best_path)
        _log_study_plots(study)
        log.info("%s: holdout WAPE %.4f; config written to %s (rerun: python -m forecast fit --config %s)",
                 f"no trial beat the defaults (trial #{best.number}), so they are written" if is_defaults
                 else f"best trial #{best.number}", best.value, best_path, best_path)
        result = pipeline.fit_in_run(winner, panel, parent_id, export_path)
    return study, winner, result


def _states():
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _objective(trial, cfg: RunConfig, panel: Panel, space: dict[str, dict[str, Any]]) -> float:
    """One trial inside its own MLflow run (opened by the tracker): per-epoch curves go there, and
    the tracker adds the params, the value and the state when the trial ends."""
    from optuna_integration import PyTorchLightningPruningCallback

    from forecast.tracking import runs as tracking

    params = suggest(trial, space)
    # Trials hold out the last horizon of their training data so that Lightning logs val/loss each epoch
    # for the pruner; the winner's config keeps the default (train on everything, fixed epochs).
    trial_cfg = cfg.updated(params | {"train.progress": False, "train.val_periods": None})
    logger = tracking.mlflow_logger(trial_cfg, tracking.active_run_id())
    # The defaults' trial is never pruned: every config written is compared with its full score.
    pruned = not trial.user_attrs.get(DEFAULTS_ATTR)
    callbacks = [PyTorchLightningPruningCallback(trial, monitor="val/loss")] if pruned else []
    return holdout_wape(trial_cfg, panel, callbacks, logger)


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

    from forecast.tracking import runs as tracking

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
