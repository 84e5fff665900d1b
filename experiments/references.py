"""The simple references (launch_curve; croston, tsb, imapa) beside the package's baselines and kNN.

    python experiments/references.py --split reported      # the benchmark's reported origins
    python experiments/references.py --split validation --models croston,tsb,imapa,launch_curve

Baselines only (no neural model, seed-free): each model is backtested alone with
``forecast.evaluation.backtest.run_backtest`` on the benchmark's data, splits and origins
(``experiments/benchmark.py``: online_retail with its three reported origins, the table's
series end; visuelle's launch cut-off, ``series_end="last-sale"``, negative weeks as zero)
and scored per group with the package's metrics, pooled over origins and per origin.
The benchmark's own "mean launch curve" reference is scored beside ``launch_curve``:
the two must agree. Writes experiments/results/references_<split>[_<models>].json; prints tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import benchmark  # noqa: E402
from forecast.evaluation.backtest import run_backtest  # noqa: E402
from forecast.evaluation.metrics import score  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402
from forecast.models.registry import build  # noqa: E402

MODELS = {
    "online_retail": ["seasonal_naive", "moving_average", "ets", "theta", "croston", "tsb", "imapa",
                      "knn", "launch_curve"],
    "visuelle": ["knn", "launch_curve"],
}


def backtest_one(dataset: str, model: str, split: str) -> tuple[list[dict], float, pd.DataFrame]:
    """(score rows per group, pooled and per origin; seconds; the benchmark's mean launch curve frame)."""
    panel = benchmark.load(dataset, split)
    cuts = benchmark.cutoffs_of(dataset, panel, split)
    cfg = benchmark.config_for(dataset, seed=0)
    tic = time.perf_counter()
    result = run_backtest(panel, {model: lambda: build(model, cfg)}, cfg.evaluation, cutoffs=cuts)
    seconds = time.perf_counter() - tic
    rows = []
    names = dict.fromkeys(name for f in result.folds for name in f.forecasts)  # the model and its variants
    for name in names:
        for group in benchmark.groups_of(dataset):
            per_fold = [(f.cutoff, f.truth[group], f.forecasts[name][group])
                        for f in result.folds if group in f.forecasts.get(name, {})]
            if not per_fold:
                continue
            pooled = score(np.concatenate([t for _, t, _ in per_fold]), np.concatenate([v for _, _, v in per_fold]))
            rows.append({"dataset": dataset, "model": name, "group": group, "origin": "pooled", **pooled})
            for cutoff, truth, values in per_fold:
                rows.append({"dataset": dataset, "model": name, "group": group,
                             "origin": str(panel.dates[cutoff].date()), **score(truth, values)})
    return rows, seconds, launch_reference(panel, cuts, result, model)


def launch_reference(panel, cuts, result, model: str) -> float | None:
    """Largest |launch_curve - the benchmark's mean launch curve| over every new item's cells (None: not run)."""
    if model != "launch_curve":
        return None
    frame = benchmark.mean_launch_curve(panel, cuts)
    ours = np.concatenate([f.forecasts[model][NEW].ravel() for f in result.folds if NEW in f.forecasts[model]])
    return float(np.max(np.abs(ours - frame["units"].to_numpy())))


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which the package does not install)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    return "\n".join(["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
                     + ["| " + " | ".join(row) + " |" for row in cells])


def report(payload: dict) -> str:
    """WAPE and bias per dataset, group and model, pooled over origins; then WAPE per origin."""
    table = pd.DataFrame(payload["rows"])
    pooled = table[table["origin"] == "pooled"].sort_values(["dataset", "group", "wape"])
    per_origin = (table[table["origin"] != "pooled"]
                  .pivot_table(index=["dataset", "group", "model"], columns="origin", values="wape")
                  .reset_index())
    return "\n\n".join([markdown(pooled[["dataset", "group", "model", "wape", "bias", "mae", "n"]]),
                         markdown(per_origin),
                         f"launch_curve - benchmark mean launch curve, max |difference|: "
                         f"{payload['launch_curve_minus_benchmark_reference_max_abs']}",
                         "backtest seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in payload["seconds"].items())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=benchmark.SPLITS, default="reported")
    parser.add_argument("--datasets", default="online_retail,visuelle")
    parser.add_argument("--models", help="comma-separated subset of the models to run (default: all)")
    parser.add_argument("--report", type=Path, help="print the tables of a written JSON instead of running")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    wanted = set(args.models.split(",")) if args.models else None
    rows, seconds, checks = [], {}, {}
    for dataset in args.datasets.split(","):
        for model in [m for m in MODELS[dataset] if wanted is None or m in wanted]:
            model_rows, seconds[f"{dataset}/{model}"], check = backtest_one(dataset, model, args.split)
            rows += model_rows
            if check is not None:
                checks[dataset] = check
            print(f"[{dataset}] {model}: {seconds[f'{dataset}/{model}']:.1f} s", flush=True)
    payload = {"split": args.split, "rows": rows, "seconds": seconds,
               "launch_curve_minus_benchmark_reference_max_abs": checks}
    subset = "" if wanted is None else "_" + "_".join(sorted(wanted))
    out = ROOT / "experiments" / "results" / f"references_{args.split}{subset}.json"
    out.write_text(json.dumps(payload, indent=1))
    print(report(payload))


if __name__ == "__main__":
    main()
