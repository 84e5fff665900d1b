"""The benchmark: forecast's models, its baselines and the peer libraries, on real data, one scorer.

    python experiments/benchmark.py --split validation      # where settings are chosen (seeds 0-4)
    python experiments/benchmark.py --split reported        # what README reports (run once, at the end)
    python experiments/benchmark.py --skip-peers --skip-scaling --skip-profile   # just our models
    python experiments/benchmark.py --split validation --datasets visuelle --models fusion --skip-peers \
        --skip-scaling --skip-profile --set neural.attribute_curves=false --tag no_attributes   # an ablation

Protocol (issue #22). Every setting of the package (defaults, search spaces, ensemble weights) is
chosen on the *validation* split; the *reported* split is run once, at the end, with everything
fixed. Both hold out the future the same way; the origins are in experiments/common.py:
online_retail, reported 2011-04-25/05-23/06-20, validation 2011-01-31/02-28/03-28 (the first one's
12 weeks hold the spring rise); visuelle, reported the latest 15 % of launches, validation three
cut-offs at the 40/55/70 % launch quantiles without those launches. Items with history: the 12 weeks
after the cut-off; new items: their first 12 weeks from launch.

Every neural model and peer runs with each seed of ``--seeds`` (0-4 by default); the package's
deterministic references (protocol.REFERENCE_MODELS) with the first. Per group the tables give the
mean over seeds, each seed, the spread (max - min) and the seed-average forecast (the mean of the
seeds' forecasts) as a row of its own, pooled over origins and per origin. Then every candidate
(our models that are not references, their prediction variants and seed averages) is compared,
paired on the same products and origins, with the current default (``--default``; in an ablation,
its own model untagged) and with the best reference present (peers, our simple models, the mean
launch curve): the WAPE difference with a 90 % bootstrap interval over products and origins, each
arm's bias, and the verdict of the adoption rule (protocol.ADOPTION_RULE).

Every model, ours, a peer's or a reference, writes long forecasts (cutoff, model, group, item_id,
date, units[, fallback]); one function scores them all against the truth that forecast.evaluation.backtest
defines for its own folds, with forecast.evaluation.metrics. A peer's items that its library could not
forecast get the runner's fallback (last-8-week mean, or 0 for a new item); they count in the
score but not in ``coverage``. Our models run one per child process so that each one's peak RSS
is its own. Writes experiments/results/benchmark[_validation].{json,md} and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import protocol  # noqa: E402
from experiments.common import (  # noqa: E402
    CACHE, DATA, HORIZON, RESULTS, ROOT, cached, cutoff_dates, cutoffs_of, groups_of,
    item_errors, label, load, long_frame, mean_launch_curve, panel_tables, score_all, targets, truth_table, wape_bars)
from forecast.evaluation.backtest import run_backtest  # noqa: E402
from forecast.core.config import RunConfig  # noqa: E402
from forecast.data.panel import Panel  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402

PEERS = ROOT / "experiments" / "peers"
SPLITS = ("validation", "reported")
OURS = {
    "online_retail": ["fusion", "sequence", "text", "seasonal_naive", "moving_average", "ets", "theta", "knn"],
    "visuelle": ["fusion", "sequence", "text", "knn"],
}
# Models run by default when the registry has them (added by other work: references and combinations).
OPTIONAL = ["launch_curve", "croston", "tsb", "imapa", "ensemble"]
SEEDS = ",".join(map(str, range(protocol.MIN_SEEDS)))  # every neural configuration runs with each
LITERATURE = [{"dataset": "visuelle", "model": "GTM-Transformer (published)", "group": NEW, "wape": 0.55,
               "source": "literature: Skenderi et al. 2021, official split, text+image+Google Trends; not measured here"}]


def config_for(dataset: str, seed: int, overrides: dict | None = None) -> RunConfig:
    """The package defaults (what `fit` uses), with an ablation's ``--set`` overrides."""
    cfg = RunConfig(seed=seed).updated(overrides or {})
    cfg.evaluation.horizon = HORIZON
    cfg.train.progress = False
    return cfg


# --- our models, one child process each ----------------------------------------------
def run_child(dataset: str, model: str, out: Path, seed: int, split: str, overrides: dict) -> None:
    """Backtest one model and write its long forecasts + timing (called in a child process)."""
    from forecast.models.registry import build

    panel = load(dataset, split)
    if overrides.pop("shuffled_descriptions", False):
        panel = with_shuffled_descriptions(panel, seed)
    cuts = cutoffs_of(dataset, panel, split)
    cfg = config_for(dataset, seed, overrides)
    if cfg.data.signals:  # e.g. --set data.signals=../shared/data/visuelle/gtrends.csv
        from forecast.data.signals import attach_signals

        panel = attach_signals(panel, cfg.data.signals, cfg.data.date_format)
    tic = time.perf_counter()
    result = run_backtest(panel, {model: lambda: build(model, cfg)}, cfg.evaluation, cutoffs=cuts)
    seconds = time.perf_counter() - tic
    frames = []
    for fold in result.folds:
        for name, forecasts in fold.forecasts.items():  # the model and its prediction variants
            for group, values in forecasts.items():
                rows = fold.rows[group]
                start = np.full(len(rows), fold.cutoff) if group == HISTORY else panel.start[rows]
                frames.append(long_frame(panel, fold.cutoff, name, group, rows, start, values))
    pd.concat(frames).to_csv(out, index=False)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    Path(str(out) + ".json").write_text(json.dumps({"fit_predict_seconds": round(seconds, 1),
                                                    "peak_rss_mb": round(rss / 1024)}))


def with_shuffled_descriptions(panel: Panel, seed: int) -> Panel:
    """The ablation that removes the words but keeps an item identity: every product gets another
    product's description (a fixed permutation), so each still has its own consistent text, which
    no longer says what it is. ``--set shuffled_descriptions=true``."""
    order = np.random.default_rng(seed).permutation(panel.n_items)
    products = panel.products.assign(description=panel.products["description"].to_numpy()[order])
    return panel.take(np.arange(panel.n_items), products)


def models_for(dataset: str, requested: str | None) -> list[str]:
    """Our models to run on ``dataset``: ``--models`` as given, else the data set's list plus the optional
    models the registry has by now. A name the registry does not know (``none``: peers only) or whose model
    forecasts none of the data set's groups (an intermittent-demand method on visuelle) is skipped, said so."""
    from forecast.models.registry import MODELS

    names = requested.split(",") if requested else OURS[dataset] + [m for m in OPTIONAL if m in MODELS]
    keep = []
    for name in names:
        groups = getattr(MODELS.get(name), "groups", None)
        if name not in MODELS or (groups is not None and not set(groups) & set(groups_of(dataset))):
            print(f"[{dataset}] {name}: not a model for this data set, skipped", flush=True)
            continue
        keep.append(name)
    return keep


def run_ours(dataset: str, models: list[str], seed: int, split: str, cutoffs: list[str], reuse: bool = False,
             sets: list[str] = (), tag: str = "", cache_only: bool = False) -> tuple[pd.DataFrame, dict]:
    """Our models' forecasts, one child process each, kept in experiments/.cache; ``reuse`` takes a model's
    cached forecasts instead of running it (valid only for the same code: the cache is per data, split, seed,
    and is reused only for the same ``cutoffs`` dates); ``cache_only`` never runs one (an earlier run's arm).
    ``sets``: ``KEY=VALUE`` config overrides of an ablation named ``tag`` (its models are named ``model@tag``)."""
    frames, timings = [], {}
    CACHE.mkdir(parents=True, exist_ok=True)
    for model in models:
        out = CACHE / f"ours_{dataset}_{split}_{seed}_{model}{'@' + tag if tag else ''}.csv"
        if (reuse or cache_only) and Path(str(out) + ".json").exists() and (frame := cached(out, cutoffs)) is not None:
            print(f"[{dataset} seed {seed}] {model}: reusing {out}", flush=True)
            frames.append(frame)
            timings[model] = json.loads(Path(str(out) + ".json").read_text())
            continue
        if cache_only:
            print(f"[{dataset} seed {seed}] {model}: no cached forecasts at {out} for these cut-offs", flush=True)
            continue
        print(f"[{dataset} seed {seed}] {model} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", dataset, model, str(out), "--seed", str(seed),
                               "--split", split, *[f"--set={kv}" for kv in sets]], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"[{dataset}] {model} FAILED:\n{proc.stderr[-2000:]}", flush=True)
            timings[model] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            continue
        frames.append(pd.read_csv(out, dtype={"item_id": str}))
        timings[model] = json.loads(Path(str(out) + ".json").read_text())
        print(f"[{dataset} seed {seed}] {model}: {timings[model]}", flush=True)
    ours = pd.concat(frames) if frames else pd.DataFrame()
    if tag and not ours.empty:
        ours["model"] = ours["model"] + "@" + tag
        timings = {f"{model}@{tag}": t for model, t in timings.items()}
    return ours, timings


# --- peers ----------------------------------------------------------------------------
def peer_budget() -> dict[str, int]:
    """TFT's and DeepAR's training budget: the default fusion model's epochs, windows per epoch and hidden
    size, read from the package defaults so that a change of default reaches the peers too."""
    cfg = RunConfig()
    return {"epochs": cfg.train.max_epochs, "windows": cfg.train.windows_per_epoch,
            "hidden": cfg.neural.hidden_size}


def run_peers(dataset: str, panel: Panel, cuts: list[int], tmp: Path, seed: int, split: str,
              reuse: bool = False) -> tuple[pd.DataFrame, dict]:
    """The peer libraries' forecasts, from their own venv; kept in experiments/.cache (the peers do not
    depend on this package's code, so ``reuse`` skips re-running them for the same data, split and seed)."""
    budget = peer_budget()
    cache = CACHE / f"peers_{dataset}_{split}_{seed}_e{budget['epochs']}w{budget['windows']}h{budget['hidden']}"
    dates = cutoff_dates(panel, cuts)
    if reuse and (frame := cached(cache / "forecasts.csv", dates)) is not None:
        print(f"[{dataset} seed {seed}] peers: reusing {cache}", flush=True)
        return frame, json.loads((cache / "timings.json").read_text())
    python = PEERS / ".venv" / "bin" / "python"
    if not python.exists():
        print("peers venv missing: running experiments/peers/setup.sh", flush=True)
        subprocess.run(["bash", str(PEERS / "setup.sh")], check=True)
    from forecast.models.encoders.text import embed_texts

    sales, products = tmp / f"{dataset}_sales.csv", tmp / f"{dataset}_products.csv"
    panel_tables(panel, sales, products)
    emb = tmp / f"{dataset}_embeddings.npz"
    np.savez(emb, item_id=panel.item_ids.astype(str), embedding=embed_texts(panel.descriptions))
    out = cache
    models = "lgbm_new_onehot,lgbm_new_text,ridge_new_text" if dataset == "visuelle" else None
    cmd = [str(python), str(PEERS / "run_peers.py"), "--sales", str(sales), "--products", str(products),
           "--horizon", str(HORIZON), "--out", str(out), "--embeddings", str(emb), "--seed", str(seed),
           "--cutoffs", ",".join(dates)] + [f"--peer-{key}={value}" for key, value in budget.items()]
    if models:
        cmd += ["--models", models]
    print(f"[{dataset} seed {seed}] peers ...", flush=True)
    proc = subprocess.run(cmd, text=True)
    if proc.returncode != 0 or not (out / "forecasts.csv").exists():
        return pd.DataFrame(), {"error": f"run_peers exited {proc.returncode}"}
    frame = pd.read_csv(out / "forecasts.csv", dtype={"item_id": str})
    return frame, json.loads((out / "timings.json").read_text())


# --- scaling and profile ------------------------------------------------------------------
def run_scaling(sizes: list[int], tmp: Path, seed: int) -> list[dict]:
    """Wall time and peak RSS of a default `forecast fit` on growing product subsets."""
    products = pd.read_csv(DATA / "online_retail" / "products.csv", dtype=str)
    sales = pd.read_csv(DATA / "online_retail" / "sales.csv", dtype={"item_id": str})
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        chosen = products if n >= len(products) else products.iloc[np.sort(rng.choice(len(products), n, replace=False))]
        folder = tmp / f"scale_{n}"
        folder.mkdir()
        chosen.to_csv(folder / "products.csv", index=False)
        sales[sales["item_id"].isin(set(chosen["item_id"]))].to_csv(folder / "sales.csv", index=False)
        script = ("import resource,subprocess,sys,time,json;t=time.perf_counter();"
                  "r=subprocess.run(sys.argv[1:]).returncode;"
                  "print(json.dumps({'rc':r,'wall':time.perf_counter()-t,"
                  "'rss':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))")
        cmd = [sys.executable, "-c", script, sys.executable, "-m", "forecast", "fit", "--sales", "sales.csv",
               "--products", "products.csv", "--no-progress", "--tracking-uri", f"sqlite:///{folder}/mlflow.db"]
        print(f"[scaling] fit on {len(chosen)} products ...", flush=True)
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        stats = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append({"products": len(chosen), "wall_seconds": round(stats["wall"], 1),
                    "peak_rss_mb": round(stats["rss"]), "ok": stats["rc"] == 0})
        print(f"[scaling] {out[-1]}", flush=True)
    return out


def run_profile(seed: int, tmp: Path) -> list[dict]:
    """Share of one fusion training epoch in data loading, text encoder, sequence encoder, optimiser:
    experiments/profile_epoch.py run as a script, its measurements read from the JSON it writes."""
    out = tmp / "profile.json"
    subprocess.run([sys.executable, str(ROOT / "experiments" / "profile_epoch.py"), "--seed", str(seed),
                    "--json", str(out)], check=True)
    return json.loads(out.read_text())


# --- report ---------------------------------------------------------------------------------
def pooled(summary: pd.DataFrame) -> pd.DataFrame:
    """Pooled-over-origins rows, averaged over seeds, with each seed's WAPE beside the mean, the number of
    seeds and their spread (max - min WAPE). A seed-average forecast is a row of its own (one value)."""
    rows = summary[summary["cutoff"] == "all"]
    keys = ["dataset", "group", "model", "source"]
    mean = rows.groupby(keys, dropna=False).mean(numeric_only=True).drop(columns="seed", errors="ignore")
    seeded = rows[rows["seed"] != protocol.SEED_AVERAGE]
    per_seed = seeded.pivot_table(index=keys, columns="seed", values="wape", dropna=False)
    per_seed.columns = [f"wape_seed{int(c)}" for c in per_seed.columns]
    wape = seeded.groupby(keys, dropna=False)["wape"]
    spread = (wape.max() - wape.min()).where(wape.count() > 1).rename("seed_spread")
    return mean.join(per_seed).join(spread).join(wape.count().rename("seeds")).reset_index()


def comparison_lines(comparisons: list[dict], dataset: str, group: str) -> list[str]:
    """The paired comparisons of one group as a markdown table, with the adoption rule."""
    rows = [r for r in comparisons if r["dataset"] == dataset and r["group"] == group]
    if not rows:
        return []
    lines = [f"Paired comparisons: Δ = WAPE(candidate) − WAPE(arm) on the same products and origins (< 0: the "
             f"candidate is better), seeds averaged, [{protocol.LEVEL:.0%} bootstrap interval] over products and "
             f"origins ({protocol.BOOTSTRAPS} draws). Rule: {protocol.ADOPTION_RULE}.", "",
             "| candidate | WAPE | seed spread | bias | default | Δ vs default | default bias | best reference "
             "| Δ vs reference | reference bias | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, ref = r["vs_default"], r["vs_reference"]
        lines.append(f"| {label(r['model'])} | {_f(r['wape'])} | {_f(r['seed_spread'])} | {_f(r['bias'])} | "
                     f"{label(r['default']) if d else ''} | {_delta(d)} | {_f(d['bias_b']) if d else ''} | "
                     f"{label(r['reference'], r['reference_source']) if ref else ''} | {_delta(ref)} | "
                     f"{_f(ref['bias_b']) if ref else ''} | {r['verdict']} |")
    return lines


def _delta(comparison: dict | None) -> str:
    if comparison is None:
        return ""
    return f"{comparison['difference']:+.3f} [{comparison['low']:+.3f}, {comparison['high']:+.3f}]"


def write_report(summary: pd.DataFrame, errors: pd.DataFrame, steps: list[dict], timings: dict, scaling: list[dict],
                 profile: list[dict], meta: dict) -> Path:
    """Write the run's tables (json, md, plot); returns the markdown's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = pooled(summary)
    table.insert(table.columns.get_loc("model") + 1, "label", [label(m, s) for m, s in zip(table.model, table.source)])
    comparisons = (protocol.compare_all(table, errors, meta["split"], meta["default"], meta["tag"],
                                        meta["default_tag"]) if not errors.empty else [])
    by_origin = (summary[summary["cutoff"] != "all"].groupby(["dataset", "group", "model", "source", "cutoff"])
                 ["wape"].mean().reset_index())
    goals = targets(table, scaling, meta.get("tag", ""), by_origin) if meta["split"] == "reported" else []
    suffix = "" if meta["split"] == "reported" else "_validation"
    if meta.get("tag"):  # an ablation: its own files, the benchmark's stay as they are
        _report_dir(meta).mkdir(parents=True, exist_ok=True)
        suffix = f"_{meta['split']}_{meta['datasets'].replace(',', '+')}"
    payload = {"meta": meta, "pooled": table.to_dict("records"), "rows": summary.to_dict("records"),
               "per_step": steps, "comparisons": comparisons, "timings": timings, "scaling": scaling,
               "profile": profile, "targets": goals}
    (_report_dir(meta) / f"benchmark{suffix}.json").write_text(json.dumps(payload, indent=2, default=_json) + "\n")
    seeds = sorted(int(s) for s in summary["seed"].dropna().unique() if s != protocol.SEED_AVERAGE)
    lines = ["# Benchmark results", "", f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; "
             f"date {meta['date']}; split **{meta['split']}**; seeds {meta['seeds']}; horizon {HORIZON} weeks.", "",
             "WAPE = Σ|error| / Σ actual over all scored cells (lower is better), pooled over the split's origins "
             "and averaged over seeds; `spread` = max − min of the seeds' WAPE; `MODEL [seed avg]` is the mean of "
             "the seeds' forecasts, scored as a model. All models scored by the same code on the same cells; "
             "`coverage` is the share of target items a model forecast itself (a peer's runner fallback does not "
             "count), missing items score as 0.", ""]
    if len(meta["seeds"]) < protocol.MIN_SEEDS:
        lines += [f"**{len(meta['seeds'])} seed(s): below the protocol's {protocol.MIN_SEEDS}; no setting is chosen "
                  "on this run.**", ""]
    seed_cols = " | ".join(f"WAPE seed {s}" for s in seeds)
    for (dataset, group), part in table.groupby(["dataset", "group"], sort=True):
        lines += [f"## {dataset} — {'items with history' if group == HISTORY else 'new products'}", "",
                  f"| model | source | WAPE (mean) | spread | {seed_cols} | MAE | MASE | bias | coverage "
                  "| fit+predict s | peak RSS MB |",
                  "|---|---|---|---|" + "---|" * len(seeds) + "---|---|---|---|---|---|"]
        for r in part.sort_values("wape").to_dict("records"):
            per = " | ".join(_f(r.get(f"wape_seed{s}")) for s in seeds)
            lines.append(f"| {r['label']} | {r['source']} | {_f(r['wape'])} | {_f(r.get('seed_spread'))} | {per} | "
                         f"{_f(r['mae'])} | "
                         f"{_f(r['mase'])} | {_f(r['bias'])} | {_f(r['coverage'])} | {_f(r.get('seconds'), 0)} | "
                         f"{_f(r.get('peak_rss_mb'), 0)} |")
        lines += ["", *comparison_lines(comparisons, dataset, group), ""]
        lines += [*per_origin_lines(summary, dataset, group), ""]
    if goals:
        lines += ["## Targets", "", "| target | value | bound | met | detail |", "|---|---|---|---|---|"]
        for g in goals:
            miss = "" if g["met"] else f" (misses by {g['margin']:+.1%})"
            lines.append(f"| {g['target']} | {g['value']} | {g['bound']} | {'yes' if g['met'] else 'NO'} | "
                         f"{g['detail']}{miss} |")
        lines.append("")
    if scaling:
        lines += scaling_lines(scaling)
    if profile:
        lines += ["## Where a fusion training epoch spends its time (online_retail, 10,240 windows)", "",
                  "| text mode | epoch s | data loading | text encoder | sequence encoder | backward+optimiser | "
                  "fusion+heads+loss |",
                  "|---|---|---|---|---|---|---|"]
        for p in profile:
            s = p["shares"]
            lines.append(f"| {p['mode']} | {p['epoch_seconds']:.1f} | {s['data_loading']:.0%} | {s['text_encoder']:.0%} "
                         f"| {s['sequence_encoder']:.0%} | {s['optimiser']:.0%} | {s['other']:.0%} |")
        lines.append("")
    (_report_dir(meta) / f"benchmark{suffix}.md").write_text("\n".join(lines))
    plot(table, scaling, _report_dir(meta) / f"benchmark{suffix}_wape.png")
    return _report_dir(meta) / f"benchmark{suffix}.md"


def per_origin_lines(summary: pd.DataFrame, dataset: str, group: str) -> list[str]:
    """WAPE per origin (seed mean), one row per model."""
    part = summary[(summary.dataset == dataset) & (summary.group == group) & (summary.cutoff != "all")]
    if part.empty:
        return []
    table = part.pivot_table(index="model", columns="cutoff", values="wape", aggfunc="mean")
    table = table.loc[table.mean(axis=1).sort_values().index]
    lines = ["WAPE per origin (cut-off date, mean over seeds):", "",
             "| model | " + " | ".join(table.columns) + " |", "|---|" + "---|" * len(table.columns)]
    lines += [f"| {label(m)} | " + " | ".join(_f(v) for v in row) + " |" for m, row in zip(table.index, table.to_numpy())]
    return lines


def _json(value):
    return None if isinstance(value, float) and not np.isfinite(value) else float(value)


def scaling_lines(scaling: list[dict]) -> list[str]:
    lines = ["## Scaling of `forecast fit` (default settings, online_retail subsets)", "",
             "| products | wall s | peak RSS MB | ok |", "|---|---|---|---|"]
    lines += [f"| {s['products']} | {s['wall_seconds']} | {s['peak_rss_mb']} | {s['ok']} |" for s in scaling]
    if len(scaling) >= 2:
        x = np.log([s["products"] for s in scaling])
        y = np.log([s["wall_seconds"] for s in scaling])
        lines += ["", f"log-log slope of wall time vs products: {np.polyfit(x, y, 1)[0]:.2f}"]
    return lines + [""]


def write_scaling(scaling: list[dict], command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling_online_retail.json").write_text(json.dumps({"command": command, "runs": scaling}, indent=2) + "\n")
    lines = ["# Scaling", "", f"Command: `{command}`; machine {platform.machine()}, {os.cpu_count()} cores.", ""]
    (RESULTS / "scaling_online_retail.md").write_text("\n".join(lines + scaling_lines(scaling)))
    plot_scaling(scaling)


def _f(v, digits=3) -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def plot(table: pd.DataFrame, scaling: list[dict], path: Path) -> None:
    wape_bars(table, path, {"forecast": "tab:blue", "peer": "tab:orange", "reference": "tab:green",
                            "literature": "tab:gray"}, "WAPE (mean over seeds)")
    plot_scaling(scaling)


def plot_scaling(scaling: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(scaling) >= 2:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.loglog([s["products"] for s in scaling], [s["wall_seconds"] for s in scaling], "o-", label="wall s")
        ax2 = ax.twinx()
        ax2.plot([s["products"] for s in scaling], [s["peak_rss_mb"] for s in scaling], "s--", color="tab:red")
        ax.set_xlabel("products")
        ax.set_ylabel("fit wall time (s)")
        ax2.set_ylabel("peak RSS (MB)", color="tab:red")
        fig.tight_layout()
        fig.savefig(RESULTS / "scaling_online_retail.png", dpi=90)
        plt.close(fig)


# --- main --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "MODEL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--datasets", default="online_retail,visuelle")
    parser.add_argument("--models", help="our models to run (any registry name; `none`: peers only); default: "
                        "the data set's list plus " + ", ".join(OPTIONAL) + " where the registry has them")
    parser.add_argument("--split", choices=SPLITS, default="reported",
                        help="validation: where settings are chosen; reported: the README figures (run once)")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)  # the child's seed
    parser.add_argument("--seeds", default=SEEDS, help="comma-separated seeds; every neural model and peer runs "
                        "with each, the package's deterministic references (" + ", ".join(sorted(
                            protocol.REFERENCE_MODELS)) + ") with the first")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--reuse-ours", action="store_true",
                        help="reuse our models' forecasts cached in experiments/.cache (same code only)")
    parser.add_argument("--reuse-peers", action="store_true",
                        help="reuse the peers' forecasts cached in experiments/.cache for this split and seed")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an ablation: override a config key of our models (YAML value), repeatable; needs "
                        "--tag; shuffled_descriptions=true gives every product another one's description")
    parser.add_argument("--tag", default="", help="the ablation's name: its models are shown as MODEL@TAG and its "
                        "tables written to results/ablations/TAG/benchmark_SPLIT_DATASETS.{md,json}")
    parser.add_argument("--default", default="fusion",
                        help="the current default an untagged candidate is compared with (a tagged one: its own "
                        "model in the default run)")
    parser.add_argument("--default-tag", default="", help="with --tag: take the default arm from this earlier "
                        "tagged run's cached forecasts instead of the package defaults")
    parser.add_argument("--skip-default", action="store_true",
                        help="with --tag: do not run (or reuse) the default arm; no comparison with it")
    parser.add_argument("--scaling-sizes", default="500,1000,2000,3571")
    parser.add_argument("--only-scaling", action="store_true",
                        help="just the scaling runs, written to results/scaling_online_retail.{json,md,png}")
    args = parser.parse_args()
    overrides = parse_sets(args.set)
    if args.child:
        dataset, model, out = args.child
        run_child(dataset, model, Path(out), args.seed, args.split, overrides)
        return
    if args.set and not args.tag:
        parser.error("--set needs --tag (an ablation is reported under its name, never as the benchmark)")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.only_scaling:
        with tempfile.TemporaryDirectory() as tmp_name:
            scaling = run_scaling([int(s) for s in args.scaling_sizes.split(",")], Path(tmp_name), seeds[0])
        write_scaling(scaling, "python experiments/benchmark.py " + " ".join(sys.argv[1:]))
        return
    rows, steps, errors, timings = [], [], [], {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for dataset in args.datasets.split(","):
            panel = load(dataset, args.split)
            cuts = cutoffs_of(dataset, panel, args.split)
            print(f"[{dataset}] {args.split} cut-offs {[str(panel.dates[c].date()) for c in cuts]}", flush=True)
            models = models_for(dataset, args.models)
            truth = truth_table(panel, cuts, groups_of(dataset))
            timings[dataset] = {}
            frames = [mean_launch_curve(panel, cuts).assign(source="reference", seed=seeds[0])]
            for seed in seeds:
                seeded = [m for m in models if seed == seeds[0] or not protocol.is_reference(m, "forecast")]
                ours, t_ours = run_ours(dataset, seeded, seed, args.split, cutoff_dates(panel, cuts),
                                        args.reuse_ours, args.set, args.tag)
                frames.append(ours.assign(source="forecast", seed=seed))
                if args.tag and not args.skip_default:  # the arm the tagged candidates are compared with
                    default, t_default = run_ours(dataset, [m for m in seeded if not protocol.is_reference(m, "")],
                                                  seed, args.split, cutoff_dates(panel, cuts), args.reuse_ours,
                                                  tag=args.default_tag, cache_only=bool(args.default_tag))
                    frames.append(default.assign(source="forecast", seed=seed))
                    t_ours = {**t_default, **t_ours}
                peers, t_peers = (pd.DataFrame(), {}) if args.skip_peers else run_peers(
                    dataset, panel, cuts, tmp, seed, args.split, args.reuse_peers)
                frames.append(peers.assign(source="peer", seed=seed))
                timings[dataset][seed] = {"forecast": t_ours, "peers": t_peers}
            frames = [f for f in frames if not f.empty]
            if not frames:
                continue
            forecasts = pd.concat(frames, ignore_index=True)
            forecasts = pd.concat([forecasts, protocol.seed_average(forecasts)], ignore_index=True)
            for source, frame in forecasts.groupby("source", sort=False):  # a peer's croston is not ours
                scored, per_step = score_all(dataset, panel, truth, frame)
                rows += [r | {"source": source} for r in scored]
                steps += [s | {"source": source} for s in per_step]
                errors.append(item_errors(dataset, panel, truth, frame).assign(source=source))
        summary = pd.DataFrame(rows)
        summary["seconds"] = [_timing(timings, r, "seconds") for r in summary.itertuples()]
        summary["peak_rss_mb"] = [_timing(timings, r, "peak_rss_mb") for r in summary.itertuples()]
        literature = [r | {"source": "literature", "cutoff": "all", "seed": seeds[0]} for r in LITERATURE
                      if r["dataset"] in args.datasets and args.split == "reported"]
        summary = pd.concat([summary, pd.DataFrame(literature)], ignore_index=True)
        scaling = [] if args.skip_scaling else run_scaling([int(s) for s in args.scaling_sizes.split(",")], tmp,
                                                          seeds[0])
        profile = [] if args.skip_profile else run_profile(seeds[0], tmp)
    meta = {"command": "python " + " ".join(["experiments/benchmark.py", *sys.argv[1:]]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "seeds": seeds, "split": args.split,
            "date": time.strftime("%Y-%m-%d"), "tag": args.tag, "overrides": overrides, "datasets": args.datasets,
            "default": args.default, "default_tag": args.default_tag}
    errors = pd.concat([e for e in errors if not e.empty], ignore_index=True) if errors else pd.DataFrame()
    print(write_report(summary, errors, steps, timings, scaling, profile, meta).read_text())


def parse_sets(sets: list[str]) -> dict:
    """``["neural.knn_feature=0", ...]`` -> {"neural.knn_feature": 0}: values read as YAML."""
    import yaml

    pairs = [kv.split("=", 1) for kv in sets]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--set wants KEY=VALUE, got {sets}")
    return {key: yaml.safe_load(value) for key, value in pairs}


def _report_dir(meta: dict) -> Path:
    """Where a run's tables go: results/ for the benchmark, results/ablations/TAG/ for a tagged ablation."""
    return RESULTS / "ablations" / meta["tag"] if meta.get("tag") else RESULTS


def _timing(timings: dict, r, key: str) -> float | None:
    """A model's fit+predict seconds or peak RSS for this seed (None for references)."""
    side = {"forecast": "forecast", "peer": "peers"}.get(r.source)
    if side is None:
        return None
    model, _, tag = r.model.removesuffix(protocol.SEED_AVERAGE_SUFFIX).partition("@")
    name = model.split(":")[0] + (f"@{tag}" if tag else "")  # a variant: its model's timing
    t = timings.get(r.dataset, {}).get(r.seed, {}).get(side, {}).get(name, {})
    if key == "seconds":
        return t.get("fit_predict_seconds", (t.get("fit_seconds") or 0) + (t.get("predict_seconds") or 0) or None)
    return t.get(key)


if __name__ == "__main__":
    main()
