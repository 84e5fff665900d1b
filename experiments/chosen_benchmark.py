"""The forecast ``fit`` chooses, measured: issue #22's targets for what a user actually gets.

    python experiments/chosen_benchmark.py run --dataset online_retail --split reported --seed 0
    python experiments/chosen_benchmark.py references --split reported
    python experiments/chosen_benchmark.py cli-check --dataset online_retail --items 300 --seed 0
    python experiments/chosen_benchmark.py report --split reported

``benchmark.py`` backtests each model on its own; ``fit`` backtests them all on its own rolling origins,
chooses per item group (often the ``ensemble``, sometimes fusion or a reference) and exports that. Here,
at each outer origin of a split (common.cutoffs_of), the package gets exactly the data known then
(``Panel.truncate``, as the backtest cuts it) and runs its own fit path with the DEFAULT config
(common.chosen_forecast: ``forecast.pipeline.plan`` + ``refit``, no MLflow), one seed per process; its
export for the fold's items (history items and the products launching in the horizon) is the arm
``chosen``, scored by common.score_all / item_errors like every row of benchmark.md. Each (data set,
split, seed, origin) is cached in experiments/.cache/chosen/ as soon as it is done, so a stopped run
loses nothing and ``report`` writes what is there (it says how many seeds).

``references`` runs the deterministic references through benchmark.py's own child process (one model
per child, seed 0, cached as benchmark.py caches them); ``cli-check`` runs ``python -m forecast fit`` on
the tables of one origin of a small subset and compares its export with this arm's forecast there.
``report`` writes experiments/results/chosen_<split>.{md,json} (reported: chosen.{md,json}).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import (  # noqa: E402
    CACHE, CHOSEN, DATA, HORIZON, MEAN_LAUNCH_CURVE, RESULTS, ROOT, align_columns, cached, chosen_forecast,
    cutoff_dates, cutoffs_of, export_long_frame, fit_config, groups_of, item_errors, load, mean_launch_curve,
    panel_tables, score_all, label, targets, truth_table, wape_bars)
from experiments.protocol import (  # noqa: E402
    LEVEL, MIN_SEEDS, SEED_AVERAGE_SUFFIX, is_reference, mean_over_seeds, paired_bootstrap, seed_average)
from forecast.evaluation.intervals import band_coverage, range_columns  # noqa: E402
from forecast.evaluation.metrics import coverage, interval_width, msis, wql  # noqa: E402
from forecast.models.base import HISTORY  # noqa: E402

CHOSEN_CACHE = CACHE / "chosen"


SIGNALS_CACHE = CACHE / "chosen_signals"  # the arm of a user who passes --signals (its own cache)


def cache_path(dataset: str, split: str, seed: int, cutoff: str, folder: Path = CHOSEN_CACHE) -> Path:
    """Where one (data set, split, seed, origin) fit's export rows go; its ``.json`` beside it marks it done."""
    return folder / f"{dataset}_{split}_{seed}_{cutoff}.csv"


def run(dataset: str, split: str, seed: int, signals: str | None = None) -> None:
    """Every origin of the split not yet cached: fit's own path on the data known then, one after another.
    ``signals``: as ``fit --signals PATH`` (e.g. visuelle's gtrends.csv), cached in SIGNALS_CACHE."""
    folder = SIGNALS_CACHE if signals else CHOSEN_CACHE
    folder.mkdir(parents=True, exist_ok=True)
    panel = load(dataset, split)
    cuts = cutoffs_of(dataset, panel, split)
    cfg = fit_config(dataset, seed)
    if signals:
        from forecast.data.signals import attach_signals

        cfg = cfg.updated({"data.signals": signals})
        panel = attach_signals(panel, signals)
    for cutoff, date in zip(cuts, cutoff_dates(panel, cuts)):
        out = cache_path(dataset, split, seed, date, folder)
        meta_path = Path(str(out) + ".json")
        if meta_path.exists():
            print(f"[{dataset} {split} seed {seed}] {date}: cached", flush=True)
            continue
        print(f"[{dataset} {split} seed {seed}] {date}: fit ...", flush=True)
        tic, cpu = time.perf_counter(), time.process_time()
        export, meta = chosen_forecast(panel, cutoff, cfg)
        seconds = time.perf_counter() - tic
        frame = export_long_frame(panel, cutoff, export)
        partial = out.with_suffix(".partial")
        frame.to_csv(partial, index=False)
        partial.replace(out)
        meta |= {"dataset": dataset, "split": split, "seed": seed, "cutoff": date, "wall_seconds": round(seconds, 1),
                 "cpu_seconds_main_process": round(time.process_time() - cpu, 1), "rows": len(frame)}
        meta_path.write_text(json.dumps(meta, indent=1))
        print(f"[{dataset} {split} seed {seed}] {date}: chosen {meta['chosen']} in {seconds:.0f} s", flush=True)


# --- the references, through benchmark.py's own child process ---------------------------------
REFERENCES = {
    "online_retail": ["seasonal_naive", "moving_average", "imapa", "croston", "tsb", "knn", "launch_curve",
                      "launch_boosting"],
    "visuelle": ["knn", "launch_curve", "launch_boosting"],
}


def reference_path(dataset: str, split: str, model: str) -> Path:
    """benchmark.py's cache name for a model's seed-0 forecasts (so either script reuses the other's)."""
    return CACHE / f"ours_{dataset}_{split}_0_{model}.csv"


def references(datasets: list[str], split: str) -> None:
    """Each reference backtested alone on the split's origins by ``benchmark.py --child`` (seed 0: they are
    deterministic), skipped when its forecasts for exactly these cut-offs are cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        panel = load(dataset, split)
        dates = cutoff_dates(panel, cutoffs_of(dataset, panel, split))
        for model in REFERENCES[dataset]:
            out = reference_path(dataset, split, model)
            if Path(str(out) + ".json").exists() and cached(out, dates) is not None:
                print(f"[{dataset} {split}] {model}: cached", flush=True)
                continue
            print(f"[{dataset} {split}] {model} ...", flush=True)
            subprocess.run([sys.executable, str(ROOT / "experiments" / "benchmark.py"), "--child", dataset, model,
                            str(out), "--seed", "0", "--split", split], check=True)


# --- the cheap peers (their own venv: bash experiments/peers/setup.sh) -------------------------------
PEERS = ROOT / "experiments" / "peers"
CHEAP_PEERS = {"online_retail": "lgbm,autoets,autotheta,croston,adida,imapa,lgbm_new_text,ridge_new_text",
               "visuelle": "lgbm_new_onehot,lgbm_new_text,ridge_new_text"}  # no TFT/DeepAR: hours on 2 cores


def peer_dir(dataset: str, split: str, seed: int) -> Path:
    return CACHE / f"peers_{dataset}_{split}_{seed}_cheap"


def peers(datasets: list[str], split: str, seed: int = 0) -> None:
    """The cheap peers (run_peers.py, CHEAP_PEERS) at the split's origins on exactly the panel's rows
    (common.panel_tables), with the package's description embeddings for the text peers; cached."""
    from forecast.models.encoders.text import embed_texts

    python = PEERS / ".venv" / "bin" / "python"
    for dataset in datasets:
        panel = load(dataset, split)
        dates = cutoff_dates(panel, cutoffs_of(dataset, panel, split))
        out = peer_dir(dataset, split, seed)
        if cached(out / "forecasts.csv", dates) is not None:
            print(f"[{dataset} {split}] peers: cached", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            panel_tables(panel, tmp / "sales.csv", tmp / "products.csv")
            cmd = [str(python), str(PEERS / "run_peers.py"), "--sales", str(tmp / "sales.csv"), "--products",
                   str(tmp / "products.csv"), "--horizon", str(HORIZON), "--out", str(out), "--seed", str(seed),
                   "--cutoffs", ",".join(dates), "--models", CHEAP_PEERS[dataset]]
            if "_text" in CHEAP_PEERS[dataset]:
                np.savez(tmp / "embeddings.npz", item_id=panel.item_ids.astype(str),
                         embedding=embed_texts(panel.descriptions))
                cmd += ["--embeddings", str(tmp / "embeddings.npz")]
            print(f"[{dataset} {split}] peers {CHEAP_PEERS[dataset]} ...", flush=True)
            subprocess.run(cmd, check=True)


def peer_frames(dataset: str, split: str, dates: list[str], seed: int = 0) -> pd.DataFrame:
    """The cached cheap peers' forecasts (source "peer"), or an empty frame when they were not run."""
    frame = cached(peer_dir(dataset, split, seed) / "forecasts.csv", dates)
    return pd.DataFrame() if frame is None else frame.assign(seed=seed, source="peer")


# --- the CLI check -------------------------------------------------------------------------------
def cli_check(dataset: str, items: int, seed: int, split: str = "reported") -> dict:
    """This arm against ``python -m forecast fit`` on the same data: a seeded subset of ``items`` products,
    the split's first origin; the CLI gets the tables known then (sales before the cut-off; the products
    with, for those first sold from the cut-off on, that first week as ``launch_date``, which is how
    ``Panel.truncate`` places a launch). Writes experiments/results/chosen_cli_check.json."""
    from forecast.data.loading import load_panel

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = DATA / dataset
        products = pd.read_csv(base / "products.csv", dtype=str, keep_default_na=False)
        sales = pd.read_csv(base / "sales.csv", dtype={"item_id": str})
        keep = np.sort(np.random.default_rng(seed).choice(len(products), min(items, len(products)), replace=False))
        products = products.iloc[keep]
        sales = sales[sales["item_id"].isin(set(products["item_id"]))]
        products.to_csv(tmp / "products_all.csv", index=False)
        sales.to_csv(tmp / "sales_all.csv", index=False)
        cfg = fit_config(dataset, seed)
        panel = load_panel(cfg.updated({"data.sales": str(tmp / "sales_all.csv"),
                                        "data.products": str(tmp / "products_all.csv")}))
        cutoff = cutoffs_of(dataset, panel, split)[0]
        date = panel.dates[cutoff]
        tic = time.perf_counter()
        export, meta = chosen_forecast(panel, cutoff, cfg)
        arm_seconds = time.perf_counter() - tic
        ours = export_long_frame(panel, cutoff, export)
        first = sales.groupby("item_id")["date"].min()
        launches = first[pd.to_datetime(first) >= date]
        products.assign(launch_date=products["item_id"].map(launches).fillna("")).to_csv(tmp / "products.csv",
                                                                                         index=False)
        sales[pd.to_datetime(sales["date"]) < date].to_csv(tmp / "sales.csv", index=False)
        series_end = cfg.data.series_end
        cmd = [sys.executable, "-m", "forecast", "fit", "--sales", "sales.csv", "--products", "products.csv",
               "--seed", str(seed), "--horizon", str(cfg.evaluation.horizon), "--negative-units", "zero",
               "--series-end", series_end, "--no-progress", "--export", "export.csv",
               "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", "--checkpoint-dir", str(tmp / "checkpoints")]
        tic = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        cli_seconds = time.perf_counter() - tic
        if proc.returncode != 0:
            raise SystemExit(f"the CLI failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        theirs = export_long_frame(panel, cutoff, pd.read_csv(tmp / "export.csv", dtype={"item_id": str}))
    keys = ["item_id", "date"]
    both = ours.merge(theirs, on=keys, how="outer", suffixes=("_arm", "_cli"), indicator=True)
    matched = both[both["_merge"] == "both"]
    values = ["units", *[c for c in ours.columns if c.startswith("units_p")]]
    result = {"dataset": dataset, "items": int(len(products)), "seed": seed, "cutoff": str(date.date()),
              "command": "python " + " ".join(cmd[1:]), "arm_chosen": meta["chosen"],
              "cli_chosen": theirs.groupby("group")["exported"].first().to_dict(),
              "rows_arm": len(ours), "rows_cli": len(theirs), "rows_matched": len(matched),
              "max_abs_difference": {c: float(np.max(np.abs(matched[f"{c}_arm"] - matched[f"{c}_cli"])))
                                     if len(matched) else None for c in values},
              "arm_seconds": round(arm_seconds, 1), "cli_seconds": round(cli_seconds, 1)}
    result["equal"] = bool(len(matched) == len(ours) == len(theirs)
                           and all(v == 0.0 for v in result["max_abs_difference"].values()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chosen_cli_check.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


# --- the report ----------------------------------------------------------------------------------
def cached_arm(dataset: str, split: str, dates: list[str],
               folder: Path = CHOSEN_CACHE) -> tuple[pd.DataFrame, list[dict], list[int]]:
    """(the chosen arm's rows of every seed done on every origin, every fit's meta, the seeds done), from
    ``folder`` (the arm's cache; another folder holds the same arm run by other code)."""
    metas = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{dataset}_{split}_*.csv.json"))]
    metas = [m for m in metas if m["cutoff"] in dates]
    seeds = sorted(s for s in {m["seed"] for m in metas}
                   if {m["cutoff"] for m in metas if m["seed"] == s} == set(dates))
    frames = [pd.read_csv(folder / cache_path(dataset, split, s, d).name, dtype={"item_id": str})
              .assign(seed=s, source="forecast") for s in seeds for d in dates]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), metas, seeds


def reference_frames(dataset: str, split: str, dates: list[str]) -> pd.DataFrame:
    """The cached references' forecasts (model and variants), seed 0; a reference not run is left out."""
    frames = [cached(reference_path(dataset, split, m), dates) for m in REFERENCES[dataset]]
    frames = [f.assign(seed=0, source="forecast") for f in frames if f is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise(scored: pd.DataFrame) -> pd.DataFrame:
    """Pooled rows per data set, group, model and source: seed-mean metrics, each seed's WAPE, the spread."""
    rows = scored[scored["cutoff"] == "all"]
    keys = ["dataset", "group", "model", "source"]
    out = rows.groupby(keys)[["wape", "bias", "mae", "mase"]].mean()
    wape = rows.groupby(keys)["wape"]
    out["seeds"] = wape.count()
    out["seed_spread"] = (wape.max() - wape.min()).where(out["seeds"] > 1)
    out["per_seed"] = wape.apply(lambda w: [round(float(v), 4) for v in w])
    per_seed_bias = rows.groupby(keys)["bias"].apply(lambda b: [round(float(v), 4) for v in b])
    return out.join(per_seed_bias.rename("bias_per_seed")).reset_index()


def ranges_of(columns: list[str]) -> list[tuple[str, str, float]]:
    """Every (lower column, upper column, level) among an export's columns: 80 % and 90 % when fit ran
    with ``--interval 0.8,0.9`` (common.fit_config)."""
    found, rest = [], list(columns)
    while (pair := range_columns(rest)) is not None:
        found.append(pair)
        rest.remove(pair[0])
    return found


def range_scores(panel, truth: dict, arm: pd.DataFrame, dataset: str) -> list[dict]:
    """The chosen forecast's exported ranges per group, seed and level, pooled over origins: coverage, mean
    width, WQL and MSIS (history items: their MASE scale), and per volume band
    (forecast.evaluation.intervals.band_coverage: quintiles of the forecast level and the top 5 %)."""
    out = []
    for low_col, high_col, level in ranges_of(list(arm.columns)) if not arm.empty else []:
        for (group, seed), part in arm.groupby(["group", "seed"]):
            ys, scales, aligned = [], [], []
            for (cutoff, g), (ids, start, y, scale) in truth.items():
                if g != group:
                    continue
                ys.append(y)
                scales.append(scale)
                aligned.append(align_columns(panel, ids, start, part[part["cutoff"] == cutoff],
                                             ("units", low_col, high_col)))
            f, lo, hi = (np.concatenate(column) for column in zip(*aligned))
            y, scale = np.concatenate(ys), np.concatenate(scales)
            out.append({"dataset": dataset, "group": group, "seed": int(seed), "level": level, "band": "all",
                        "coverage": coverage(y, lo, hi), "width": interval_width(y, lo, hi),
                        "wql": wql(y, {(1 - level) / 2: lo, (1 + level) / 2: hi}),
                        "msis": msis(y, lo, hi, level, scale) if group == HISTORY else float("nan"),
                        "n": int(np.isfinite(y).sum())})
            out += [{"dataset": dataset, "group": group, "seed": int(seed), "level": level, "band": b["band"],
                     "coverage": b["coverage"], "width": b["width"], "mean_forecast": b["mean_forecast"],
                     "zero_share": b["zero_share"], "n": b["n"]}
                    for b in band_coverage(y, f, {level: (lo, hi)})]
    return out


def collect(split: str, datasets: list[str]) -> dict:
    """Everything the report says, from the caches: scores, seeds, choices, comparisons, targets, ranges."""
    rows, errors, choices, ranges, seeds_done, comparisons, fold_bands = [], [], [], [], {}, [], []
    for dataset in datasets:
        panel = load(dataset, split)
        cuts = cutoffs_of(dataset, panel, split)
        dates = cutoff_dates(panel, cuts)
        truth = truth_table(panel, cuts, groups_of(dataset))
        arm, metas, seeds = cached_arm(dataset, split, dates)
        if not arm.empty:  # visuelle scores its launches only (common.groups_of)
            arm = arm[arm["group"].isin(groups_of(dataset))]
        seeds_done[dataset] = {"complete": seeds, "fits": len(metas), "origins": dates}
        choices += [{k: m[k] for k in ("dataset", "seed", "cutoff", "chosen", "ensemble", "wall_seconds")}
                    for m in metas]
        fold_bands += [{"dataset": dataset} | row for m in metas for row in m.get("bands", [])]
        frames = [arm, reference_frames(dataset, split, dates), peer_frames(dataset, split, dates),
                  mean_launch_curve(panel, cuts).assign(source="reference", seed=0)]
        frames = [f for f in frames if not f.empty]
        if arm.empty:
            continue
        forecasts = pd.concat(frames, ignore_index=True)
        point = ["cutoff", "model", "group", "item_id", "date", "units", "seed", "source"]  # seeds differ in the rest
        forecasts = pd.concat([forecasts, seed_average(arm[point])], ignore_index=True)
        for source, frame in forecasts.groupby("source", sort=False):
            scored, _ = score_all(dataset, panel, truth, frame)
            rows += [r | {"source": source} for r in scored]
            errors.append(item_errors(dataset, panel, truth, frame).assign(source=source))
        ranges += range_scores(panel, truth, arm, dataset)
    scored = pd.DataFrame(rows)
    errors = pd.concat(errors, ignore_index=True) if errors else pd.DataFrame()
    table = summarise(scored) if len(scored) else pd.DataFrame()
    by_origin = (scored[scored["cutoff"] != "all"].groupby(["dataset", "group", "model", "source", "cutoff"])
                 [["wape", "bias"]].mean().reset_index()) if len(scored) else pd.DataFrame()
    goals = targets(table, [], origins=by_origin, chosen={k: CHOSEN for k in
                                                          table.groupby(["dataset", "group"]).groups}) if len(
        table) else []
    for (dataset, group), part in (table.groupby(["dataset", "group"]) if len(table) else []):
        comparisons += compare(dataset, group, part, errors)
    return {"split": split, "seeds": seeds_done, "table": table, "by_origin": by_origin, "targets": goals,
            "choices": choices, "comparisons": comparisons, "ranges": ranges, "fold_bands": fold_bands}


def compare(dataset: str, group: str, part: pd.DataFrame, errors: pd.DataFrame) -> list[dict]:
    """Paired 90 % bootstrap (protocol.paired_bootstrap) of the chosen forecast (seeds averaged per item, and
    the seed-average forecast) against the best reference, pooled over origins; for visuelle also against
    the mean launch curve on each origin."""
    arms = errors[(errors["dataset"] == dataset) & (errors["group"] == group)]

    def arm(model: str, cutoff: str | None = None, source: str = "forecast") -> pd.DataFrame:
        picked = arms[(arms["model"] == model) & (arms["source"] == source)]
        return mean_over_seeds(picked if cutoff is None else picked[picked["cutoff"] == cutoff])

    refs = part[[is_reference(m, s) for m, s in zip(part["model"], part["source"])]].sort_values("wape")
    out = []
    if refs.empty:
        return out
    best = refs.iloc[0]
    against = [((best["model"], best["source"]), None)]
    ours = refs[refs["source"] != "peer"]  # the best of the package's own references too, when a peer is best
    if best["source"] == "peer" and len(ours):
        against.append(((ours.iloc[0]["model"], ours.iloc[0]["source"]), None))
    if dataset == "visuelle":
        against += [((MEAN_LAUNCH_CURVE, "reference"), c) for c in sorted(arms["cutoff"].unique())]
    for candidate in (CHOSEN, CHOSEN + SEED_AVERAGE_SUFFIX):
        if candidate not in set(arms["model"]):
            continue
        for (reference, source), cutoff in against:
            result = paired_bootstrap(arm(candidate, cutoff), arm(reference, cutoff, source))
            out.append({"dataset": dataset, "group": group, "candidate": candidate,
                        "reference": label(reference, source),
                        "cutoff": cutoff or "all", **asdict(result)})
    return out


def _f(value, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def _interval(c: dict) -> str:
    return f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"


def markdown(found: dict, commands: list[str]) -> str:
    """The report: per data set and group the chosen forecast beside the references, what fit chose, the
    paired comparisons, the per-origin WAPE, the ranges, then the #22 targets and the CLI check."""
    table, split = found["table"], found["split"]
    lines = [f"# The forecast `fit` chooses — {split} split", "",
             "What `python -m forecast fit` exports (its own backtest's choice per item group), fitted with the "
             "default config at each outer origin on exactly the data known then, scored on the benchmark's "
             "cells by `experiments/common.py` (same scorer and truth as benchmark.md and references.md). "
             "WAPE = Σ|e|/Σy, bias = Σe/Σy, pooled over the split's origins; `chosen` = the export, mean over "
             "seeds; `chosen [seed avg]` = the mean of the seeds' exports scored as one forecast. References are "
             "deterministic (one run). Spread = max − min of the seeds' WAPE.", "", "Commands:", "", "```bash",
             *commands, "```", ""]
    for dataset, info in found["seeds"].items():
        short = len(info["complete"]) < MIN_SEEDS
        lines.append(f"- {dataset}: seeds complete on every origin {info['complete']} "
                     f"({info['fits']} fits cached; origins {', '.join(info['origins'])})"
                     + (f" — **partial: {len(info['complete'])} of the protocol's {MIN_SEEDS} seeds**" if short else ""))
        sources = set(table[table["dataset"] == dataset]["source"]) if len(table) else set()
        if "peer" in sources:
            lines.append(f"  - {dataset}: peers ({CHEAP_PEERS[dataset]}) run once, seed 0 (LightGBM is seeded; the "
                         "statsforecast models are deterministic); TFT and DeepAR not run")
        else:
            lines.append(f"  - {dataset}: no peer in this run (the targets' best reference is over the package's "
                         "references and the mean launch curve only)")
    lines.append("")
    for (dataset, group), part in (table.groupby(["dataset", "group"], sort=True) if len(table) else []):
        lines += [f"## {dataset} — {'items with history' if group == HISTORY else 'new products'}", "",
                  "| model | source | WAPE | spread | spread % of WAPE | WAPE per seed | bias | bias per seed | MASE |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in part.sort_values("wape").to_dict("records"):
            pct = 100 * r["seed_spread"] / r["wape"] if np.isfinite(r["seed_spread"]) else float("nan")
            per = ", ".join(f"{v:.3f}" for v in r["per_seed"]) if r["seeds"] > 1 else ""
            bias = ", ".join(f"{v:+.3f}" for v in r["bias_per_seed"]) if r["seeds"] > 1 else ""
            lines.append(f"| {label(r['model'], r['source'])} | {r['source']} | {_f(r['wape'])} | {_f(r['seed_spread'])} | {_f(pct, 1)} | "
                         f"{per} | {r['bias']:+.3f} | {bias} | {_f(r['mase'])} |")
        origin = found["by_origin"]
        at = origin[(origin.dataset == dataset) & (origin.group == group)]
        if at["cutoff"].nunique() > 1:
            pivot = at.pivot_table(index="model", columns="cutoff", values="wape")
            pivot = pivot.loc[pivot.mean(axis=1).sort_values().index]
            lines += ["", "WAPE per origin (seed mean):", "", "| model | " + " | ".join(pivot.columns) + " |",
                      "|---|" + "---|" * len(pivot.columns)]
            lines += [f"| {m} | " + " | ".join(_f(v) for v in row) + " |"
                      for m, row in zip(pivot.index, pivot.to_numpy())]
        comps = [c for c in found["comparisons"] if c["dataset"] == dataset and c["group"] == group]
        if comps:
            lines += ["", f"Paired comparisons (Δ = WAPE(candidate) − WAPE(reference), seeds averaged per item, "
                      f"[{LEVEL:.0%} bootstrap interval] over products and origins):", "",
                      "| candidate | reference | origin | WAPE candidate | WAPE reference | Δ [90 %] | ratio | "
                      "interval excludes 0 |", "|---|---|---|---|---|---|---|---|"]
            for c in comps:
                lines.append(f"| {c['candidate']} | {c['reference']} | {c['cutoff']} | {_f(c['wape_a'])} | "
                             f"{_f(c['wape_b'])} | {_interval(c)} | {c['wape_a'] / c['wape_b']:.3f} | "
                             f"{'yes' if c['high'] < 0 or c['low'] > 0 else 'no'} |")
        lines += ["", *choice_lines(found["choices"], dataset, group), ""]
        lines += [*range_lines(found["ranges"], dataset, group, found.get("fold_bands", [])), ""]
    if found["targets"]:
        lines += ["## Issue #22 targets (the chosen forecast, mean of the seeds above)", "",
                  "| target | value | bound | met | detail |", "|---|---|---|---|---|"]
        for g in found["targets"]:
            miss = "" if g["met"] else f" (misses by {g['margin']:+.1%})"
            target = g["target"].replace(CHOSEN + " ", "chosen forecast ").replace("|bias|", "abs(bias)")
            lines.append(f"| {target} | {g['value']} | {g['bound']} | "
                         f"{'met' if g['met'] else 'MISSED'} | {g['detail']}{miss} |")
        lines.append("")
    check = RESULTS / "chosen_cli_check.json"
    if check.exists():
        c = json.loads(check.read_text())
        lines += ["## Check: this arm = the CLI's export", "",
                  f"`python experiments/chosen_benchmark.py cli-check --dataset {c['dataset']} --items {c['items']} "
                  f"--seed {c['seed']}`: {c['items']} products of {c['dataset']}, origin {c['cutoff']}; the CLI "
                  f"(`{c['command']}`) on the tables known then against `chosen_forecast` on the truncated panel: "
                  f"rows {c['rows_arm']} (arm) / {c['rows_cli']} (CLI) / {c['rows_matched']} matched; chosen "
                  f"{c['arm_chosen']} / {c['cli_chosen']}; largest |difference| {c['max_abs_difference']}; "
                  f"**{'equal' if c['equal'] else 'NOT equal'}**.", ""]
    return "\n".join(lines)


def choice_lines(choices: list[dict], dataset: str, group: str) -> list[str]:
    """Which model fit chose for the group at each origin and seed (an ensemble with its members and weights)."""
    rows = sorted((c for c in choices if c["dataset"] == dataset and group in c["chosen"]),
                  key=lambda c: (c["cutoff"], c["seed"]))
    if not rows:
        return []
    lines = ["What `fit` chose (per origin and seed):", "", "| origin | seed | chosen | ensemble members (weights) | "
             "fit wall s |", "|---|---|---|---|---|"]
    for c in rows:
        weights = c["ensemble"].get(group)
        members = ", ".join(f"{m} {w:.2f}" for m, w in zip(weights["members"], weights["weights"])) if weights else ""
        lines.append(f"| {c['cutoff']} | {c['seed']} | {c['chosen'][group]} | {members} | {c['wall_seconds']:.0f} |")
    return lines


def ranges_by_origin(dataset: str, split: str, group: str, level: float = 0.8) -> None:
    """Per origin, the exported range's coverage per volume band on the later weeks (seed mean; in brackets
    the band's share of zero weeks), and beside it the range method fit chose and what its backtest held
    out for each band (the fits that kept it, common.chosen_bands): shows which origins a pooled miss
    comes from, and whether their folds saw it. Printed."""
    panel = load(dataset, split)
    cuts = cutoffs_of(dataset, panel, split)
    truth = truth_table(panel, cuts, (group,))
    arm, metas, seeds = cached_arm(dataset, split, cutoff_dates(panel, cuts))
    if not seeds:
        raise SystemExit(f"{CHOSEN_CACHE}: no {dataset} {split} seed done at every origin (run first)")
    exported = {lvl: (lo, hi) for lo, hi, lvl in ranges_of(list(arm.columns))}
    if level not in exported:
        raise SystemExit(f"the cached {dataset} {split} fits export no {level:.0%} range "
                         f"(they export: {', '.join(f'{lvl:.0%}' for lvl in exported) or 'none'})")
    low, high = exported[level]
    for (cutoff, _), (ids, start, y, _) in truth.items():
        later: dict[str, list[tuple[float, float]]] = {}
        for seed in seeds:
            part = arm[(arm["cutoff"] == cutoff) & (arm["group"] == group) & (arm["seed"] == seed)]
            f, lo, hi = align_columns(panel, ids, start, part, ("units", low, high))
            for row in band_coverage(y, f, {level: (lo, hi)}):
                later.setdefault(row["band"], []).append((row["coverage"], row["zero_share"]))
        kept = [r for m in metas if m["cutoff"] == cutoff for r in m.get("bands", [])
                if r["group"] == group and r["level"] == level]
        folds = pd.DataFrame(kept).groupby("band")["coverage"].mean() if kept else pd.Series(dtype=float)
        methods = sorted({r["method"] for r in kept})
        print(f"{dataset} {group} {cutoff} ({len(seeds)} seeds), {level:.0%} range; later weeks (zero share)"
              f" / fit's backtest folds{' with ' + ', '.join(methods) if methods else ''}:")
        print("  " + "  ".join(f"{band} {np.mean([c for c, _ in v]):.2f} ({np.mean([z for _, z in v]):.2f})"
                               f" / {_f(folds.get(band, float('nan')), 2) or '–'}" for band, v in later.items()))


def range_lines(ranges: list[dict], dataset: str, group: str, fold_bands: list[dict] = ()) -> list[str]:
    """The exported ranges' coverage and width per level, pooled and per volume band, mean over seeds;
    beside each band, the coverage fit's own backtest held out for it (``fold_bands``: common.chosen_bands
    of each fit, mean over the fits that kept it): a band covered too often on the later weeks but not on
    the folds is a shift the folds did not show, one covered too often on both a miscalibration."""
    frame = pd.DataFrame([r for r in ranges if r["dataset"] == dataset and r["group"] == group])
    folds = pd.DataFrame([r for r in fold_bands if r["dataset"] == dataset and r["group"] == group])
    held = folds.groupby(["level", "band"])["coverage"].mean() if not folds.empty else pd.Series(dtype=float)
    fits = folds.groupby(["level", "band"]).size().max() if not folds.empty else 0
    lines = []
    for level, part in (frame.groupby("level") if not frame.empty else []):
        mean = part.groupby("band", sort=False).mean(numeric_only=True)
        pooled = mean.loc["all"]
        msis_text = _f(pooled["msis"]) or "n/a (new products have no MASE scale)"
        lines += [f"The exported {level:.0%} range (units_p{round(50 * (1 - level)):g} to "
                  f"units_p{round(50 * (1 + level)):g}), mean over {part['seed'].nunique()} seed(s): coverage "
                  f"{pooled['coverage']:.3f}, mean width {pooled['width']:.2f}, WQL {_f(pooled['wql'])}, MSIS "
                  f"{msis_text}. Per volume band (quintiles of the forecast's level; top5 = the top 5 %, inside q5):",
                  "", "| band | coverage | " + (f"on fit's backtest folds ({fits} fits) | " if fits else "")
                  + "mean width | mean forecast | share of zero weeks | cells |", "|---" * (7 if fits else 6) + "|"]
        for band, r in mean.drop(index="all").iterrows():
            folded = f"{_f(held.get((level, band), float('nan'))) or '–'} | " if fits else ""
            lines.append(f"| {band} | {r['coverage']:.3f} | {folded}{r['width']:.2f} | "
                         f"{r['mean_forecast']:.2f} | {r['zero_share']:.2f} | {r['n']:.0f} |")
        lines.append("")
    return lines[:-1]


def write_report(split: str, datasets: list[str]) -> Path:
    """experiments/results/chosen[_validation].{md,json} from what the caches hold now."""
    found = collect(split, datasets)
    name = "chosen" if split == "reported" else f"chosen_{split}"
    commands = ["export PYTHONPATH=$PWD"]
    commands += [f"python experiments/chosen_benchmark.py run --dataset {d} --split {split} --seed SEED   # SEED = 0..4"
                 for d in datasets]
    commands += [f"python experiments/chosen_benchmark.py references --split {split} --datasets {','.join(datasets)}",
                 "python experiments/chosen_benchmark.py cli-check --dataset online_retail --items 300 --seed 0",
                 f"python experiments/chosen_benchmark.py report --split {split} --datasets {','.join(datasets)}"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(markdown(found, commands))
    if len(found["table"]):
        wape_bars(found["table"], RESULTS / f"{name}_wape.png", {"forecast": "tab:green", "peer": "tab:orange",
                                                                 "reference": "tab:gray"},
                  "WAPE (pooled over origins; blue: what fit exports)", width=5.5, highlight=CHOSEN)
    payload = {k: (v.to_dict("records") if isinstance(v, pd.DataFrame) else v) for k, v in found.items()}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1, default=_json) + "\n")
    return RESULTS / f"{name}.md"


def _json(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# --- a change to fit, paired: the arm run by this code against the same arm run by earlier code ---------
def compare_code(dataset: str, split: str, before: Path, now: Path = CHOSEN_CACHE) -> dict:
    """The chosen forecast now (experiments/.cache/chosen) against the one ``before`` holds (the same arm
    cached by earlier code), on the seeds both ran at every origin: each arm's seed-mean WAPE, spread and
    bias, and the paired difference (seeds averaged per item) with its 90 % bootstrap interval over
    products and origins, pooled and per origin. Appended to results/chosen_changes.json; printed."""
    panel = load(dataset, split)
    cuts = cutoffs_of(dataset, panel, split)
    dates = cutoff_dates(panel, cuts)
    truth = truth_table(panel, cuts, groups_of(dataset))
    arms = {name: cached_arm(dataset, split, dates, folder) for name, folder in (("now", now), ("before", before))}
    seeds = sorted(set(arms["now"][2]) & set(arms["before"][2]))
    if not seeds:
        raise SystemExit(f"no seed done at every origin of {dataset} {split} in both arms")
    out = {"dataset": dataset, "split": split, "seeds": seeds, "now": str(now), "before": str(before), "groups": {}}
    for group in groups_of(dataset):
        errors = {name: item_errors(dataset, panel, truth, arm[(arm["group"] == group) & arm["seed"].isin(seeds)])
                  for name, (arm, _, _) in arms.items()}
        per_seed = {name: e.groupby("seed").apply(lambda x: x["abs_error"].sum() / x["actual"].sum()).round(4).tolist()
                    for name, e in errors.items()}
        result = {"per_seed_wape": per_seed,
                  "spread_pct": {n: round(100 * (max(w) - min(w)) / np.mean(w), 1) for n, w in per_seed.items()}}
        for origin in ["all", *dates]:
            a, b = (mean_over_seeds(e if origin == "all" else e[e["cutoff"] == origin]) for e in
                    (errors["now"], errors["before"]))
            c = paired_bootstrap(a, b)
            result[origin] = {"wape_now": round(c.wape_a, 4), "wape_before": round(c.wape_b, 4),
                              "difference": round(c.difference, 4), "interval": [round(c.low, 4), round(c.high, 4)],
                              "bias_now": round(c.bias_a, 4), "bias_before": round(c.bias_b, 4),
                              "excludes_zero": c.excludes_zero}
        chosen = {name: sorted({f"{m['cutoff']}: {m['chosen']}" for m in metas if m["seed"] in seeds})
                  for name, (_, metas, _) in arms.items()}
        out["groups"][group] = result | {"chosen": chosen}
    path = RESULTS / "chosen_changes.json"
    history = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(history + [out], indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    one = verbs.add_parser("run", help="fit's own path at every origin of a split, one seed")
    one.add_argument("--dataset", required=True, choices=["online_retail", "visuelle"])
    one.add_argument("--split", default="reported", choices=["reported", "validation"])
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--signals", help="as fit --signals PATH (its own cache: experiments/.cache/chosen_signals)")
    refs = verbs.add_parser("references", help="the deterministic references via benchmark.py --child")
    refs.add_argument("--datasets", default="online_retail,visuelle")
    refs.add_argument("--split", default="reported", choices=["reported", "validation"])
    peer = verbs.add_parser("peers", help="the cheap peers (LightGBM, statsforecast) at the split's origins, seed 0")
    peer.add_argument("--datasets", default="online_retail,visuelle")
    peer.add_argument("--split", default="reported", choices=["reported", "validation"])
    check = verbs.add_parser("cli-check", help="this arm against python -m forecast fit on one origin of a subset")
    check.add_argument("--dataset", default="online_retail", choices=["online_retail", "visuelle"])
    check.add_argument("--items", type=int, default=300)
    check.add_argument("--seed", type=int, default=0)
    report = verbs.add_parser("report", help="write results/chosen[_SPLIT].{md,json} from the caches")
    report.add_argument("--datasets", default="online_retail,visuelle")
    report.add_argument("--split", default="reported", choices=["reported", "validation"])
    change = verbs.add_parser("compare", help="the arm now against the same arm cached by earlier code, paired")
    change.add_argument("--dataset", required=True, choices=["online_retail", "visuelle"])
    change.add_argument("--split", default="validation", choices=["reported", "validation"])
    change.add_argument("--before", type=Path, required=True, help="the earlier code's chosen cache folder")
    change.add_argument("--now", type=Path, default=CHOSEN_CACHE, help="the arm to compare (default: this code's)")
    by_origin = verbs.add_parser("ranges", help="the exported range's coverage per band at each origin, and its folds'")
    by_origin.add_argument("--dataset", required=True, choices=["online_retail", "visuelle"])
    by_origin.add_argument("--split", default="reported", choices=["reported", "validation"])
    by_origin.add_argument("--group", default="history", choices=["history", "new"])
    by_origin.add_argument("--level", type=float, default=0.8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.verb == "run":
        run(args.dataset, args.split, args.seed, args.signals)
    elif args.verb == "references":
        references(args.datasets.split(","), args.split)
    elif args.verb == "peers":
        peers(args.datasets.split(","), args.split)
    elif args.verb == "cli-check":
        cli_check(args.dataset, args.items, args.seed)
    elif args.verb == "compare":
        compare_code(args.dataset, args.split, args.before, args.now)
    elif args.verb == "ranges":
        ranges_by_origin(args.dataset, args.split, args.group, args.level)
    elif args.verb == "report":
        print(write_report(args.split, args.datasets.split(",")).read_text())


if __name__ == "__main__":
    main()
