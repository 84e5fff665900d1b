"""Would a level correction from fit's own backtest remove the chosen forecast's bias? (issue #22, bias target)

    python experiments/level_correction.py --dataset online_retail --split reported
    python experiments/level_correction.py --dataset visuelle --split validation

The chosen forecast under-forecasts Online Retail's launches by about 74 %, and fit's backtest shows its
chosen model's bias per group (each cached fit's meta, experiments/.cache/chosen). The simplest remedy a
planner would try is to divide the export by (1 + backtest bias) per group. This script scores that on
the cached chosen-forecast arm, with no refit: per group, WAPE and bias pooled over seeds and origins,
plain and corrected, and each fit's backtest bias beside the bias its export then had on the later weeks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.chosen_benchmark import CHOSEN_CACHE, cached_arm  # noqa: E402
from experiments.common import align, cutoff_dates, cutoffs_of, groups_of, load, truth_table  # noqa: E402


def backtest_bias(meta: dict, group: str) -> float:
    """The fit's pooled backtest bias of the model it chose for ``group`` (0 when it has none)."""
    model = meta["chosen"].get(group)
    rows = [r for r in meta["backtest"] if r["model"] == model and r["group"] == group]
    return float(rows[0]["bias"]) if rows and np.isfinite(rows[0]["bias"]) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=["online_retail", "visuelle"])
    parser.add_argument("--split", required=True, choices=["reported", "validation"])
    parser.add_argument("--cache", type=Path, default=CHOSEN_CACHE, help="the arm's cache folder")
    args = parser.parse_args()
    panel = load(args.dataset, args.split)
    cuts = cutoffs_of(args.dataset, panel, args.split)
    truth = truth_table(panel, cuts, groups_of(args.dataset))
    arm, metas, seeds = cached_arm(args.dataset, args.split, cutoff_dates(panel, cuts), args.cache)
    if not seeds:
        raise SystemExit(f"{args.cache}: no {args.dataset} {args.split} seed done at every origin: run "
                         f"chosen_benchmark.py run --dataset {args.dataset} --split {args.split} --seed S first")
    metas = {(m["seed"], m["cutoff"]): m for m in metas}
    for group in groups_of(args.dataset):
        sums = {"plain": np.zeros(3), "corrected": np.zeros(3)}  # absolute error, truth, signed error
        for seed in seeds:
            for (cutoff, g), (ids, start, y, _) in truth.items():
                if g != group:
                    continue
                rows = arm[(arm["cutoff"] == cutoff) & (arm["group"] == group) & (arm["seed"] == seed)]
                forecast, _ = align(panel, ids, start, rows)
                b = backtest_bias(metas[seed, cutoff], group)
                known = np.isfinite(y)
                later = (forecast[known] - y[known]).sum() / y[known].sum()
                print(f"{args.dataset} {group} seed {seed} {cutoff}: backtest bias {b:+.3f}, "
                      f"bias on the later weeks {later:+.3f}")
                for name, f in (("plain", forecast), ("corrected", forecast / (1 + b))):
                    sums[name] += [np.abs(f[known] - y[known]).sum(), y[known].sum(), (f[known] - y[known]).sum()]
        for name, (abs_error, total, error) in sums.items():
            print(f"{args.dataset} {args.split} {group} {name}: WAPE {abs_error / total:.4f}, "
                  f"bias {error / total:+.3f} ({len(seeds)} seeds)")


if __name__ == "__main__":
    main()
