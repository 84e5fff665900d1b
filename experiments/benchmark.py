"""The benchmark: forecast's models, its baselines and the peer libraries, on real data, one scorer.

    python experiments/benchmark.py --split validation --seeds 0,1   # where settings are chosen
    python experiments/benchmark.py --split reported --seeds 0,1     # what README reports (run once)
    python experiments/benchmark.py --skip-peers --skip-scaling --skip-profile   # just our models
    python experiments/benchmark.py --split validation --datasets visuelle --models fusion --skip-peers \
        --skip-scaling --skip-profile --set neural.attribute_curves=false --tag no_attributes   # an ablation

Protocol. Every setting of the package (defaults, search spaces, ensemble weights) is
chosen on the *validation* split; the *reported* split is run once, for the figures in
README. Both splits hold out the future the same way:

- online_retail (41 weeks): reported origins are the cut-offs 20, 16 and 12 weeks before
  the end (horizon 12; every fold has 12 weeks of truth); validation origins are 8 and 4
  weeks before the first reported one. Items with history: the 12 weeks after the
  cut-off. New items (first sale after the cut-off): their first 12 weeks from launch.
- visuelle: new products only. Reported: the cut-off is the launch date from which the
  latest 15% of products were released; those are forecast for their 12 weeks from
  launch. Validation: the products of that latest 15% do not exist; the cut-off is the
  70% launch quantile, and the products launched between it and the 85% quantile are
  forecast; a second validation origin at the 55% quantile forecasts every product launched
  after it (one cut-off was too fragile a guide: on it fusion beat LightGBM, on the reported
  one it lost). Each product's series ends at its last sales row (its 12 weeks).

Every model, ours, a peer's or a reference, writes long forecasts (cutoff, model,
group, item_id, date, units[, fallback]); one function scores them all against the
truth that forecast.backtest defines for its own folds, with forecast.metrics. Every
model runs with each seed of ``--seeds``; tables give each seed and their mean, pooled
over origins, and each origin separately. A peer's items that its library could not
forecast get the runner's fallback (last-8-week mean, or 0 for a new item); they count
in the score but not in ``coverage``, and are reported as ``fallback``. Our models run
one per child process so that each one's peak RSS is its own. Writes
experiments/results/benchmark[_validation].{json,md} and PNG plots.
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

from forecast.backtest import _fold_targets, origins, run_backtest  # noqa: E402
from forecast.config import DataConfig, EvalConfig, RunConfig  # noqa: E402
from forecast.data.contract import Tables, load_tables  # noqa: E402
from forecast.data.panel import Panel, build_panel  # noqa: E402
from forecast.metrics import score, score_by_step  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
PEERS = ROOT / "experiments" / "peers"
CACHE = ROOT / "experiments" / ".cache"
HORIZON = 12
SPLITS = ("validation", "reported")
OURS = {
    "online_retail": ["fusion", "sequence", "text", "seasonal_naive", "moving_average", "ets", "theta", "knn"],
    "visuelle": ["fusion", "sequence", "text", "knn"],
}
VISUELLE_NEW_SHARE = 0.15  # reported: the latest 15% of launches
VISUELLE_VALIDATION_SHARE = 0.15  # validation: the 15% of launches before those
VISUELLE_VALIDATION_ORIGINS = 2  # validation cut-offs at the 55% and 70% launch quantiles
MEAN_LAUNCH_CURVE = "mean launch curve"
# What the tables call each model: a peer by its library and model, ours by package and model.
LABELS = {
    "autoets": "statsforecast AutoETS", "autotheta": "statsforecast AutoTheta", "croston": "statsforecast Croston",
    "adida": "statsforecast ADIDA", "imapa": "statsforecast IMAPA", "lgbm": "LightGBM",
    "lgbm_new_onehot": "LightGBM on attribute one-hots", "lgbm_new_text": "LightGBM on text embeddings",
    "ridge_new_text": "scikit-learn Ridge on text embeddings", "tft": "pytorch-forecasting TFT",
    "deepar": "pytorch-forecasting DeepAR", "seasonal_naive": "forecast seasonal naive",
    "moving_average": "forecast moving average", "ets": "forecast ETS (statsmodels)",
    "theta": "forecast Theta (statsmodels)", "knn": "forecast description-kNN", "fusion": "forecast fusion",
    "sequence": "forecast sequence (no text)", "text": "forecast text only",
}


def label(model: str) -> str:
    """The name a table shows for a model key (the key itself when it has no label)."""
    return LABELS.get(model, model)
LITERATURE = [{"dataset": "visuelle", "model": "GTM-Transformer (published)", "group": NEW, "wape": 0.55,
               "source": "literature: Skenderi et al. 2021, official split, text+image+Google Trends; not measured here"}]


# --- data and splits -------------------------------------------------------------
def load(dataset: str, split: str = "reported") -> Panel:
    """The dataset's panel as the split knows it (visuelle validation: without the reported launches)."""
    base = DATA / dataset
    config = DataConfig(negative_units="zero")  # visuelle has a few negative (returns) weeks
    tables = load_tables(base / "sales.csv", base / "products.csv", config)
    if dataset == "visuelle" and split == "validation":
        tables = _launched_before(tables, visuelle_launch_quantile(tables, 1 - VISUELLE_NEW_SHARE))
    series_end = "last-sale" if dataset == "visuelle" else "table"  # visuelle: 12 weeks per product, then unknown
    return build_panel(tables, series_end=series_end)


def visuelle_launch_quantile(tables: Tables, q: float) -> pd.Timestamp:
    """The first-sale date from which the latest 1 - q of the products were launched."""
    first = np.sort(tables.sales.groupby("item_id")["date"].min().to_numpy())
    return pd.Timestamp(first[int(len(first) * q)])


def _launched_before(tables: Tables, date: pd.Timestamp) -> Tables:
    first = tables.sales.groupby("item_id")["date"].min()
    keep = set(first.index[first < date])
    return Tables(tables.sales[tables.sales["item_id"].isin(keep)].reset_index(drop=True),
                  tables.products[tables.products["item_id"].isin(keep)].reset_index(drop=True),
                  tables.sales_name, tables.products_name)


def cutoffs_of(dataset: str, panel: Panel, split: str = "reported") -> list[int]:
    """The split's cut-offs (see the module docstring)."""
    if dataset == "visuelle":
        launches = np.sort(panel.start[panel.has_history])
        if split == "reported":
            return [int(launches[int(len(launches) * (1 - VISUELLE_NEW_SHARE))])]
        total = round(len(launches) / (1 - VISUELLE_NEW_SHARE))  # the products the reported split knows
        shares = [VISUELLE_NEW_SHARE + k * VISUELLE_VALIDATION_SHARE for k in range(VISUELLE_VALIDATION_ORIGINS, 0, -1)]
        return [int(launches[int(total * (1 - share))]) for share in shares]
    reported = origins(panel.n_periods, EvalConfig(horizon=HORIZON, folds=3, step=4))
    return reported if split == "reported" else [reported[0] - 8, reported[0] - 4]


def groups_of(dataset: str) -> tuple[str, ...]:
    return (NEW,) if dataset == "visuelle" else (HISTORY, NEW)


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


def long_frame(panel: Panel, cutoff: int, model: str, group: str, rows, start, values) -> pd.DataFrame:
    h = values.shape[1]
    cols = (np.asarray(start)[:, None] + np.arange(h)[None, :]).ravel()
    return pd.DataFrame({"cutoff": panel.dates[cutoff].strftime("%Y-%m-%d"), "model": model, "group": group,
                         "item_id": np.repeat(panel.item_ids[rows], h),
                         "date": panel.date_at(cols).strftime("%Y-%m-%d"), "units": values.ravel()})


def cutoff_dates(panel: Panel, cuts: list[int]) -> list[str]:
    """The cut-offs as the forecast tables name them (YYYY-MM-DD)."""
    return [panel.dates[c].strftime("%Y-%m-%d") for c in cuts]


def cached(path: Path, cutoffs: list[str]) -> pd.DataFrame | None:
    """The forecasts cached in ``path`` when they are for exactly these cut-off dates (None otherwise:
    a cache written before a split's origins changed is not reused)."""
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype={"item_id": str})
    return frame if sorted(frame["cutoff"].astype(str).unique()) == sorted(cutoffs) else None


def run_ours(dataset: str, models: list[str], seed: int, split: str, cutoffs: list[str], reuse: bool = False,
             sets: list[str] = (), tag: str = "") -> tuple[pd.DataFrame, dict]:
    """Our models' forecasts, one child process each, kept in experiments/.cache; ``reuse`` takes a model's
    cached forecasts instead of running it (valid only for the same code: the cache is per data, split, seed,
    and is reused only for the same ``cutoffs`` dates).
    ``sets``: ``KEY=VALUE`` config overrides of an ablation named ``tag`` (its models are named ``model@tag``)."""
    frames, timings = [], {}
    CACHE.mkdir(parents=True, exist_ok=True)
    for model in models:
        out = CACHE / f"ours_{dataset}_{split}_{seed}_{model}{'@' + tag if tag else ''}.csv"
        if reuse and Path(str(out) + ".json").exists() and (frame := cached(out, cutoffs)) is not None:
            print(f"[{dataset} seed {seed}] {model}: reusing {out}", flush=True)
            frames.append(frame)
            timings[model] = json.loads(Path(str(out) + ".json").read_text())
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


def mean_launch_curve(panel: Panel, cuts: list[int]) -> pd.DataFrame:
    """The reference for new products: at each cut-off, the average launch curve of every product
    launched in the training data (what it sold in its k-th week, averaged over products, from the
    cells known before the cut-off), unscaled, for every new product."""
    frames = []
    for cutoff in cuts:
        train = panel.truncate(cutoff)
        launched = np.flatnonzero(train.has_history & (train.start > 0))
        curves = train.window(launched, train.start[launched], HORIZON)
        known = np.isfinite(curves).sum(axis=0)  # a step no launch has reached before the cut-off: 0
        curve = np.divide(np.nansum(curves, axis=0), known, out=np.zeros(HORIZON), where=known > 0)
        rows = _fold_targets(panel, cutoff, HORIZON).rows[NEW]
        if len(rows):
            values = np.repeat(curve[None, :], len(rows), axis=0)
            frames.append(long_frame(panel, cutoff, MEAN_LAUNCH_CURVE, NEW, rows, panel.start[rows], values))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    from forecast.encoders.text import embed_texts

    sales, products = tmp / f"{dataset}_sales.csv", tmp / f"{dataset}_products.csv"
    _panel_tables(panel, sales, products)
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


def _panel_tables(panel: Panel, sales: Path, products: Path) -> None:
    """The panel's products and observed sales rows as contract CSVs: the peers see exactly the
    products and weeks our models see (e.g. without the reported launches in validation)."""
    rows, cols = np.nonzero(np.isfinite(panel.units))
    frame = pd.DataFrame({"item_id": panel.item_ids[rows], "date": panel.dates[cols].strftime("%Y-%m-%d"),
                          "units": panel.units[rows, cols]})
    if panel.price is not None:
        frame["price"] = panel.price[rows, cols]
    frame.to_csv(sales, index=False)
    panel.products.to_csv(products, index=False)


# --- scoring --------------------------------------------------------------------------
def truth_table(panel: Panel, cuts: list[int], groups: tuple[str, ...]) -> dict:
    """(cutoff date, group) -> (item ids, start, truth [m, H], MASE scale [m]): the backtest's own folds."""
    table = {}
    for cutoff in cuts:
        fold = _fold_targets(panel, cutoff, HORIZON)
        key = panel.dates[cutoff].strftime("%Y-%m-%d")
        for group in groups:
            rows = fold.rows[group]
            start = np.full(len(rows), cutoff) if group == HISTORY else panel.start[rows]
            table[key, group] = (panel.item_ids[rows], start, fold.truth[group], fold.scale[group])
    return table


def align(panel: Panel, ids: np.ndarray, start: np.ndarray, forecasts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(forecast [m, H], own [m]) on the truth's items and steps; an item or cell a model did not
    forecast is 0; ``own`` says which items the model forecast itself (not its runner's fallback)."""
    pred = np.zeros((len(ids), HORIZON))
    own = np.zeros(len(ids), dtype=bool)
    if forecasts.empty:
        return pred, own
    position = pd.Series(np.arange(len(ids)), index=ids)
    k = position.reindex(forecasts["item_id"]).to_numpy()
    period = pd.Series(np.arange(panel.n_periods + 4 * HORIZON + 60),
                       index=panel.date_at(np.arange(panel.n_periods + 4 * HORIZON + 60)).strftime("%Y-%m-%d"))
    col = period.reindex(forecasts["date"]).to_numpy()
    ok = ~np.isnan(k) & ~np.isnan(col)
    step = np.where(ok, np.nan_to_num(col) - start[np.nan_to_num(k).astype(int)], -1)
    ok &= (step >= 0) & (step < HORIZON)
    pred[k[ok].astype(int), step[ok].astype(int)] = forecasts["units"].to_numpy()[ok]
    fallback = (forecasts["fallback"].fillna(False).astype(bool).to_numpy() if "fallback" in forecasts
                else np.zeros(len(forecasts), dtype=bool))
    own[k[ok & ~fallback].astype(int)] = True
    return pred, own


def score_all(dataset: str, panel: Panel, truth: dict, forecasts: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Metrics of every model, group and seed: pooled over origins (cutoff "all") and per origin;
    per-step WAPE of the pooled ones."""
    rows_out, steps_out = [], []
    if forecasts.empty:
        return rows_out, steps_out
    for (model, group, seed), part in forecasts.groupby(["model", "group", "seed"]):
        pooled = []
        for (cutoff, g), (ids, start, y, scale) in truth.items():
            if g != group:
                continue
            pred, own = align(panel, ids, start, part[part["cutoff"] == cutoff])
            pooled.append((y, pred, scale, own))
            rows_out.append(_score_row(dataset, model, group, seed, cutoff, y, pred, scale, own))
        if pooled:
            y, f, s, own = (np.concatenate(x) for x in zip(*pooled))
            rows_out.append(_score_row(dataset, model, group, seed, "all", y, f, s, own))
            for h, m in enumerate(score_by_step(y, f), 1):
                steps_out.append({"dataset": dataset, "model": model, "group": group, "seed": seed, "step": h,
                                  "wape": m["wape"]})
    return rows_out, steps_out


def _score_row(dataset, model, group, seed, cutoff, y, f, scale, own) -> dict:
    metrics = score(y, f, scale if group == HISTORY else None)
    return {"dataset": dataset, "model": model, "group": group, "seed": seed, "cutoff": cutoff, **metrics,
            "coverage": round(float(own.mean()), 3) if len(own) else float("nan")}


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
def pooled(summary: pd.DataFrame) -> pd.DataFrame:
    """Pooled-over-origins rows, averaged over seeds, with each seed's WAPE beside the mean."""
    rows = summary[summary["cutoff"] == "all"]
    keys = ["dataset", "group", "model", "source"]
    mean = rows.groupby(keys, dropna=False).mean(numeric_only=True).drop(columns="seed", errors="ignore")
    per_seed = rows.pivot_table(index=keys, columns="seed", values="wape", dropna=False)
    per_seed.columns = [f"wape_seed{int(c)}" for c in per_seed.columns]
    return mean.join(per_seed).reset_index()


def validation_choice(dataset: str, group: str, stem: str = "fusion") -> str:
    """Which of a model's prediction variants (``fusion``, ``fusion:average_text_new``) won on the validation
    split (benchmark_validation.json), as `fit` chooses on its own origins; the plain model without one."""
    path = RESULTS / "benchmark_validation.json"
    if not path.exists():
        return stem
    rows = pd.DataFrame(json.loads(path.read_text())["pooled"])
    rows = rows[(rows.dataset == dataset) & (rows.group == group) & rows.model.str.split(":").str[0].eq(stem)]
    return rows.sort_values("wape").model.iloc[0] if len(rows) else stem


def targets(table: pd.DataFrame, scaling: list[dict], tag: str = "") -> list[dict]:
    """Issue #11's targets, on seed-averaged pooled WAPE; fusion is the variant chosen on validation. In an
    ablation named ``tag`` our models are ``MODEL@TAG``: its targets are those models' (peers keep their names)."""
    def best(dataset, group, keep) -> pd.Series | None:
        part = table[(table.dataset == dataset) & (table.group == group) & keep]
        return part.sort_values("wape").iloc[0] if len(part) else None

    def model(dataset, group, name) -> pd.Series | None:
        if name == "fusion":
            name = validation_choice(dataset, group)
        if tag and name != MEAN_LAUNCH_CURVE:
            name = f"{name}@{tag}"
        return best(dataset, group, table.model == name)

    out = []
    peer = table.source == "peer"
    for dataset, group, factor in (("visuelle", NEW, 0.90), ("online_retail", HISTORY, 0.85),
                                   ("online_retail", NEW, 0.90)):
        fusion, rival = model(dataset, group, "fusion"), best(dataset, group, peer)
        if fusion is not None and rival is not None:
            out.append(_target(f"{dataset} {group}: {fusion.model} WAPE <= {factor:.2f} x best peer", fusion.wape,
                               factor * rival.wape, f"best peer {label(rival.model)} {rival.wape:.3f}"))
    curve, fusion = model("visuelle", NEW, MEAN_LAUNCH_CURVE), model("visuelle", NEW, "fusion")
    if curve is not None and fusion is not None:
        out.append(_target(f"visuelle new: {fusion.model} below the mean launch curve", fusion.wape, curve.wape,
                           f"mean launch curve {curve.wape:.3f}", strict=True))
    fusion = model("online_retail", HISTORY, "fusion")
    if fusion is not None:
        out.append(_target("online_retail history: |bias| <= 10%", abs(fusion.bias), 0.10, f"bias {fusion.bias:+.3f}"))
    for dataset, group, factor in (("online_retail", NEW, 0.90), ("visuelle", NEW, 0.90),
                                   ("online_retail", HISTORY, 1.0)):
        fusion, sequence = model(dataset, group, "fusion"), model(dataset, group, "sequence")
        if fusion is not None and sequence is not None:
            out.append(_target(f"text earns its place, {dataset} {group}: {fusion.model} <= {factor:.2f} x sequence",
                               fusion.wape, factor * sequence.wape, f"sequence {sequence.wape:.3f}"))
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
                 meta: dict) -> Path:
    """Write the run's tables (json, md, plot); returns the markdown's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = pooled(summary)
    table.insert(table.columns.get_loc("model") + 1, "label", table["model"].map(label))
    goals = targets(table, scaling, meta.get("tag", "")) if meta["split"] == "reported" else []
    suffix = "" if meta["split"] == "reported" else "_validation"
    if meta.get("tag"):  # an ablation: its own files, the benchmark's stay as they are
        _report_dir(meta).mkdir(parents=True, exist_ok=True)
        suffix = f"_{meta['split']}_{meta['datasets'].replace(',', '+')}"
    payload = {"meta": meta, "pooled": table.to_dict("records"), "rows": summary.to_dict("records"),
               "per_step": steps, "timings": timings, "scaling": scaling, "profile": profile, "targets": goals}
    (_report_dir(meta) / f"benchmark{suffix}.json").write_text(json.dumps(payload, indent=2, default=_json) + "\n")
    seeds = sorted(int(s) for s in summary["seed"].dropna().unique())
    lines = ["# Benchmark results", "", f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; "
             f"date {meta['date']}; split **{meta['split']}**; seeds {meta['seeds']}; horizon {HORIZON} weeks.", "",
             "WAPE = Σ|error| / Σ actual over all scored cells (lower is better), pooled over the split's origins "
             "and averaged over seeds. All models scored by the same code on the same cells; `coverage` is the "
             "share of target items a model forecast itself (a peer's runner fallback does not count), missing "
             "items score as 0.", ""]
    seed_cols = " | ".join(f"WAPE seed {s}" for s in seeds)
    for (dataset, group), part in table.groupby(["dataset", "group"], sort=True):
        lines += [f"## {dataset} — {'items with history' if group == HISTORY else 'new products'}", "",
                  f"| model | source | WAPE (mean) | {seed_cols} | MAE | MASE | bias | coverage | fit+predict s "
                  "| peak RSS MB |", "|---|---|---|" + "---|" * len(seeds) + "---|---|---|---|---|---|"]
        for r in part.sort_values("wape").to_dict("records"):
            per = " | ".join(_f(r.get(f"wape_seed{s}")) for s in seeds)
            lines.append(f"| {r['label']} | {r['source']} | {_f(r['wape'])} | {per} | {_f(r['mae'])} | "
                         f"{_f(r['mase'])} | {_f(r['bias'])} | {_f(r['coverage'])} | {_f(r.get('seconds'), 0)} | "
                         f"{_f(r.get('peak_rss_mb'), 0)} |")
        lines += ["", *per_origin_lines(summary, dataset, group), ""]
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(table.groupby(["dataset", "group"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    colours = {"forecast": "tab:blue", "peer": "tab:orange", "reference": "tab:green", "literature": "tab:gray"}
    for ax, ((dataset, group), part) in zip(axes.flat, panels):
        part = part.sort_values("wape")
        ax.barh(part["model"], part["wape"], color=[colours.get(s, "k") for s in part["source"]])
        ax.invert_yaxis()
        ax.set_title(f"{dataset}: {group}", fontsize=9)
        ax.set_xlabel("WAPE (mean over seeds)")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
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
        fig.savefig(RESULTS / "scaling_online_retail.png", dpi=90)
        plt.close(fig)


# --- main --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "MODEL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--datasets", default="online_retail,visuelle")
    parser.add_argument("--models", help="subset of our models to run")
    parser.add_argument("--split", choices=SPLITS, default="reported",
                        help="validation: where settings are chosen; reported: the README figures (run once)")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)  # the child's seed
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds; every model runs with each")
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
    parser.add_argument("--scaling-sizes", default="500,1000,2000,3571")
    parser.add_argument("--only-scaling", action="store_true",
                        help="just the scaling runs, written to results/scaling.{json,md} and scaling.png")
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
    rows, steps, timings = [], [], {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for dataset in args.datasets.split(","):
            panel = load(dataset, args.split)
            cuts = cutoffs_of(dataset, panel, args.split)
            print(f"[{dataset}] {args.split} cut-offs {[str(panel.dates[c].date()) for c in cuts]}", flush=True)
            models = [m for m in OURS[dataset] if not args.models or m in args.models.split(",")]
            truth = truth_table(panel, cuts, groups_of(dataset))
            timings[dataset] = {}
            frames = [mean_launch_curve(panel, cuts).assign(source="reference", seed=seeds[0])]
            for seed in seeds:
                ours, t_ours = run_ours(dataset, models, seed, args.split, cutoff_dates(panel, cuts),
                                        args.reuse_ours, args.set, args.tag)
                frames.append(ours.assign(source="forecast", seed=seed))
                peers, t_peers = (pd.DataFrame(), {}) if args.skip_peers else run_peers(
                    dataset, panel, cuts, tmp, seed, args.split, args.reuse_peers)
                frames.append(peers.assign(source="peer", seed=seed))
                timings[dataset][seed] = {"forecast": t_ours, "peers": t_peers}
            for frame in frames:
                if frame.empty:
                    continue
                scored, per_step = score_all(dataset, panel, truth, frame)
                rows += [r | {"source": frame["source"].iloc[0]} for r in scored]
                steps += per_step
        summary = pd.DataFrame(rows)
        summary["seconds"] = [_timing(timings, r, "seconds") for r in summary.itertuples()]
        summary["peak_rss_mb"] = [_timing(timings, r, "peak_rss_mb") for r in summary.itertuples()]
        literature = [r | {"source": "literature", "cutoff": "all", "seed": seeds[0]} for r in LITERATURE
                      if r["dataset"] in args.datasets and args.split == "reported"]
        summary = pd.concat([summary, pd.DataFrame(literature)], ignore_index=True)
        scaling = [] if args.skip_scaling else run_scaling([int(s) for s in args.scaling_sizes.split(",")], tmp,
                                                          seeds[0])
    profile = [] if args.skip_profile else run_profile(seeds[0])
    meta = {"command": "python " + " ".join(["experiments/benchmark.py", *sys.argv[1:]]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "seeds": seeds, "split": args.split,
            "date": time.strftime("%Y-%m-%d"), "tag": args.tag, "overrides": overrides, "datasets": args.datasets}
    print(write_report(summary, steps, timings, scaling, profile, meta).read_text())


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
    model, _, tag = r.model.partition("@")
    name = model.split(":")[0] + (f"@{tag}" if tag else "")  # a variant: its model's timing
    t = timings.get(r.dataset, {}).get(r.seed, {}).get(side, {}).get(name, {})
    if key == "seconds":
        return t.get("fit_predict_seconds", (t.get("fit_seconds") or 0) + (t.get("predict_seconds") or 0) or None)
    return t.get(key)


if __name__ == "__main__":
    main()
