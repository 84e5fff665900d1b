"""The ``ensemble`` against the best single model, on `fit`'s own backtest (forecast.evaluation.combination).

    python experiments/combination_benchmark.py --dataset sample
    python experiments/combination_benchmark.py --dataset online_retail
    python experiments/combination_benchmark.py --dataset sample --neural fusion --max-epochs 2

Runs `fit`'s backtest (default origins: 3 folds, 4 periods apart, horizon 12) of the statistical
baselines and the description-kNN (and ``--neural`` models, at ``--max-epochs``) once (cached
under experiments/.cache), then, for several
shrinkages toward equal weights, adds the ensemble exactly as `fit` does and reports per group the
ensemble's leave-one-fold-out WAPE and bias beside the best single model's, and, for contrast, the
in-sample score of the same combination (weights fitted on all folds, scored on them), which is
what an ensemble scored on the folds that set its weights would claim. Appends its tables to
experiments/results/combination.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecast import pipeline  # noqa: E402
from forecast.evaluation import combination  # noqa: E402
from forecast.evaluation.backtest import run_backtest  # noqa: E402
from forecast.core.config import RunConfig  # noqa: E402
from forecast.evaluation.metrics import score  # noqa: E402
from forecast.models import registry  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
CACHE = ROOT / "experiments" / ".cache"
RESULTS = ROOT / "experiments" / "results" / "combination.json"
BASELINES = ["seasonal_naive", "moving_average", "ets", "theta", "knn"]
SHRINKAGES = (0.0, 0.25, 0.5, 0.75, 1.0)


def config(dataset: str, neural: list[str], max_epochs: int) -> RunConfig:
    overrides = {"models": BASELINES + neural, "train.progress": False,
                 "train.max_epochs": max_epochs}
    if dataset != "sample":
        overrides |= {"data.sales": str(DATA / dataset / "sales.csv"),
                      "data.products": str(DATA / dataset / "products.csv")}
    return RunConfig().updated(overrides)


def backtest_of(dataset: str, neural: list[str], max_epochs: int):
    """The models' backtest as `fit` runs it (cached: it is the slow part)."""
    path = CACHE / f"combination_{dataset}{''.join(f'_{m}{max_epochs}' for m in neural)}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    cfg = config(dataset, neural, max_epochs)
    panel = pipeline.load_panel(cfg)
    cached = backtest_of(dataset, [], max_epochs) if neural else None  # the baselines' folds, reused
    tic = time.perf_counter()
    fitted = neural if neural else cfg.models
    result = run_backtest(panel, {m: (lambda m=m: registry.build(m, cfg)) for m in fitted}, cfg.evaluation)
    print(f"{dataset}: backtest of {', '.join(fitted)} in {time.perf_counter() - tic:.0f} s", flush=True)
    if cached is not None:
        for mine, theirs in zip(result.folds, cached.folds):
            mine.forecasts = theirs.forecasts | mine.forecasts
        result = replace(result, table=pd.concat([cached.table, result.table], ignore_index=True))
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))
    return result


def in_sample(backtest, ensemble: combination.Ensemble, group: str) -> dict[str, float]:
    """The all-fold weights scored on the very folds that set them (what must NOT be reported)."""
    gw = ensemble.groups[group]
    folds = [f for f in backtest.folds if f.truth[group].size]
    truth = np.concatenate([f.truth[group] for f in folds])
    stack = np.concatenate([np.stack([f.forecasts[m][group] for m in gw.members], axis=-1) for f in folds])
    return score(truth, stack @ gw.weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sample", choices=["sample", "online_retail"])
    parser.add_argument("--neural", default="", help="neural models to fit too, e.g. fusion (default: none)")
    parser.add_argument("--max-epochs", type=int, default=RunConfig().train.max_epochs)
    args = parser.parse_args()
    neural = [m for m in args.neural.split(",") if m]
    label = args.dataset + "".join(f" + {m} ({args.max_epochs} epochs)" for m in neural)
    base = backtest_of(args.dataset, neural, args.max_epochs)
    rows = []
    for shrinkage in SHRINKAGES:
        result, ensemble = combination.add_to_backtest(copy.deepcopy(base), shrinkage)
        summary = result.summary().set_index(["model", "group"])
        for group in (HISTORY, NEW):
            singles = summary.loc[[(m, g) for m, g in summary.index if g == group and m != combination.NAME]]
            if singles.empty:
                continue
            best = singles["wape"].idxmin()[0]
            row = {"dataset": label, "shrinkage": shrinkage, "group": group, "best_single": best,
                   "best_wape": float(singles.loc[(best, group), "wape"]),
                   "best_bias": float(singles.loc[(best, group), "bias"])}
            if (combination.NAME, group) in summary.index:
                scored = summary.loc[(combination.NAME, group)]
                row |= {"ensemble_wape": float(scored["wape"]), "ensemble_bias": float(scored["bias"]),
                        "in_sample_wape": in_sample(result, ensemble, group)["wape"],
                        "coverage": float(scored["coverage"]),
                        "weights": dict(zip(ensemble.groups[group].members,
                                            np.round(ensemble.groups[group].weights, 3).tolist()))}
            else:
                row["ensemble"] = "not scored: " + ", ".join(ensemble.groups.get(group, combination.GroupWeights(
                    [], np.zeros(0))).members or ["no member"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    kept = [r for r in previous if r["dataset"] != label]
    RESULTS.write_text(json.dumps(kept + rows, indent=1))


if __name__ == "__main__":
    main()
