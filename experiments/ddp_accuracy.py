"""DDP against one process: does a 2-process DDP fit (CPU, gloo) forecast as well as a single-process one?

    python experiments/ddp_accuracy.py                      # seeds 0-4: fusion (+ seasonal_naive) on the sample
    python experiments/ddp_accuracy.py --seeds 0,1 --arms single,ddp --max-epochs 4

Every arm runs ``python -m forecast fit`` on the embedded sample with the same options and
seed: ``single`` as it is, ``ddp`` with ``--accelerator cpu --devices 2 --strategy ddp``, and
``ddp-half-batch`` the same with ``train.batch_size`` halved (a ``--config`` file). Each run has
its own temp folder (checkpoint dir, export, SQLite MLflow store), from which the backtest
metrics of every model's child run are read (``history/wape``, ``new/wape``, ...).
``seasonal_naive`` is there as a control: it does not train, so every arm must agree on it to
the digit.

The yardstick is seed noise: the spread (max - min over seeds) of the single-process arm's
metric. DDP shards each epoch's windows over the ranks (``EpochShuffle``) and averages their
gradients; ``train.batch_size`` is the global batch (each rank takes batch_size // W), so ``ddp``
takes the same optimiser steps over the same windows as one process. Before that fix each rank
took the full batch (half the steps at twice the batch) and ``ddp`` was outside seed noise;
``ddp-half-batch`` was the workaround then (it now halves the global batch).
Writes experiments/results/ddp_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "experiments" / "results"
DDP = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
SHOWN = ("history/wape", "new/wape", "history/mase", "new/mase", "history/bias", "new/bias")
TRAINED = re.compile(r"INFO (\w+): trained (\d+) epoch\(s\) on (\d+) windows")


def arm_options(arm: str, folder: Path) -> list[str]:
    """The options an arm adds to fit's (``ddp-half-batch`` writes its config file into ``folder``)."""
    if arm == "single":
        return []
    if arm == "ddp":
        return DDP
    if arm == "ddp-half-batch":
        config = folder / "half_batch.yaml"
        config.write_text(f"train:\n  batch_size: {_default_batch() // 2}\n")
        return [*DDP, "--config", str(config)]
    raise SystemExit(f"unknown arm {arm!r}: single, ddp, ddp-half-batch")


def fit(arm: str, seed: int, options: list[str], folder: Path) -> dict:
    """One fit of the arm: its models' backtest metrics, wall seconds, trainings logged (all ranks)."""
    folder.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "forecast", "fit", *options, "--seed", str(seed), "--no-progress",
           "--checkpoint-dir", str(folder / "checkpoints"), "--export", str(folder / "forecast.csv"),
           "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", *arm_options(arm, folder)]
    tic = time.time()
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.time() - tic
    (folder / "fit.log").write_text(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{arm} seed {seed} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with sqlite3.connect(folder / "mlflow.db") as con:
        rows = con.execute("select t.value, m.key, m.value from latest_metrics m join tags t on "
                           "t.run_uuid = m.run_uuid and t.key = 'mlflow.runName' where m.step = 0").fetchall()
    metrics: dict[str, dict[str, float]] = {}
    for model, key, value in rows:
        metrics.setdefault(model, {})[key] = value
    trainings = [(m.group(1), int(m.group(2))) for m in map(TRAINED.search, done.stderr.splitlines()) if m]
    return {"arm": arm, "seed": seed, "wall_seconds": round(wall, 1), "metrics": metrics,
            "trainings_logged": len(trainings), "epochs": [e for _, e in trainings]}


def compare(runs: list[dict], models: list[str], arms: list[str]) -> list[dict]:
    """Per model (and its prediction variants, e.g. ``fusion:average_text_new``), metric and arm: the
    values per seed, the arm's mean less the single arm's, and the single arm's seed spread."""
    names = sorted({m for r in runs for m in r["metrics"] if m.split(":")[0] in models},
                   key=lambda m: (models.index(m.split(":")[0]), m))
    out = []
    for model in names:
        for key in SHOWN:
            values = {arm: [r["metrics"].get(model, {}).get(key) for r in runs if r["arm"] == arm] for arm in arms}
            if any(v is None for vs in values.values() for v in vs):
                continue
            single = values["single"]
            spread, mean = max(single) - min(single), sum(single) / len(single)
            for arm in arms:
                diff = sum(values[arm]) / len(values[arm]) - mean
                out.append({"model": model, "metric": key, "arm": arm, "values": values[arm],
                            "minus_single": diff, "single_seed_spread": spread, "within_noise": abs(diff) <= spread})
    return out


def write(runs: list[dict], rows: list[dict], command: str, fit_options: list[str], load: tuple) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"command": command, "fit_options": fit_options, "ddp_options": DDP,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "load_average_start_end": load}
    (RESULTS / "ddp_accuracy.json").write_text(json.dumps({**meta, "runs": runs, "comparison": rows}, indent=2) + "\n")
    seeds = sorted({r["seed"] for r in runs})
    base = " ".join(["python -m forecast fit", *fit_options, "--seed S"])
    half = _default_batch() // 2
    lines = ["# DDP (2 CPU processes, gloo) against a single-process fit", "",
             f"Command: `{command}`; machine {meta['machine']}, load average {load[0]} at the start and "
             f"{load[1]} at the end (timings are noisy). Each fit in its own temp folder (`--checkpoint-dir`, "
             "`--export`, `--tracking-uri sqlite:///...`), on the embedded sample:", "",
             f"- single: `{base}`", f"- ddp: `{base} {' '.join(DDP)}`",
             f"- ddp-half-batch: `{base} {' '.join(DDP)} --config half_batch.yaml` with `train: {{batch_size: "
             f"{half}}}` (per rank; {2 * half} windows per optimiser step over both ranks, as one process "
             f"at the default {2 * half})", "",
             f"Seeds {', '.join(map(str, seeds))}. Backtest metrics pooled over the folds, read from each "
             "model's MLflow child run. The yardstick is the single-process arm's seed-to-seed spread "
             "(max - min over seeds).", "",
             "| model | metric | arm | per seed | mean | mean - single's | single's seed spread | within noise |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        within = "" if r["arm"] == "single" else "yes" if r["within_noise"] else "**no**"
        lines.append(f"| {r['model']} | {r['metric']} | {r['arm']} | {', '.join(f'{v:.4f}' for v in r['values'])} | "
                     f"{sum(r['values']) / len(r['values']):.4f} | {r['minus_single']:+.4f} | "
                     f"{r['single_seed_spread']:.4f} | {within} |")
    lines += ["", "| arm | seed | wall s | trainings logged (all ranks) | epochs per training |",
              "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['arm']} | {r['seed']} | {r['wall_seconds']} | {r['trainings_logged']} | "
                     f"{', '.join(map(str, r['epochs']))} |")
    (RESULTS / "ddp_accuracy.md").write_text("\n".join(lines) + "\n")


def _default_batch() -> int:
    from forecast.core.config import RunConfig

    return RunConfig().train.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--arms", default="single,ddp,ddp-half-batch", help="single first")
    parser.add_argument("--models", default="seasonal_naive,fusion", help="as fit's --models (every arm)")
    parser.add_argument("--folds", type=int, default=3, help="as fit's --folds (every arm)")
    parser.add_argument("--max-epochs", type=int, default=None, help="as fit's --max-epochs (every arm)")
    args = parser.parse_args()
    models, arms = args.models.split(","), args.arms.split(",")
    if arms[0] != "single":
        raise SystemExit("--arms: the first arm is 'single' (the yardstick)")
    options = ["--models", args.models, "--model", models[-1], "--folds", str(args.folds)]
    if args.max_epochs is not None:
        options += ["--max-epochs", str(args.max_epochs)]
    load = [round(os.getloadavg()[0], 1)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            for arm in arms:
                print(f"[ddp-accuracy] {arm} seed {seed} ...", flush=True)
                runs.append(fit(arm, seed, options, Path(tmp) / f"{arm}-{seed}"))
                print(f"[ddp-accuracy] {json.dumps(runs[-1])}", flush=True)
    load.append(round(os.getloadavg()[0], 1))
    rows = compare(runs, models, arms)
    write(runs, rows, " ".join(["python experiments/ddp_accuracy.py", *sys.argv[1:]]), options, tuple(load))
    for r in rows:
        if r["arm"] != "single":
            print(f"{r['model']:>24} {r['metric']:<13} {r['arm']:<15} - single {r['minus_single']:+.4f} "
                  f"(single's seed spread {r['single_seed_spread']:.4f})")


if __name__ == "__main__":
    main()
