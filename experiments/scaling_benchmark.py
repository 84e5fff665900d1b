"""Scale, measured: a default ``python -m forecast fit`` on generated panels of growing size.

    python experiments/scaling_benchmark.py                       # 1k, 10k, 30k products x 104 weeks
    python experiments/scaling_benchmark.py --sizes 1000 --budget 600

Each size is a panel from the documented generator (``forecast.data.synthetic``; sales
as Parquet), fitted with the default settings (5 statistical/kNN baselines + fusion,
3 backtest origins, refit, export) in a child process, which reports its wall time and
peak RSS (``RUSAGE_CHILDREN``: the largest single process, i.e. the fit itself, not the
sum with its baseline pool workers). Where the time goes is read from the fit's own log
and MLflow run: data (start to the "data:" line, imports included), baselines (their
backtest ``fit_seconds``), neural training (the "trained ... in Xs" lines), the refit
and export (from "chosen models" to the end, less its training), and the rest (kNN
embeddings are in baselines; neural prediction, plots and MLflow logging in "other").

Sizes run smallest first; a size whose extrapolated time (from the last one, linear
in products) exceeds ``--budget`` seconds is skipped and recorded as such; a fit still
running after ``--timeout`` seconds is stopped (with its baseline workers) and recorded
as stopped, with the last line of its log. ``--add`` keeps the other sizes' runs and
the earlier commands from ``scaling.json``. The earlier
online_retail-subset scaling lives in ``scaling_online_retail.md`` (experiments/benchmark.py).
Writes experiments/results/scaling.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "experiments" / "results"
BASELINES = ("seasonal_naive", "moving_average", "ets", "theta", "knn")
TRAINED = re.compile(r"^(\d\d):(\d\d):(\d\d) INFO (\w+): trained \d+ epoch\(s\) on (\d+) windows in ([\d.]+)s")
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d) ")

# the child: run the command, then print wall seconds, peak RSS (MB) of the largest descendant, exit code
WRAPPER = ("import json,resource,subprocess,sys,time;t=time.time();r=subprocess.run(sys.argv[1:]).returncode;"
           "print(json.dumps({'rc':r,'start':t,'wall':time.time()-t,"
           "'rss':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))")


def make_panel(n_products: int, folder: Path, seed: int) -> tuple[Path, Path]:
    """n products x 104 weekly periods (5 % of them new), sales as Parquet."""
    from forecast.data.synthetic import generate

    n_new = max(1, n_products // 20)
    sales, products = generate(n_items=n_products - n_new, n_periods=104, n_new=n_new, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    sales.to_parquet(folder / "sales.parquet", index=False)
    products.to_csv(folder / "products.csv", index=False)
    return folder / "sales.parquet", folder / "products.csv"


def measure(n_products: int, folder: Path, seed: int, timeout: float | None = None) -> dict:
    """Wall time, peak RSS and where the time went of one default fit; stopped after ``timeout`` s."""
    sales, products = make_panel(n_products, folder, seed)
    db = folder / "mlflow.db"
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "forecast", "fit", "--sales", str(sales),
           "--products", str(products), "--no-progress", "--tracking-uri", f"sqlite:///{db}"]
    out = {"products": n_products, "sales_rows": _rows(sales)}
    # its own session, so that a stop reaches the fit and its pool workers (they hold the pipes open)
    with subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            (folder / "fit.log").write_text(stderr)
            last = stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""
            return {**out, "ok": False, "stopped_after_seconds": timeout, "last_log_line": last}
    (folder / "fit.log").write_text(stderr)
    stats = json.loads(stdout.strip().splitlines()[-1])
    out.update({"wall_seconds": round(stats["wall"], 1), "peak_rss_mb": round(stats["rss"]), "ok": stats["rc"] == 0})
    if out["ok"]:
        out["phases"] = phases(stderr, stats["start"], stats["wall"], db)
    return out


def _rows(parquet: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(parquet).metadata.num_rows


def phases(log: str, start: float, wall: float, db: Path) -> dict:
    """Seconds in data, baselines, neural training, refit + export, and the rest."""
    day0 = time.localtime(start)
    origin = day0.tm_hour * 3600 + day0.tm_min * 60 + day0.tm_sec + (start % 1)

    def at(pattern: str) -> float:
        for line in log.splitlines():
            stamp = STAMP.match(line)
            if stamp and pattern in line:
                h, m, s = map(int, stamp.groups())
                return (h * 3600 + m * 60 + s - origin) % 86400
        return float("nan")

    trainings = [(float(m.group(6)), (int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) - origin) % 86400)
                 for m in map(TRAINED.match, log.splitlines()) if m]
    chosen = at("INFO chosen models:")
    with sqlite3.connect(db) as con:
        seconds = dict(con.execute("select r.name, m.value from latest_metrics m join runs r "
                                   "on m.run_uuid = r.run_uuid where m.key = 'fit_seconds'"))  # per child run
    data = at("INFO data:")
    baselines = sum(v for k, v in seconds.items() if k in BASELINES)
    neural = sum(s for s, _ in trainings)
    refit_training = sum(s for s, t in trainings if t >= chosen)
    refit_export = wall - chosen - refit_training
    out = {"data": data, "baselines": baselines, "neural_training": neural, "refit_and_export": refit_export}
    out["other"] = wall - sum(out.values())
    return {k: round(v, 1) for k, v in out.items()}


def slope(runs: list[dict], key: str) -> float | None:
    ok = [r for r in runs if r.get("ok")]
    if len(ok) < 2:
        return None
    return float(np.polyfit(np.log([r["products"] for r in ok]), np.log([r[key] for r in ok]), 1)[0])


def write(runs: list[dict], skipped: list[dict], commands: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    slopes = {"wall_seconds": slope(runs, "wall_seconds"), "peak_rss_mb": slope(runs, "peak_rss_mb")}
    meta = {"command": commands,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores "
                       "(shared; each run's 1-minute load average in the table)",
            "load_average_at_start": runs[0].get("load") if runs else None}
    (RESULTS / "scaling.json").write_text(json.dumps({**meta, "runs": runs, "skipped": skipped,
                                                       "log_log_slopes": slopes}, indent=2) + "\n")
    lines = ["# Scaling of a default `forecast fit` on generated panels", "",
             f"Commands: {'; then '.join(f'`{c}`' for c in commands)}; machine {meta['machine']}. "
             "Panels from `forecast.data.synthetic` (104 weekly periods, 5 % new products, sales as Parquet); "
             "default settings: 5 baselines + fusion, 3 backtest origins, refit, export.", "",
             "| products | sales rows | wall s | peak RSS MB | data s | baselines s | neural training s "
             "| refit + export s | other s | load avg (start / end) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        p = r.get("phases", {})
        wall = r.get("wall_seconds", f"stopped at {r.get('stopped_after_seconds', 0):.0f}")
        load = " / ".join(str(r[k]) for k in ("load", "load_end") if k in r)
        lines.append(f"| {r['products']:,} | {r['sales_rows']:,} | {wall} | {r.get('peak_rss_mb', '')} | "
                     + " | ".join(str(p.get(k, "")) for k in ("data", "baselines", "neural_training",
                                                               "refit_and_export", "other"))
                     + f" | {load} |")
    lines += [""]
    for key, value in slopes.items():
        if value is not None:
            lines.append(f"- log-log slope of {key.replace('_', ' ')} vs products: **{value:.2f}**")
    for s in skipped:
        lines.append(f"- {s['products']:,} products not run: {s['reason']}")
    for r in runs:
        if "stopped_after_seconds" in r:
            lines.append(f"- {r['products']:,} products stopped unfinished after {r['stopped_after_seconds']:.0f} s; "
                         f"its log's last line: `{r['last_log_line']}`")
    (RESULTS / "scaling.md").write_text("\n".join(lines) + "\n")
    plot(runs)


def plot(runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return
    fig, ax = plt.subplots(figsize=(5.5, 4))
    x = [r["products"] for r in ok]
    ax.loglog(x, [r["wall_seconds"] for r in ok], "o-", label="wall s")
    ax.loglog(x, [r["peak_rss_mb"] for r in ok], "s--", color="tab:red", label="peak RSS MB")
    ax.set_xlabel("products (x 104 weeks)")
    ax.legend()
    ax.set_title("default forecast fit, generated panels", fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=90)
    plt.close(fig)


def extrapolate(run: dict, n_products: int) -> float:
    """Expected wall time at ``n_products``: data and baselines grow linearly, the neural part (a fixed
    number of windows per epoch) and the rest stay; a failed run extrapolates linearly."""
    ratio = n_products / run["products"]
    if "phases" not in run:
        return run.get("wall_seconds", run.get("stopped_after_seconds", 0)) * ratio
    linear = run["phases"]["data"] + run["phases"]["baselines"]
    return run["wall_seconds"] + linear * (ratio - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,30000")
    parser.add_argument("--budget", type=float, default=600, help="skip a size extrapolated to take longer (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, help="stop a size's fit after this many seconds (recorded)")
    parser.add_argument("--add", action="store_true",
                        help="keep the runs of other sizes already in scaling.json (sizes measured separately)")
    args = parser.parse_args()
    runs, skipped, commands = [], [], []
    if args.add and (RESULTS / "scaling.json").is_file():
        wanted = {int(s) for s in args.sizes.split(",")}
        earlier = json.loads((RESULTS / "scaling.json").read_text())
        runs = [r for r in earlier["runs"] if r["products"] not in wanted]
        commands = [earlier["command"]] if isinstance(earlier["command"], str) else list(earlier["command"])
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(int(s) for s in args.sizes.split(",")):
            smaller = [r for r in runs if r["products"] < n]
            expected = extrapolate(smaller[-1], n) if smaller else 0
            if expected > args.budget:
                skipped.append({"products": n, "reason": f"extrapolated from {smaller[-1]['products']:,} products "
                                f"to {expected:.0f} s (data and baselines linear in products, the rest "
                                f"fixed), over the {args.budget:.0f} s budget"})
                print(f"[scaling] skip {n}: {skipped[-1]['reason']}", flush=True)
                continue
            print(f"[scaling] fit on {n} products ...", flush=True)
            load = round(os.getloadavg()[0], 1)
            runs.append({**measure(n, Path(tmp) / f"n{n}", args.seed, args.timeout), "load": load,
                         "load_end": round(os.getloadavg()[0], 1)})
            print(f"[scaling] {runs[-1]}", flush=True)
    runs.sort(key=lambda r: r["products"])
    write(runs, skipped, commands + ["python experiments/scaling_benchmark.py " + " ".join(sys.argv[1:])])


if __name__ == "__main__":
    main()
