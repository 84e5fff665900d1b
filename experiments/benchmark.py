"""The benchmark: forecast's models, its baselines and the peer libraries, on real data, one scorer.

    python experiments/benchmark.py                 # everything (about an hour on 2 cores)
    python experiments/benchmark.py --skip-peers --skip-scaling --skip-profile   # just our models

Datasets (../shared/data, see ../shared/README.md):
- online_retail: rolling origins 20, 16 and 12 weeks before the end, horizon 12
  (every fold has 12 weeks of truth). Items with history: the 12 weeks after the
  cut-off. New items (first sale after the cut-off): their first 12 weeks from launch.
- visuelle: new products only. Cut-off = the launch date from which the latest
  ~15% of products were released; those are forecast for their 12 weeks from
  launch from their description alone. (Its sales file holds only each product's
  first 12 weeks, so the panel's zero-filled weeks after them are not real
  zeros; only launch windows are scored.)

Every model, ours or a peer's, writes long forecasts (cutoff, model, group, item_id,
date, units); one function scores them all against the same truth with
forecast.metrics. Our models run one per child process so that each one's peak RSS
is its own. Writes experiments/results/benchmark.{json,md} and PNG plots.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecast.backtest import origins, run_backtest  # noqa: E402
from forecast.config import DataConfig, EvalConfig, RunConfig  # noqa: E402
from forecast.data.contract import load_tables  # noqa: E402
from forecast.data.panel import Panel, build_panel  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402
from forecast.metrics import mase_scale, score, score_by_step  # noqa: E402
from forecast.models.registry import MODELS  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
PEERS = ROOT / "experiments" / "peers"
HORIZON = 12
OURS = {
    "online_retail": ["fusion", "sequence", "text", "seasonal_naive", "moving_average", "ets", "theta", "knn"],
    "visuelle": ["fusion", "sequence", "text", "knn"],
}
STATISTICAL = {m for m, e in MODELS.items() if e.section == "baselines" and e.groups == {HISTORY}}
VISUELLE_NEW_SHARE = 0.15
LITERATURE = [{"dataset": "visuelle", "model": "GTM-Transformer (published)", "group": NEW, "wape": 0.55,
               "source": "literature: Skenderi et al. 2021, official split, text+image+Google Trends; not measured here"}]


# --- data and splits -------------------------------------------------------------
def load(dataset: str) -> Panel:
    base = DATA / dataset
    config = DataConfig(negative_units="zero")  # visuelle has a few negative (returns) weeks
    return build_panel(load_tables(base / "sales.csv", base / "products.csv", config))


def cutoffs_of(dataset: str, panel: Panel) -> list[int]:
    if dataset == "visuelle":
        launch = np.sort(panel.start)
        return [int(launch[int(len(launch) * (1 - VISUELLE_NEW_SHARE))])]
    return origins(panel.n_periods, EvalConfig(horizon=HORIZON, folds=3, step=4))


def groups_of(dataset: str) -> tuple[str, ...]:
    return (NEW,) if dataset == "visuelle" else (HISTORY, NEW)


def config_for(dataset: str, seed: int) -> RunConfig:
    cfg = RunConfig(seed=seed)
    cfg.evaluation.horizon = HORIZON
    cfg.train.progress = False
    return cfg


# --- our models, one child process each ----------------------------------------------
def run_child(dataset: str, model: str, out: Path, seed: int) -> None:
    """Backtest one model and write its long forecasts + timing (called in a child process)."""
    from forecast.models.registry import build

    panel = load(dataset)
    cuts = cutoffs_of(dataset, panel)
    cfg = config_for(dataset, seed)
    tic = time.perf_counter()
    result = run_backtest(panel, {model: lambda: build(model, cfg)}, cfg.evaluation, cutoffs=cuts)
    seconds = time.perf_counter() - tic
    frames = []
    for fold in result.folds:
        for group, values in fold.forecasts[model].items():
            rows = fold.rows[group]
            start = np.full(len(rows), fold.cutoff) if group == HISTORY else panel.start[rows]
            frames.append(long_frame(panel, fold.cutoff, model, group, rows, start, values))
    pd.concat(frames).to_csv(out, index=False)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    Path(str(out) + ".json").write_text(json.dumps({"fit_predict_seconds": round(seconds, 1),
                                                    "peak_rss_mb": round(rss / 1024)}))


def long_frame(panel: Panel, cutoff: int, model: str, group: str, rows, start, values) -> pd.DataFrame:
    h = values.shape[1]
    cols = (np.asarray(start)[:, None] + np.arange(h)[None, :]).ravel()
    return pd.DataFrame({"cutoff": panel.dates[cutoff].strftime("%Y-%m-%d"), "model": model, "group": group,
                         "item_id": np.repeat(panel.item_ids[rows], h),
                         "date": panel.date_at(cols).strftime("%Y-%m-%d"), "units": values.ravel()})


def run_ours(dataset: str, models: list[str], tmp: Path, seed: int) -> tuple[pd.DataFrame, dict]:
    frames, timings = [], {}
    for model in models:
        out = tmp / f"{dataset}_{model}.csv"
        print(f"[{dataset}] {model} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", dataset, model, str(out), "--seed", str(seed)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"[{dataset}] {model} FAILED:\n{proc.stderr[-2000:]}", flush=True)
            timings[model] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            continue
        frames.append(pd.read_csv(out, dtype={"item_id": str}))
        timings[model] = json.loads(Path(str(out) + ".json").read_text())
        print(f"[{dataset}] {model}: {timings[model]}", flush=True)
    return pd.concat(frames) if frames else pd.DataFrame(), timings


# --- peers ----------------------------------------------------------------------------
def run_peers(dataset: str, panel: Panel, cuts: list[int], tmp: Path, seed: int) -> tuple[pd.DataFrame, dict]:
    python = PEERS / ".venv" / "bin" / "python"
    if not python.exists():
        print("peers venv missing: running experiments/peers/setup.sh", flush=True)
        subprocess.run(["bash", str(PEERS / "setup.sh")], check=True)
    from forecast.encoders.text import embed_texts

    emb = tmp / f"{dataset}_embeddings.npz"
    np.savez(emb, item_id=panel.item_ids.astype(str), embedding=embed_texts(panel.descriptions))
    out = tmp / f"peers_{dataset}"
    models = "lgbm_new_onehot,lgbm_new_text,ridge_new_text" if dataset == "visuelle" else None
    cmd = [str(python), str(PEERS / "run_peers.py"), "--sales", str(DATA / dataset / "sales.csv"),
           "--products", str(DATA / dataset / "products.csv"), "--horizon", str(HORIZON), "--out", str(out),
           "--embeddings", str(emb), "--seed", str(seed),
           "--cutoffs", ",".join(panel.dates[c].strftime("%Y-%m-%d") for c in cuts)]
    if models:
        cmd += ["--models", models]
    print(f"[{dataset}] peers ...", flush=True)
    proc = subprocess.run(cmd, text=True)
    if proc.returncode != 0 or not (out / "forecasts.csv").exists():
        return pd.DataFrame(), {"error": f"run_peers exited {proc.returncode}"}
    frame = pd.read_csv(out / "forecasts.csv", dtype={"item_id": str})
    return frame, json.loads((out / "timings.json").read_text())


# --- scoring --------------------------------------------------------------------------
def truth_table(panel: Panel, cuts: list[int], groups: tuple[str, ...]) -> dict:
    """(cutoff date, group) -> (item ids, start, truth [m, H], MASE scale [m])."""
    table = {}
    for cutoff in cuts:
        key = panel.dates[cutoff].strftime("%Y-%m-%d")
        for group in groups:
            if group == HISTORY:
                rows = np.flatnonzero(panel.start < cutoff)
                start = np.full(len(rows), cutoff)
                scale = np.array([mase_scale(panel.units[i, panel.start[i]:cutoff], panel.season_length) for i in rows])
            else:
                rows = np.flatnonzero((panel.start >= cutoff) & (panel.start < panel.n_periods))
                start = panel.start[rows]
                scale = np.full(len(rows), np.nan)
            table[key, group] = (panel.item_ids[rows], start, panel.window(rows, start, HORIZON), scale)
    return table


def score_all(dataset: str, panel: Panel, truth: dict, forecasts: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Pooled and per-step metrics of every model and group; a model missing an item scores 0 for it."""
    rows_out, steps_out = [], []
    if forecasts.empty:
        return rows_out, steps_out
    base = panel.dates[0]
    week = pd.Timedelta(weeks=1)
    for (model, group), part in forecasts.groupby(["model", "group"]):
        actual, predicted, scales, covered, total = [], [], [], 0, 0
        for (cutoff, g), (ids, start, y, scale) in truth.items():
            if g != group:
                continue
            sub = part[part["cutoff"] == cutoff]
            pred = np.zeros_like(y)
            if len(sub):
                pos = pd.Series(np.arange(len(ids)), index=ids)
                k = pos.reindex(sub["item_id"]).to_numpy()
                step = ((pd.to_datetime(sub["date"]) - base) // week).to_numpy() - start[np.nan_to_num(k).astype(int)]
                ok = ~np.isnan(k) & (step >= 0) & (step < HORIZON)
                pred[k[ok].astype(int), step[ok]] = sub["units"].to_numpy()[ok]
                covered += len(np.unique(k[ok]))
            total += len(ids)
            actual.append(y), predicted.append(pred), scales.append(scale)
        if not actual:
            continue
        y, f, s = np.concatenate(actual), np.concatenate(predicted), np.concatenate(scales)
        metrics = score(y, f, s if group == HISTORY else None)
        rows_out.append({"dataset": dataset, "model": model, "group": group, **metrics,
                         "coverage": round(covered / max(total, 1), 3)})
        for h, m in enumerate(score_by_step(y, f), 1):
            steps_out.append({"dataset": dataset, "model": model, "group": group, "step": h, "wape": m["wape"]})
    return rows_out, steps_out


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


def run_profile(seed: int) -> list[dict]:
    """Share of one fusion training epoch in data loading, text encoder, sequence encoder, optimiser."""
    from experiments.profile_epoch import profile_epoch

    panel = load("online_retail")
    return [profile_epoch(panel, mode, seed) for mode in ("frozen", "last-k")]


# --- report ---------------------------------------------------------------------------------
def targets(summary: pd.DataFrame, scaling: list[dict]) -> list[dict]:
    def wape(dataset, group, models):
        part = summary[(summary.dataset == dataset) & (summary.group == group) & summary.model.isin(models)]
        return part.sort_values("wape").iloc[0] if len(part) else None

    out = []
    fusion_h = wape("online_retail", HISTORY, ["fusion"])
    stats = wape("online_retail", HISTORY, STATISTICAL)
    peers = summary[summary.source == "peer"]
    peer_h = wape("online_retail", HISTORY, peers[peers.group == HISTORY].model.unique())
    if fusion_h is not None and stats is not None:
        out.append(_target("online_retail history: fusion WAPE <= 0.85 x best statsmodels baseline",
                           fusion_h.wape, 0.85 * stats.wape, f"best baseline {stats.model} {stats.wape:.3f}"))
    if fusion_h is not None and peer_h is not None:
        out.append(_target("online_retail history: fusion WAPE <= 0.85 x best peer", fusion_h.wape,
                           0.85 * peer_h.wape, f"best peer {peer_h.model} {peer_h.wape:.3f}"))
    for dataset in ("online_retail", "visuelle"):
        fusion_n = wape(dataset, NEW, ["fusion"])
        rivals = summary[(summary.dataset == dataset) & (summary.group == NEW)
                         & ((summary.source == "peer") | (summary.model == "knn"))]
        if fusion_n is not None and len(rivals):
            best = rivals.sort_values("wape").iloc[0]
            out.append(_target(f"{dataset} new products: fusion better than every peer and kNN", fusion_n.wape,
                               best.wape, f"best rival {best.model} {best.wape:.3f}", strict=True))
    full = [s for s in scaling if s["products"] >= 3571]
    if full:
        out.append(_target("full online_retail fit under 10 minutes (2 cores)", full[0]["wall_seconds"], 600.0,
                           "seconds", strict=True))
    return out


def _target(name, value, bound, detail, strict=False) -> dict:
    met = bool(value < bound if strict else value <= bound)
    return {"target": name, "value": round(float(value), 4), "bound": round(float(bound), 4), "met": met,
            "detail": detail, "margin": round(float(value / bound - 1), 4) if bound else None}


def write_report(summary: pd.DataFrame, steps: list[dict], timings: dict, scaling: list[dict], profile: list[dict],
                 goals: list[dict], meta: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "summary": summary.to_dict("records"), "per_step": steps, "timings": timings,
               "scaling": scaling, "profile": profile, "targets": goals}
    (RESULTS / "benchmark.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    lines = ["# Benchmark results", "", f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; "
             f"date {meta['date']}; seed {meta['seed']}; horizon {HORIZON} weeks.", "",
             "WAPE = Σ|error| / Σ actual over all scored cells (lower is better). All models scored by the same "
             "code on the same cells; `coverage` is the share of target items a model forecast (missing = 0).", ""]
    for (dataset, group), part in summary.groupby(["dataset", "group"], sort=True):
        lines += [f"## {dataset} — {'items with history' if group == HISTORY else 'new products'}", "",
                  "| model | source | WAPE | MAE | MASE | RMSE | bias | coverage | fit+predict s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in part.sort_values("wape").itertuples():
            lines.append(f"| {r.model} | {r.source} | {_f(r.wape)} | {_f(r.mae)} | {_f(r.mase)} | {_f(r.rmse)} | "
                         f"{_f(r.bias)} | {_f(r.coverage)} | {_f(r.seconds, 0)} | {_f(r.peak_rss_mb, 0)} |")
        lines.append("")
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
    (RESULTS / "benchmark.md").write_text("\n".join(lines))
    plot(summary, scaling)


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
    (RESULTS / "scaling.json").write_text(json.dumps({"command": command, "runs": scaling}, indent=2) + "\n")
    lines = ["# Scaling", "", f"Command: `{command}`; machine {platform.machine()}, {os.cpu_count()} cores.", ""]
    (RESULTS / "scaling.md").write_text("\n".join(lines + scaling_lines(scaling)))
    plot_scaling(scaling)


def _f(v, digits=3) -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def plot(summary: pd.DataFrame, scaling: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(summary.groupby(["dataset", "group"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    colours = {"forecast": "tab:blue", "peer": "tab:orange", "literature": "tab:gray"}
    for ax, ((dataset, group), part) in zip(axes.flat, panels):
        part = part.sort_values("wape")
        ax.barh(part["model"], part["wape"], color=[colours.get(s, "k") for s in part["source"]])
        ax.invert_yaxis()
        ax.set_title(f"{dataset}: {group}", fontsize=9)
        ax.set_xlabel("WAPE")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "benchmark_wape.png", dpi=90)
    plt.close(fig)
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
        fig.savefig(RESULTS / "scaling.png", dpi=90)
        plt.close(fig)


# --- main --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "MODEL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--datasets", default="online_retail,visuelle")
    parser.add_argument("--models", help="subset of our models to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--scaling-sizes", default="500,1000,2000,3571")
    parser.add_argument("--only-scaling", action="store_true",
                        help="just the scaling runs, written to results/scaling.{json,md} and scaling.png")
    args = parser.parse_args()
    if args.child:
        dataset, model, out = args.child
        run_child(dataset, model, Path(out), args.seed)
        return
    if args.only_scaling:
        with tempfile.TemporaryDirectory() as tmp_name:
            scaling = run_scaling([int(s) for s in args.scaling_sizes.split(",")], Path(tmp_name), args.seed)
        write_scaling(scaling, "python experiments/benchmark.py " + " ".join(sys.argv[1:]))
        return
    rows, steps, timings = [], [], {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for dataset in args.datasets.split(","):
            panel = load(dataset)
            cuts = cutoffs_of(dataset, panel)
            print(f"[{dataset}] cut-offs {[str(panel.dates[c].date()) for c in cuts]}", flush=True)
            models = [m for m in OURS[dataset] if not args.models or m in args.models.split(",")]
            ours, t_ours = run_ours(dataset, models, tmp, args.seed)
            ours["source"] = "forecast"
            peers, t_peers = (pd.DataFrame(), {}) if args.skip_peers else run_peers(dataset, panel, cuts, tmp, args.seed)
            if not peers.empty:
                peers["source"] = "peer"
            truth = truth_table(panel, cuts, groups_of(dataset))
            for frame in (ours, peers):
                scored, per_step = score_all(dataset, panel, truth, frame)
                source = frame["source"].iloc[0] if not frame.empty else ""
                rows += [r | {"source": source} for r in scored]
                steps += per_step
            timings[dataset] = {"forecast": t_ours, "peers": t_peers}
        summary = pd.DataFrame(rows)
        summary["seconds"] = [_seconds(timings, r) for r in summary.itertuples()]
        summary["peak_rss_mb"] = [_rss(timings, r) for r in summary.itertuples()]
        summary = pd.concat([summary, pd.DataFrame([r | {"source": "literature"} for r in LITERATURE
                                                    if r["dataset"] in args.datasets])], ignore_index=True)
        scaling = [] if args.skip_scaling else run_scaling([int(s) for s in args.scaling_sizes.split(",")], tmp,
                                                          args.seed)
    profile = [] if args.skip_profile else run_profile(args.seed)
    meta = {"command": "python " + " ".join(["experiments/benchmark.py", *sys.argv[1:]]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "seed": args.seed,
            "date": time.strftime("%Y-%m-%d")}
    write_report(summary, steps, timings, scaling, profile, targets(summary, scaling), meta)
    print((RESULTS / "benchmark.md").read_text())


def _seconds(timings: dict, r) -> float | None:
    t = timings.get(r.dataset, {}).get("forecast" if r.source == "forecast" else "peers", {}).get(r.model, {})
    return t.get("fit_predict_seconds", (t.get("fit_seconds") or 0) + (t.get("predict_seconds") or 0) or None)


def _rss(timings: dict, r) -> float | None:
    t = timings.get(r.dataset, {}).get("forecast" if r.source == "forecast" else "peers", {}).get(r.model, {})
    return t.get("peak_rss_mb")


if __name__ == "__main__":
    main()
