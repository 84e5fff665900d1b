"""Ablation harness: one configuration, one dataset, one split, several seeds -> one results row.

    python experiments/ablate.py --dataset online_retail --split val --name default
    python experiments/ablate.py --dataset online_retail --split val --name epochs8 \\
        --set train.max_epochs=8 --note "8 epochs of 48,000 windows"
    python experiments/ablate.py --render            # experiments/results/ablations.md from the JSON

Splits (settings are chosen on ``val`` only; ``report`` is run once at the end):
- online_retail: ``val`` = cut-offs 13 and 17 on the panel truncated to 29 periods
  (nothing at or after period 29 is seen, scored or used); ``report`` = 21, 25, 29.
  Horizon 12.
- visuelle: each product's sales file holds only its first 12 weeks, so cells after
  them are set to NaN (unknown, not zero). ``val`` = cut at the 70 % launch
  quantile, scoring products launching before the 85 % quantile (later products are
  dropped); ``report`` = cut at the 85 % quantile (experiments/benchmark.py).

Each run backtests the neural model(s) with :func:`forecast.backtest.run_backtest`
and, from the same fits, the post-hoc variants: ``<model>+variance`` and
``<model>+binned`` (``neural.bias_correction``, re-estimated on the fitted network),
the references ``moving_average`` (history) and ``mean_curve`` (new: the training
products' mean first-H-week curve, unscaled), and ``ensemble@w``: ``w`` x the
neural forecast + (1 - w) x moving_average on history items, and (when both are
fitted) ``fusion@w+sequence``: ``w`` x fusion + (1 - w) x sequence. Scores are
forecast.metrics' pooled WAPE and bias, per seed and per origin.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.benchmark import HORIZON, cutoffs_of, groups_of, load  # noqa: E402
from forecast.backtest import run_backtest  # noqa: E402
from forecast.config import RunConfig  # noqa: E402
from forecast.data.panel import Panel  # noqa: E402
from forecast.forecaster import HISTORY, NEW, Forecast, forecast_targets  # noqa: E402
from forecast.metrics import score  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
MARK = "<!-- tables below: written by experiments/ablate.py --render; text above is kept -->"
JSON, MD = RESULTS / "ablations.json", RESULTS / "ablations.md"
VAL_CUTOFFS = {"online_retail": [13, 17]}
CORRECTIONS = ("variance", "binned")
ENSEMBLE_WEIGHTS = (0.5, 0.6, 0.7, 0.8, 0.9)
MIX_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)


# --- data and splits ---------------------------------------------------------------------
def unknown_after_launch_weeks(panel: Panel, weeks: int = HORIZON) -> Panel:
    """visuelle: cells after each product's first ``weeks`` are unknown (NaN), not zero sales."""
    cols = np.arange(panel.n_periods)[None, :]
    after = cols >= (panel.start[:, None] + weeks)
    panel.units = np.where(after, np.nan, panel.units)
    if panel.price is not None:
        panel.price = np.where(after, np.nan, panel.price)
    panel.covariates = {k: np.where(after, np.nan, v) for k, v in panel.covariates.items()}
    return panel


def split(dataset: str, which: str) -> tuple[Panel, list[int]]:
    panel = load(dataset)
    if dataset == "visuelle":
        panel = unknown_after_launch_weeks(panel)
        if which == "report":
            return panel, cutoffs_of(dataset, panel)
        launch = np.sort(panel.start)
        cut, end = (int(launch[int(len(launch) * q)]) for q in (0.70, 0.85))
        return panel.subset(panel.start < end), [cut]
    if which == "report":
        return panel, cutoffs_of(dataset, panel)
    cuts = VAL_CUTOFFS[dataset]
    return panel.truncate(max(cuts) + HORIZON), cuts


# --- models ----------------------------------------------------------------------------------
class MeanCurve:
    """Reference for new products: the mean first-H-period curve of the training products, unscaled."""

    name, groups = "mean_curve", frozenset({NEW})

    def fit(self, panel: Panel, horizon: int) -> None:
        rows = np.flatnonzero(panel.has_history)
        self.curve = np.nanmean(panel.window(rows, panel.start[rows], horizon), axis=0)

    def predict(self, panel: Panel, horizon: int) -> Forecast:
        rows, start = forecast_targets(panel, self.groups)
        return Forecast(self.name, rows, start, np.repeat(self.curve[None, :horizon], len(rows), 0))


class SharedFit:
    """A neural model fitted once per training panel; ``correction`` re-estimated on that fit."""

    cache: dict = {}

    def __init__(self, name: str, cfg: RunConfig, correction: str = "none", notext: bool = False):
        from forecast.models.forecaster import NeuralForecaster

        self.base, self.correction, self.notext = NeuralForecaster(name, cfg), correction, notext
        self.name, self.groups = self.base.name, self.base.groups

    def fit(self, panel: Panel, horizon: int) -> None:
        key = (self.base.name, id(panel))
        if key not in SharedFit.cache:
            SharedFit.cache.clear()
            self.base.fit(panel, horizon)
            self.base.train_windows = _LAST[0]
            SharedFit.cache[key] = self.base
        self.model = SharedFit.cache[key]

    def predict(self, panel: Panel, horizon: int) -> Forecast:
        model = self.model
        saved_kind, saved = model.config.neural.bias_correction, model.correction
        if self.correction != "none":
            model.config.neural.bias_correction = self.correction
            model.correction = model._fit_correction(model.train_windows)
        model.network.without_text = self.notext
        try:
            return model.predict(panel, horizon)
        finally:
            model.config.neural.bias_correction, model.correction = saved_kind, saved
            model.network.without_text = False


def models_for(cfg: RunConfig, neural: list[str], history: bool) -> dict:
    from forecast.baselines.forecasters import StatisticalForecaster

    out = {"mean_curve": MeanCurve}
    if history:  # visuelle scores launches only (and its NaN-ended series have no moving average)
        out["moving_average"] = lambda: StatisticalForecaster("moving_average", cfg)
    for name in neural:
        out[name] = lambda name=name: SharedFit(name, cfg)
        for kind in CORRECTIONS:
            out[f"{name}+{kind}"] = lambda name=name, kind=kind: SharedFit(name, cfg, kind)
        if name == "fusion":
            out["fusion+notext"] = lambda: SharedFit("fusion", cfg, notext=True)
    return out


# --- scoring -----------------------------------------------------------------------------------
def scores(result, neural: list[str], groups: tuple[str, ...]) -> dict:
    """model -> group -> {wape, bias, per_cutoff: {cutoff: wape}} pooled over folds, plus ensembles."""
    forecasts = [dict(f.forecasts) for f in result.folds]
    for fold, fc in zip(result.folds, forecasts):
        for name in neural:  # half the correction: halfway between the plain and the corrected forecast
            for kind in CORRECTIONS:
                fc[f"{name}+half-{kind}"] = {g: (fc[name][g] + fc[f"{name}+{kind}"][g]) / 2 for g in fc[name]}
        if "fusion" in neural:  # predict-time mix of the description and the average one (neural.text_mix)
            for w in MIX_WEIGHTS:
                fc[f"fusion+mix{w}"] = {g: w * fc["fusion"][g] + (1 - w) * fc["fusion+notext"][g] for g in fc["fusion"]}
        if "fusion" in neural and "sequence" in neural:  # model averaging: text-reading and history-only
            for w in MIX_WEIGHTS:
                fc[f"fusion@{w}+sequence"] = {g: w * fc["fusion"][g] + (1 - w) * fc["sequence"][g] for g in fc["fusion"]}
        ma = fc.get("moving_average", {}).get(HISTORY)
        for name in [m for m in list(fc) if m in neural]:
            if ma is None or HISTORY not in fc[name]:
                continue
            for w in ENSEMBLE_WEIGHTS:
                fc[f"ensemble@{w}:{name}"] = {HISTORY: w * fc[name][HISTORY] + (1 - w) * ma}
    out: dict = {}
    for name in forecasts[0]:
        for group in groups:
            parts = [(f.cutoff, f.truth[group], fc[name][group]) for f, fc in zip(result.folds, forecasts)
                     if group in fc.get(name, {}) and f.truth[group].size]
            if not parts:
                continue
            pooled = score(np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
            out.setdefault(name, {})[group] = {
                "wape": round(pooled["wape"], 4), "bias": round(pooled["bias"], 4),
                "per_cutoff": {str(c): round(score(y, f)["wape"], 4) for c, y, f in parts}}
    return out


def run(dataset: str, which: str, seeds: list[int], overrides: dict, neural: list[str]) -> dict:
    from forecast.models import forecaster as neural_module

    _keep_datamodule(neural_module)
    panel, cuts = split(dataset, which)
    per_seed, seconds = {}, {}
    for seed in seeds:
        cfg = RunConfig(seed=seed).updated({"evaluation.horizon": HORIZON, "train.progress": False, **overrides})
        tic = time.perf_counter()
        result = run_backtest(panel, models_for(cfg, neural, dataset != "visuelle"), cfg.evaluation, cutoffs=cuts)
        seconds[seed] = round(time.perf_counter() - tic, 1)
        per_seed[str(seed)] = scores(result, neural, groups_of(dataset))
    return {"cutoffs": cuts, "seconds": seconds, "seeds": per_seed}


def _keep_datamodule(module) -> None:
    """Let SharedFit re-estimate corrections on a fit's training windows: remember its datamodule."""
    original = module.PanelDataModule

    class Kept(original):
        def setup(self, stage=None):
            super().setup(stage)
            _LAST[0] = self

    module.PanelDataModule = Kept


_LAST: list = [None]


# --- records ---------------------------------------------------------------------------------
def append(row: dict) -> None:
    rows = json.loads(JSON.read_text()) if JSON.exists() else []
    rows.append(row)
    JSON.write_text(json.dumps(rows, indent=1))


def render() -> None:
    """ablations.md: per dataset, split and item group, the trained variants, then the post-hoc ones."""
    rows = json.loads(JSON.read_text()) if JSON.exists() else []
    kept = MD.read_text().split(MARK)[0] if MD.exists() and MARK in MD.read_text() else "# Ablations\n\n"
    lines = [kept.rstrip("\n"), "", MARK, "", "Written by `python experiments/ablate.py --render` from `ablations.json`; "
             "see the docstring of `experiments/ablate.py` for the splits. WAPE = Σ|e|/Σy and bias = Σe/Σy "
             "pooled over all scored cells of all origins, per seed; `mean` is the mean of the seeds' WAPE.", ""]
    header = ["| run | model | what changed | WAPE s0 | WAPE s1 | mean | bias (mean) | per cut-off (mean of seeds) |",
              "|---|---|---|---|---|---|---|---|"]
    for dataset in sorted({r["dataset"] for r in rows}):
        for which in ("val", "report"):
            sel = [r for r in rows if r["dataset"] == dataset and r["split"] == which]
            if not sel:
                continue
            lines += [f"## {dataset}, {which} (cut-offs {sel[0]['result']['cutoffs']})", ""]
            for group in groups_of(dataset):
                lines += [f"### {group} items: trained variants", "", *header,
                          *_table(sel, group, lambda m: "+" not in m and "@" not in m), "",
                          f"### {group} items: post-hoc (bias correction, ensemble with moving_average)", "",
                          *header, *_table(sel, group, lambda m: "+" in m or "@" in m), ""]
    MD.write_text("\n".join(lines) + "\n")


def _table(sel: list[dict], group: str, keep) -> list[str]:
    out = []
    for r in sel:
        seeds = r["result"]["seeds"]
        first = next(iter(seeds.values()))
        for m in [m for m in first if group in first[m] and keep(m)]:
            if m in ("moving_average", "mean_curve") and r["name"] not in ("default", "v2-default", "chosen"):
                continue  # the references are the same in every run
            cells = [seeds[s][m][group] for s in seeds if m in seeds[s] and group in seeds[s][m]]
            w = [c["wape"] for c in cells]
            per = {k: np.mean([c["per_cutoff"][k] for c in cells]) for k in cells[0]["per_cutoff"]}
            out.append(f"| {r['name']} | {m} | {r['note']} | " + " | ".join(f"{x:.4f}" for x in w)
                       + f" | **{np.mean(w):.4f}** | {np.mean([c['bias'] for c in cells]):+.3f} | "
                       + ", ".join(f"{k}: {v:.3f}" for k, v in per.items()) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["online_retail", "visuelle"])
    ap.add_argument("--split", choices=["val", "report"], default="val")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    ap.add_argument("--models", nargs="+", default=["fusion"], help="neural models to fit")
    ap.add_argument("--name", default="default")
    ap.add_argument("--note", default="the package defaults")
    ap.add_argument("--render", action="store_true", help="only rewrite ablations.md")
    args = ap.parse_args()
    if not args.render:
        overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
        result = run(args.dataset, args.split, args.seeds, overrides, args.models)
        append({"name": args.name, "note": args.note, "dataset": args.dataset, "split": args.split,
                "overrides": overrides, "models": args.models, "result": result})
        print(json.dumps(result, indent=1)[:4000])
    render()


if __name__ == "__main__":
    main()
