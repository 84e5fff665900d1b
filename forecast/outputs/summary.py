"""The lines a ``fit`` ends on: what was chosen and how good it was, and where everything went.

A planner reading the console after a long fit wants the answer, not the last log line of
whatever ran last: the chosen model per item group with its backtest WAPE and bias, the
MLflow run, the saved model's folder, the export and the command that shows it all.
"""

from __future__ import annotations

import math
import os
import shlex
from typing import Any

from forecast.core.config import RunConfig

CHOSEN_BY = "wape"  # the metric that chooses the model per group (BacktestResult.best_models)
WHY = ("chosen by backtest WAPE, units missed over units sold: it weighs products by volume as stock does; "
       "MASE and sMAPE weigh tiny series alike")


def fit_summary(result: Any, cfg: RunConfig) -> list[str]:
    """The closing lines of a fit, in reading order (``result``: the verb's ``pipeline.FitResult``; not
    imported here, since the pipeline imports this module)."""
    lines = [f"fit done: MLflow run {result.run_id}" if result.run_id else "fit done"]
    scores = result.backtest.summary().set_index(["model", "group"])
    for group, model in result.chosen.items():
        if (model, group) in scores.index:
            row = scores.loc[(model, group)]
            lines.append(f"  {group + ':':<8} {model}  backtest WAPE {_number(row['wape'])}, "
                         f"bias {_number(row['bias'], signed=True)}")
        else:
            lines.append(f"  {group + ':':<8} {model}  (no backtest: no such products in any fold)")
    for base, folder in result.model_dirs.items():
        lines.append(f"  saved model ({base}): {folder}")
    if result.export_path:
        lines.append(f"  forecast: {result.export_path}")
    lines.append(f"  see it:   {ui_command(cfg)}")
    return lines


def _number(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def ui_command(cfg: RunConfig) -> str:
    """The ``ui`` command that opens this fit's runs: the store and experiment named when not the defaults."""
    command = ["python", "-m", "forecast", "ui"]
    if cfg.tracking.uri and cfg.tracking.uri != os.environ.get("MLFLOW_TRACKING_URI"):
        command += ["--tracking-uri", cfg.tracking.uri]
    if cfg.tracking.experiment != "forecast":
        command += ["--experiment", cfg.tracking.experiment]
    return " ".join(shlex.quote(part) for part in command)
