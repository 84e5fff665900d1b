"""A recorded Optuna sweep of the fusion model on the real online_retail data.

    python experiments/tune_benchmark.py --trials 8

Runs `forecast.tuning.tune` (the same code as `python -m forecast tune`) with the
packaged search space (forecast/search_space.yaml), storing the study and the
MLflow runs under experiments/.cache (rerunning resumes the study). The sweep's
objective is the holdout WAPE of the LAST backtest origin, so the comparison of
tuned vs untuned is reported on the two earlier origins, which tuning never saw,
and separately on the tuned-on origin. Writes experiments/results/tuning.{md,json}
and the optimisation-history plot.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecast.evaluation.backtest import run_backtest  # noqa: E402
from forecast.core.config import RunConfig  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402
from forecast.evaluation.metrics import score  # noqa: E402
from forecast.models.registry import NEURAL, build  # noqa: E402
from forecast.pipeline import load_panel  # noqa: E402
from forecast.tuning import tune  # noqa: E402

CACHE = ROOT / "experiments" / ".cache" / "tuning"
RESULTS = ROOT / "experiments" / "results"
DATA = ROOT / ".." / "shared" / "data" / "online_retail"


def fold_wape(result, model: str, group: str, folds: list[int]) -> float:
    parts = [(result.folds[k].truth[group], result.folds[k].forecasts[model][group]) for k in folds
             if group in result.folds[k].forecasts.get(model, {})]
    if not parts:
        return float("nan")
    return score(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))["wape"]


def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(seed=args.seed).updated({
        "data.sales": str(DATA / "sales.csv"), "data.products": str(DATA / "products.csv"),
        "tracking.uri": f"sqlite:///{CACHE / 'mlflow.db'}", "tracking.experiment": "tuning-benchmark",
        "output.export": str(CACHE / "forecast.csv"), "output.checkpoint_dir": str(CACHE / "checkpoints"),
        "train.progress": False, "tune.trials": args.trials, "tune.study_name": "online-retail-fusion",
        "tune.storage": f"sqlite:///{CACHE / 'optuna.db'}", "tune.best_config": str(CACHE / "best_config.yaml"),
    })  # the packaged search space
    tic = time.perf_counter()
    study, winner, fitted = tune(cfg)
    sweep_seconds = time.perf_counter() - tic
    result = fitted.backtest
    # The untuned default on the same origins.
    panel = load_panel(cfg)
    default = run_backtest(panel, {"fusion": lambda: build("fusion", cfg)}, cfg.evaluation)
    unseen, tuned_on = list(range(len(result.folds) - 1)), [len(result.folds) - 1]
    rows = []
    for name, source, model in [("fusion (tuned)", result, "fusion"), ("fusion (default)", default, "fusion")] + [
            (m, result, m) for m in cfg.models if m not in (*NEURAL, "knn")] + [("knn", result, "knn")]:
        rows.append({"model": name,
                     "history_wape_unseen_origins": fold_wape(source, model, HISTORY, unseen),
                     "history_wape_tuned_origin": fold_wape(source, model, HISTORY, tuned_on),
                     "new_wape_all_origins": fold_wape(source, model, NEW, list(range(len(source.folds))))})
    table = pd.DataFrame(rows)
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, **t.params} for t in study.trials]
    RESULTS.mkdir(exist_ok=True)
    shutil.copy(CACHE / "best_config.yaml", RESULTS / "tuning_best_config.yaml")
    payload = {"command": f"python experiments/tune_benchmark.py --trials {args.trials}",
               "sweep_seconds": round(sweep_seconds), "best_trial": study.best_trial.number,
               "best_value": study.best_value, "best_params": study.best_params, "trials": trials,
               "comparison": table.to_dict("records"),
               "cutoffs": [str(d.date()) for d in result.cutoffs_dates]}
    (RESULTS / "tuning.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    lines = ["# Fusion hyperparameter sweep on online_retail", "",
             f"Command: `{payload['command']}` ({len(trials)} trials in the study, sweep + refit "
             f"{sweep_seconds / 60:.0f} min on 2 cores). Objective: history WAPE at the last origin "
             f"({payload['cutoffs'][-1]}); the earlier origins {payload['cutoffs'][:-1]} were never seen by the "
             "sweep, so they are the honest comparison.", "",
             "| model | history WAPE, unseen origins | history WAPE, tuned-on origin | new-product WAPE |",
             "|---|---|---|---|"]
    lines += [f"| {r.model} | {r.history_wape_unseen_origins:.3f} | {r.history_wape_tuned_origin:.3f} | "
              f"{r.new_wape_all_origins:.3f} |" for r in table.itertuples()]
    lines += ["", f"Best trial #{study.best_trial.number}: holdout WAPE {study.best_value:.4f}", "",
              "| param | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in study.best_params.items()]
    lines += ["", "## Trials", "", "| # | state | value |", "|---|---|---|"]
    for t in trials:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        lines.append(f"| {t['number']} | {t['state']} | {value} |")
    (RESULTS / "tuning.md").write_text("\n".join(lines) + "\n")
    from optuna.visualization import matplotlib as ovm

    ax = ovm.plot_optimization_history(study)
    ax.figure.set_size_inches(7, 4)
    ax.figure.tight_layout()
    ax.figure.savefig(RESULTS / "tuning_history.png", dpi=90)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
