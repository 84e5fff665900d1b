"""Optuna sweeps: trials in storage and as nested MLflow runs, resume, parallel workers, best config round trip."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from forecast.cli import main
from forecast.core.config import RunConfig
from forecast.core.errors import ConfigError
from forecast.tuning import load_search_space
from tests.conftest import mlflow_runs, runs_by_name, store_uri

SPACE = "neural.hidden_size: {type: categorical, choices: [16, 32]}\n" \
        "train.learning_rate: {type: float, low: 0.001, high: 0.01, log: true}\n"


@pytest.fixture
def small_data(workdir):
    from forecast.data import synthetic

    sales, products = synthetic.write(workdir / "data", n_items=30, n_periods=70, n_new=3, seed=5)
    (workdir / "space.yaml").write_text(SPACE)
    return sales, products


def tune_args(sales, products, trials: int, *extra: str) -> list[str]:
    return ["tune", "--sales", sales, "--products", products, "--trials", str(trials), "--search-space",
            "space.yaml", "--horizon", "6", "--folds", "1", "--max-epochs", "3", "--models",
            "moving_average,fusion", "--no-progress", *extra]


def trial_states(db="mlruns/optuna.db") -> tuple[list[str], list[str]]:
    with sqlite3.connect(db, timeout=60) as con:
        studies = [s for (s,) in con.execute("select study_name from studies")]
        states = [s for (s,) in con.execute("select state from trials")]
    return studies, states


def mlflow_trials() -> list[tuple[str, str, str]]:
    """(run name, status, trial state) of the sweep's trial runs in ./mlruns."""
    return [(run.info.run_name, run.info.status, run.data.tags["state"])
            for run in mlflow_runs(store_uri())[2] if "state" in run.data.tags]


def test_sweep_records_trials_resumes_and_writes_a_config_fit_accepts(small_data):
    sales, products = small_data
    assert main(tune_args(sales, products, 2)) == 0
    studies, states = trial_states()
    assert studies == ["forecast-fusion"]
    assert len(states) == 2 and set(states) <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    runs = mlflow_trials()
    assert sorted(name for name, _, _ in runs) == ["0", "1"]  # MLflowCallback names a run by its trial number
    assert all(status == "FINISHED" for _, status, _ in runs)
    parents = {run.data.tags["mlflow.parentRunId"] for run in mlflow_runs(store_uri())[2]}
    artifacts = {p.name for p in Path("mlruns/artifacts").rglob("*.png")}
    assert len(parents) == 1  # every trial nested under the one sweep run
    assert "optimization_history.png" in artifacts

    # Rerunning with a larger target resumes the same study.
    assert main(tune_args(sales, products, 3)) == 0
    studies, states = trial_states()
    assert studies == ["forecast-fusion"] and len(states) == 3

    # The winner's YAML reruns with fit --config.
    best = RunConfig.from_yaml("best_config.yaml")
    assert best.neural.hidden_size in (16, 32)
    assert main(["fit", "--config", "best_config.yaml", "--export", "rerun.csv", "--run-name", "rerun"]) == 0
    params = runs_by_name(mlflow_runs(store_uri())[1])["rerun"].data.params
    assert params["neural.hidden_size"] == str(best.neural.hidden_size)
    assert params["train.learning_rate"] == str(best.train.learning_rate)


def test_two_workers_share_one_study(small_data):
    sales, products = small_data
    cmd = [sys.executable, "-m", "forecast", *tune_args(sales, products, 4)]
    procs = [subprocess.Popen(cmd + ["--best-config", f"best{k}.yaml", "--export", f"out{k}.csv"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    studies, states = trial_states()
    assert studies == ["forecast-fusion"]
    finished = [s for s in states if s in ("COMPLETE", "PRUNED")]
    assert 4 <= len(finished) <= 5  # the two workers stop at the shared target (one may overshoot by a trial)


def test_search_space_is_checked_before_any_trial(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("neural.hiden_size: {type: categorical, choices: [16]}\n")
    with pytest.raises(ConfigError, match="hiden_size"):
        load_search_space(bad)
    packaged = load_search_space(None)
    assert "train.learning_rate" in packaged and "neural.fusion" in packaged


# --- trial 0 is the defaults, and the written config never loses to it --------------------------
DEFAULTS_SPACE = "neural.hidden_size: {type: categorical, choices: [16, 64]}\n" \
                 "train.learning_rate: {type: float, low: 0.001, high: 0.01, log: true}\n"


def _tune_with(objective, small_data, monkeypatch, trials: int = 3):
    """tune() on the small data with ``objective(trial config) -> holdout WAPE`` instead of training
    fusion, and no refit: what is tested is which trials run and which config is written."""
    from forecast import pipeline, tuning

    calls = []

    def holdout(cfg, panel, callbacks, logger=None):
        calls.append(callbacks)
        return objective(cfg)

    monkeypatch.setattr(tuning, "holdout_wape", holdout)
    monkeypatch.setattr(pipeline, "fit_in_run", lambda *args, **kwargs: None)
    Path("defaults_space.yaml").write_text(DEFAULTS_SPACE)
    sales, products = small_data
    cfg = RunConfig().updated({"data.sales": sales, "data.products": products, "evaluation.horizon": 6,
                               "evaluation.folds": 1, "models": ["moving_average"], "tune.trials": trials,
                               "tune.study_name": "defaults-first", "tune.search_space": "defaults_space.yaml"})
    study, winner, _ = tuning.tune(cfg)
    return study, calls


def test_trial_zero_runs_the_defaults_unpruned_and_wins_when_nothing_beats_it(small_data, monkeypatch):
    import math

    defaults = RunConfig()
    distance = lambda cfg: abs(math.log(cfg.train.learning_rate / defaults.train.learning_rate)) \
        + (cfg.neural.hidden_size != defaults.neural.hidden_size)  # noqa: E731 - 0 only at the defaults
    study, calls = _tune_with(distance, small_data, monkeypatch)
    assert study.trials[0].params == {"neural.hidden_size": defaults.neural.hidden_size,
                                      "train.learning_rate": defaults.train.learning_rate}
    assert calls[0] == [] and all(len(c) == 1 for c in calls[1:])  # only the defaults' trial has no pruner
    written = RunConfig.from_yaml("best_config.yaml")
    assert (written.neural.hidden_size, written.train.learning_rate) == \
           (defaults.neural.hidden_size, defaults.train.learning_rate)


def test_the_written_config_never_loses_to_trial_zero(small_data, monkeypatch):
    objective = lambda cfg: cfg.train.learning_rate  # noqa: E731 - lower is better: any sampled trial may win
    study, _ = _tune_with(objective, small_data, monkeypatch, trials=4)
    written = RunConfig.from_yaml("best_config.yaml")
    assert objective(written) <= study.trials[0].value
    assert objective(written) == min(t.value for t in study.trials)
    resumed, _ = _tune_with(objective, small_data, monkeypatch, trials=5)  # the same study, one trial more
    assert len(resumed.trials) == 5 and sum(bool(t.user_attrs.get("defaults")) for t in resumed.trials) == 1


def test_a_tie_with_the_defaults_writes_the_defaults():
    import optuna
    from optuna.distributions import FloatDistribution

    from forecast.tuning import DEFAULTS_ATTR, chosen_trial

    lr = {"train.learning_rate": FloatDistribution(1e-3, 1e-2, log=True)}
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params={"train.learning_rate": 3e-3}, distributions=lr, value=0.5,
                                              user_attrs={DEFAULTS_ATTR: True}))
    study.add_trial(optuna.trial.create_trial(params={"train.learning_rate": 5e-3}, distributions=lr, value=0.5))
    assert chosen_trial(study).params == {"train.learning_rate": 3e-3}
    study.add_trial(optuna.trial.create_trial(params={"train.learning_rate": 7e-3}, distributions=lr, value=0.4))
    assert chosen_trial(study).params == {"train.learning_rate": 7e-3}
