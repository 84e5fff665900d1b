"""How much the words help, on data where they decide the level: fusion and text against sequence.

    python experiments/synthetic_words.py                          # seeds 0,1,2; small settings below
    python experiments/synthetic_words.py --seeds 0 --max-epochs 4

forecast.data.synthetic makes sales whose level is set by the description's colour and fabric, so a
model that reads the words should forecast a launch far better than one that sees only the sales
history (an empty context at launch). This backtests ``fusion``, ``text`` and ``sequence`` (and
``moving_average`` as the plain reference) on one generated panel with the package's own backtest
and metrics, for each seed, and records per model and group the pooled WAPE and bias, the mean over
seeds and each model's WAPE relative to ``sequence``.

It replaces the unit test that asserted "fusion's validation MSE < 0.75 x sequence's": a target on
accuracy is a measurement, kept here with its settings, not a pass/fail line in the test suite
(tests/test_model.py checks the behaviour: fusion's forecast depends on the words, sequence's does not).

Writes experiments/results/synthetic_words.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecast.core.config import EvalConfig, RunConfig  # noqa: E402
from forecast.data import synthetic  # noqa: E402
from forecast.data.contract import load_tables  # noqa: E402
from forecast.data.panel import Panel, build_panel  # noqa: E402
from forecast.evaluation.backtest import run_backtest  # noqa: E402
from forecast.models import registry  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
MODELS = ("fusion", "text", "sequence", "moving_average")
PANEL = {"n_items": 60, "n_periods": 80, "n_new": 8, "seed": 3, "launch_window": 0.95}
EVALUATION = {"horizon": 8, "folds": 3, "step": 8}
# Small enough for two CPU cores in a few minutes a seed; the architecture as such (no text dropout,
# age curve or retrieval), as the unit test it replaces trained it.
SETTINGS = {"train.max_epochs": 8, "train.patience": 8, "train.progress": False, "neural.hidden_size": 32,
            "neural.context_length": 12, "train.batch_size": 128, "train.learning_rate": 5e-3,
            "neural.text_dropout": 0.0, "neural.age_curve": False, "neural.knn_feature": 0,
            "baselines.n_jobs": 1}


def generated_panel(folder: Path) -> Panel:
    """The documented generator's panel: launches over the whole history, so every fold has some."""
    return build_panel(load_tables(*synthetic.write(folder, **PANEL)))


def backtest_seed(panel: Panel, seed: int, overrides: dict) -> pd.DataFrame:
    """Pooled WAPE and bias per model and group for one seed (the package's backtest and scorer)."""
    cfg = RunConfig(seed=seed).updated(SETTINGS | overrides)
    makers = {name: (lambda name=name: registry.build(name, cfg)) for name in MODELS}
    result = run_backtest(panel, makers, EvalConfig(**EVALUATION))
    summary = result.summary()
    summary = summary[summary["model"].isin(MODELS)]  # variants are not what is compared here
    return summary[["model", "group", "wape", "bias"]].assign(seed=seed)


def relative_to_sequence(mean: pd.DataFrame) -> pd.DataFrame:
    """Each model's mean WAPE over sequence's, per group (below 1: the model does better)."""
    sequence = mean[mean["model"] == "sequence"].set_index("group")["wape"]
    return mean.assign(vs_sequence=mean["wape"] / mean["group"].map(sequence))


def markdown(rows: pd.DataFrame, mean: pd.DataFrame, args: argparse.Namespace, seconds: float) -> str:
    lines = ["# How much the words help on synthetic data (experiments/synthetic_words.py)", "",
             f"Panel {PANEL}, backtest {EVALUATION}, seeds {args.seeds}, settings {SETTINGS | args.overrides}; "
             f"{seconds:.0f} s.", "",
             "| group | model | WAPE (mean over seeds) | bias | WAPE / sequence's | WAPE per seed |",
             "|---|---|---|---|---|---|"]
    for _, row in mean.sort_values(["group", "wape"]).iterrows():
        seeds = rows[(rows["model"] == row["model"]) & (rows["group"] == row["group"])]["wape"]
        lines.append(f"| {row['group']} | {row['model']} | {row['wape']:.3f} | {row['bias']:+.3f} | "
                     f"{row['vs_sequence']:.2f} | {', '.join(f'{w:.3f}' for w in seeds)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-epochs", type=int, default=SETTINGS["train.max_epochs"])
    parser.add_argument("--out", type=Path, default=RESULTS / "synthetic_words")
    args = parser.parse_args()
    args.overrides = {"train.max_epochs": args.max_epochs}
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        panel = generated_panel(Path(tmp))
        rows = pd.concat([backtest_seed(panel, int(s), args.overrides) for s in args.seeds.split(",")],
                         ignore_index=True)
    mean = relative_to_sequence(rows.groupby(["model", "group"], as_index=False)[["wape", "bias"]].mean())
    seconds = time.perf_counter() - tic
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({
        "panel": PANEL, "evaluation": EVALUATION, "settings": SETTINGS | args.overrides, "seeds": args.seeds,
        "seconds": round(seconds, 1), "per_seed": rows.to_dict("records"), "mean": mean.to_dict("records")},
        indent=2))
    text = markdown(rows, mean, args, seconds)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
