"""Forecast ranges, old against new: per-volume-band coverage, width, MSIS and WQL on real data.

    python experiments/intervals_benchmark.py                       # moving_average + knn, both data sets
    python experiments/intervals_benchmark.py --models moving_average,knn,fusion --max-epochs 1

For every model and item group it backtests the model on the benchmark's reported origins, then
scores each range method of forecast.evaluation.intervals leave-one-fold-out (each fold's ranges calibrated on
the other folds' errors, as the backtest table does), at 80 % and 90 %: coverage pooled and per
volume band (quintiles of the item's forecast level, and the top 5 %), mean width, MSIS (items with
history only: it needs the MASE scale) and WQL over the range's two quantiles. ``absolute`` is the
method before this change (one half-width per step for every item); ``auto`` is what ``fit`` uses now.

- online_retail: origins 20, 16 and 12 weeks before the end, horizon 12 (benchmark.py's reported
  split); history items and new ones (first sale after the origin, their first 12 weeks).
- visuelle: new products only, series ending at their last sale; origins at the 55 %, 70 % and 85 %
  launch quantiles, each fold holding the products launched before the next origin (the last: the
  latest 15 %, benchmark.py's reported products), so no product is in two folds.

Writes experiments/results/intervals.md (and intervals.json).
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

from forecast.evaluation.backtest import run_backtest  # noqa: E402
from forecast.core.config import EvalConfig, RunConfig  # noqa: E402
from forecast.data.contract import load_tables  # noqa: E402
from forecast.data.panel import Panel, build_panel  # noqa: E402
from forecast.evaluation.intervals import METHODS, choose, evaluate  # noqa: E402
from forecast.evaluation.metrics import BANDS, coverage, interval_width, msis  # noqa: E402
from forecast.models import registry  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
HORIZON = 12
LEVELS = (0.8, 0.9)
VISUELLE_ORIGINS = (0.55, 0.70, 0.85)  # launch quantiles of the visuelle folds' origins


def load(dataset: str) -> Panel:
    """The data set's panel as benchmark.py builds it (visuelle: 12 weeks a product, then unknown)."""
    from forecast.core.config import DataConfig

    folder = DATA / dataset
    tables = load_tables(str(folder / "sales.csv"), str(folder / "products.csv"), DataConfig(negative_units="zero"))
    return build_panel(tables, series_end="last-sale" if dataset == "visuelle" else "table")


def cutoffs(dataset: str, panel: Panel) -> list[int]:
    if dataset == "online_retail":
        return [panel.n_periods - weeks for weeks in (20, 16, 12)]
    launches = np.sort(panel.first_sale[panel.first_sale < panel.n_periods])
    return [int(launches[int(q * (len(launches) - 1))]) for q in VISUELLE_ORIGINS]


def fold_arrays(result, model: str, group: str, panel: Panel, disjoint: bool):
    """(truth, forecast, scale) per fold where ``model`` forecast ``group``; ``disjoint``: a fold's new
    items only those launched before the next origin."""
    out = []
    for k, fold in enumerate(result.folds):
        if group not in fold.forecasts.get(model, {}) or not fold.truth[group].size:
            continue
        keep = np.ones(len(fold.rows[group]), dtype=bool)
        if disjoint and k + 1 < len(result.folds):
            keep = panel.first_sale[fold.rows[group]] < result.folds[k + 1].cutoff
        out.append((fold.truth[group][keep], fold.forecasts[model][group][keep], fold.scale[group][keep]))
    return out


def score_methods(arrays, level: float) -> list[dict]:
    """One row per method (and ``auto``, the one chosen): pooled and per-band held-out scores."""
    truth, forecasts, scales = (list(x) for x in zip(*arrays))
    tried = evaluate(truth, forecasts, (level,))
    auto = choose({m: (r["gap"], r["wql"]) for m, r in tried.items()})
    actual, scale = np.concatenate(truth), np.concatenate(scales)
    rows = []
    for method in (*METHODS, "auto"):
        found = tried[auto if method == "auto" else method]
        lower, upper = found["ranges"][level]
        bands = {b["band"]: b["coverage"] for b in found["bands"]}
        widths = {b["band"]: b["width"] for b in found["bands"]}
        rows.append({"method": f"auto ({auto})" if method == "auto" else method, "level": level,
                     "coverage": coverage(actual, lower, upper), "width": interval_width(actual, lower, upper),
                     "msis": msis(actual, lower, upper, level, scale), "wql": found["wql"],
                     "worst_gap": found["gap"], **{f"cov_{b}": bands[b] for b in BANDS},
                     **{f"width_{b}": widths[b] for b in BANDS},
                     **{f"zeros_{b}": z["zero_share"] for b in BANDS for z in found["bands"] if z["band"] == b},
                     "cells": int(np.isfinite(actual).sum())})
    return rows


def run(dataset: str, models: list[str], max_epochs: int) -> list[dict]:
    panel = load(dataset)
    cfg = RunConfig().updated({"baselines.n_jobs": 2, "train.progress": False, "train.max_epochs": max_epochs,
                               "evaluation.horizon": HORIZON})
    groups = (NEW,) if dataset == "visuelle" else (HISTORY, NEW)
    wanted = [m for m in models if set(registry.MODELS[m].groups) & set(groups)]
    tic = time.perf_counter()
    result = run_backtest(panel, {m: (lambda m=m: registry.build(m, cfg)) for m in wanted},
                          EvalConfig(horizon=HORIZON), cutoffs=cutoffs(dataset, panel))
    print(f"{dataset}: backtest of {', '.join(wanted)} in {time.perf_counter() - tic:.0f} s", flush=True)
    rows = []
    for model in wanted:
        for group in groups:
            arrays = fold_arrays(result, model, group, panel, disjoint=dataset == "visuelle")
            if len(arrays) < 2:
                continue
            for level in LEVELS:
                rows += [{"dataset": dataset, "group": group, "model": model} | r for r in score_methods(arrays, level)]
    return rows


def markdown(frame: pd.DataFrame, command: str) -> str:
    lines = ["# Forecast ranges by volume band: one width for all (`absolute`) against per-item methods", "",
             f"Command: `{command}`. Written by `experiments/intervals_benchmark.py` (see its docstring for the "
             "origins). Held out: each fold's ranges calibrated on the other folds. `cov_q1` .. `cov_q5`: "
             "coverage per quintile of forecast level (q5 the best sellers), `cov_top5`: the top 5 %; "
             "`worst_gap`: the largest gap between coverage and level over the bands (coverage above the level "
             "up to the band's share of zero-sale weeks, below, not counted); `auto` is the method `fit` chooses "
             "(every band within 5 points, then lowest WQL; else scaled+bands). MSIS needs the "
             "MASE scale, so it is empty for new products.", ""]
    cols = ["method", "coverage", *[f"cov_{b}" for b in BANDS], "worst_gap", "width", "msis", "wql"]
    for (dataset, group, model, level), part in frame.groupby(["dataset", "group", "model", "level"], sort=False):
        lines += [f"## {dataset}, {group} items, {model}, {level:.0%} ranges ({part['cells'].iloc[0]} cells)", "",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in part.itertuples(index=False):
            values = [getattr(row, c) for c in cols]
            lines.append("| " + " | ".join(v if isinstance(v, str) else f"{v:.3f}" for v in values) + " |")
        lines.append("")
    zeros = [f"zeros_{b}" for b in BANDS]
    lines += ["## Share of cells that sold 0, per volume band", "",
              "A range that holds 0 covers these whatever its level, so a band of mostly-zero weeks is "
              "covered more often than nominal by any method.", "",
              "| data, group, model | " + " | ".join(zeros) + " |", "|" + "---|" * (len(zeros) + 1)]
    for (dataset, group, model), part in frame.groupby(["dataset", "group", "model"], sort=False):
        lines.append(f"| {dataset}, {group}, {model} | " + " | ".join(f"{part[z].iloc[0]:.3f}" for z in zeros) + " |")
    lines.append("")
    widths = ["method", *[f"width_{b}" for b in BANDS]]
    lines += ["## Mean width of the range per volume band (units)", ""]
    for (dataset, group, model, level), part in frame.groupby(["dataset", "group", "model", "level"], sort=False):
        lines += [f"{dataset}, {group}, {model}, {level:.0%}:", "", "| " + " | ".join(widths) + " |",
                  "|" + "---|" * len(widths)]
        for row in part.itertuples(index=False):
            values = [getattr(row, c) for c in widths]
            lines.append("| " + " | ".join(v if isinstance(v, str) else f"{v:.2f}" for v in values) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="online_retail,visuelle")
    parser.add_argument("--models", default="moving_average,knn")
    parser.add_argument("--max-epochs", type=int, default=1, help="for neural models (fusion)")
    parser.add_argument("--output", default=str(RESULTS / "intervals"))
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        rows += run(dataset, args.models.split(","), args.max_epochs)
    frame = pd.DataFrame(rows)
    command = "python experiments/intervals_benchmark.py " + " ".join(sys.argv[1:])
    Path(args.output).with_suffix(".md").write_text(markdown(frame, command.strip()))
    Path(args.output).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
    print(frame[["dataset", "group", "model", "level", "method", "coverage", "worst_gap", "msis", "wql"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
