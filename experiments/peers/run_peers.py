"""Run the peer-library contenders at each cut-off and write their forecasts.

Usage (from the repo root, in the peers venv made by experiments/peers/setup.sh):

    experiments/peers/.venv/bin/python experiments/peers/run_peers.py \
        --sales ../shared/data/online_retail/sales.csv \
        --products ../shared/data/online_retail/products.csv \
        --cutoffs 2011-06-20,2011-07-18 --horizon 12 --out out/peers_or \
        --embeddings emb.npz

Writes OUT/forecasts.csv (cutoff,model,group,item_id,date,units,fallback) and
OUT/timings.json. Scoring is left to the main benchmark so that every model,
peer or package, is judged by the same metric code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
# OpenMP threads that spin while waiting slow LightGBM down badly when another
# process shares the 2 cores; passive waiting degrades gracefully instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from peers_data import HISTORY, WEEK, Fold, load_dataset, make_fold  # noqa: E402

HISTORY_MODELS = ("lgbm", "autoets", "autotheta", "croston", "adida", "imapa", "tft", "deepar")
NEW_MODELS = ("lgbm_new_onehot", "lgbm_new_text", "ridge_new_text")
ALL_MODELS = HISTORY_MODELS + NEW_MODELS
TEXT_MODELS = ("lgbm_new_text", "ridge_new_text")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sales", required=True, type=Path)
    parser.add_argument("--products", required=True, type=Path)
    parser.add_argument("--cutoffs", required=True, help="comma-separated Mondays, each the first forecast week")
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--embeddings", help=".npz with item_id and embedding arrays (for the *_text models)")
    parser.add_argument("--models", default=",".join(ALL_MODELS), help=f"subset of {','.join(ALL_MODELS)}")
    parser.add_argument("--max-items", type=int, help="seeded sample of at most N history and N new items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="threads/processes per model (LightGBM, torch, statsforecast)")
    parser.add_argument("--peer-windows", type=int, default=48_000,
                        help="TFT/DeepAR training windows per epoch "
                        "(benchmark.py passes fusion's train.windows_per_epoch)")
    parser.add_argument("--peer-epochs", type=int, default=8,
                        help="TFT/DeepAR epochs (benchmark.py passes fusion's train.max_epochs)")
    parser.add_argument("--peer-hidden", type=int, default=64,
                        help="TFT/DeepAR hidden size (benchmark.py passes fusion's)")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(ALL_MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {','.join(ALL_MODELS)}")
    args.cutoffs = [pd.Timestamp(c) for c in args.cutoffs.split(",")]
    return args


# ----------------------------------------------------------------------- contenders
def contender_factory(name: str, seed: int, threads: int, embeddings: dict | None,
                      budget: dict | None = None) -> Callable[[], object]:
    """A zero-argument builder of a fresh model, imported lazily so that one
    library failing to import fails only its own contenders."""
    if name == "lgbm":
        from history_models import LightGBMHistory
        return lambda: LightGBMHistory(seed=seed, num_threads=threads)
    if name in ("autoets", "autotheta", "croston", "adida", "imapa"):
        from history_models import statsforecast_contenders
        return statsforecast_contenders(n_jobs=threads)[name]
    if name in ("tft", "deepar"):
        from neural_models import DeepARHistory, TFTHistory
        cls = TFTHistory if name == "tft" else DeepARHistory
        return lambda: cls(seed=seed, threads=threads, **(budget or {}))
    if name == "lgbm_new_onehot":
        from new_models import LightGBMNewOneHot
        return lambda: LightGBMNewOneHot(seed=seed, threads=threads)
    if name in TEXT_MODELS:
        if embeddings is None:
            raise ValueError("needs --embeddings")
        from new_models import LightGBMNewText, RidgeNewText
        cls = LightGBMNewText if name == "lgbm_new_text" else RidgeNewText
        return lambda: cls(embeddings, seed=seed, threads=threads)
    raise KeyError(name)


# -------------------------------------------------------------------------- memory
def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark so each model's peak is its own (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def peak_rss_mb() -> float:
    """VmHWM of this process: the peak resident memory since the last reset."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    """Resident memory now: what earlier models and imports already hold."""
    return _status_mb("VmRSS")


# ------------------------------------------------------------------------- running
def fill_gaps(values: np.ndarray, fold: Fold, group: str) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN forecasts (an item a library skipped) by a plain fallback and
    say which items: the item's mean of its last 8 weeks for history, 0 for new items."""
    missing = np.isnan(values)
    if missing.any():
        if group == HISTORY:
            recent = fold.units[:, -8:]
            level = np.nan_to_num(np.nanmean(np.where(np.isnan(recent), np.nan, recent), axis=1))
            values = np.where(missing, level[:, None], values)
        else:
            values = np.where(missing, 0.0, values)
    return np.clip(values, 0.0, None), missing.any(axis=1)


def forecast_frame(fold: Fold, model: str, group: str, values: np.ndarray, fallback: np.ndarray) -> pd.DataFrame:
    """Long rows cutoff,model,group,item_id,date,units,fallback for one model's [n, H] forecast
    (fallback: the row comes from the runner's fallback, not from the model)."""
    H = fold.horizon
    if group == HISTORY:
        ids = np.repeat(fold.history_ids, H)
        dates = np.tile(fold.history_dates().to_numpy(), len(fold.history_ids))
    else:
        ids = np.repeat(fold.new_ids, H)
        dates = (pd.DatetimeIndex(np.repeat(fold.new_launch.to_numpy(), H))
                 + pd.to_timedelta(np.tile(np.arange(H), len(fold.new_ids)) * 7, unit="D")).to_numpy()
    return pd.DataFrame({
        "cutoff": fold.cutoff.date().isoformat(), "model": model, "group": group, "item_id": ids,
        "date": pd.DatetimeIndex(dates).strftime("%Y-%m-%d"), "units": values.reshape(-1),
        "fallback": np.repeat(fallback, H),
    })


def run_one(name: str, make: Callable[[], object], fold: Fold) -> tuple[pd.DataFrame, dict]:
    """Fit and predict one contender at one cut-off, timing each half."""
    reset_peak_rss()
    rss_before = rss_mb()
    model = make()
    tic = time.perf_counter()
    model.fit(fold)
    fit_seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    values = np.asarray(model.predict(fold), dtype=float)
    predict_seconds = time.perf_counter() - tic
    expected = (len(fold.history_ids) if model.group == HISTORY else len(fold.new_ids), fold.horizon)
    if values.shape != expected:
        raise ValueError(f"forecast shape {values.shape}, expected {expected}")
    values, fallback = fill_gaps(values, fold, model.group)
    timing = {"fit_seconds": round(fit_seconds, 2), "predict_seconds": round(predict_seconds, 2),
              "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before,
              "items": expected[0], "items_fallback": int(fallback.sum())}
    if getattr(model, "missing", 0):
        timing["items_without_embedding"] = model.missing
    return forecast_frame(fold, name, model.group, values, fallback), timing


def summarise(per_cutoff: dict[str, dict[str, dict]], models: list[str]) -> dict[str, dict]:
    """timings.json: per model, seconds summed over cut-offs, peak RSS the max, and
    the per-cut-off detail; a model that failed anywhere carries its error."""
    out = {}
    for name in models:
        runs = {c: t[name] for c, t in per_cutoff.items() if name in t}
        ok = [r for r in runs.values() if "error" not in r]
        entry = {
            "fit_seconds": round(sum(r["fit_seconds"] for r in ok), 2),
            "predict_seconds": round(sum(r["predict_seconds"] for r in ok), 2),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in ok), default=None),
            "status": "ok" if len(ok) == len(runs) else ("failed" if not ok else "partial"),
            "per_cutoff": runs,
        }
        errors = [r["error"] for r in runs.values() if "error" in r]
        if errors:
            entry["error"] = errors[0]
        out[name] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")  # library chatter; failures surface as exceptions
    np.random.seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.sales, args.products)
    print(f"data: {data.sales['item_id'].nunique()} items, {data.start.date()} .. {data.end.date()}", flush=True)
    embeddings = None
    if args.embeddings:
        from new_models import load_embeddings
        embeddings = load_embeddings(args.embeddings)

    frames, per_cutoff = [], {}
    for cutoff in args.cutoffs:
        fold = make_fold(data, cutoff, args.horizon, args.max_items, args.seed)
        key = cutoff.date().isoformat()
        per_cutoff[key] = {}
        print(f"\n== cut-off {key}: {len(fold.history_ids)} history items over {fold.n_weeks} weeks, "
              f"{len(fold.new_ids)} new items; forecast to {(cutoff + (args.horizon - 1) * WEEK).date()}", flush=True)
        for name in args.models:
            print(f"[{key}] {name} ...", end=" ", flush=True)
            try:
                budget = {"max_epochs": args.peer_epochs, "hidden_size": args.peer_hidden,
                          "train_batches": max(1, args.peer_windows // 128)}
                make = contender_factory(name, args.seed, args.threads, embeddings, budget)
                frame, timing = run_one(name, make, fold)
                frames.append(frame)
                print(f"ok fit {timing['fit_seconds']}s predict {timing['predict_seconds']}s "
                      f"peak {timing['peak_rss_mb']} MB", flush=True)
            except Exception as exc:  # one failing library must not sink the others
                timing = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"FAILED {timing['error']}", flush=True)
                traceback.print_exc()
            per_cutoff[key][name] = timing

    columns = ["cutoff", "model", "group", "item_id", "date", "units", "fallback"]
    forecasts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    forecasts[columns].to_csv(args.out / "forecasts.csv", index=False)
    (args.out / "timings.json").write_text(json.dumps(summarise(per_cutoff, args.models), indent=2))
    print(f"\nwrote {len(forecasts)} rows to {args.out / 'forecasts.csv'} and {args.out / 'timings.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
