"""A large catalogue, measured: a default ``python -m forecast fit`` on the embedded sample's 300
products with sales plus N catalogue-only products (no sales rows, launching in the forecast weeks).

    python experiments/catalogue_benchmark.py --sizes 2000,10000            # wall time, peak RSS, log gaps
    python experiments/catalogue_benchmark.py --sizes 2000 --profile        # + a cProfile of each fit
    python experiments/catalogue_benchmark.py --make 100000 --out /tmp/cat  # only write the tables

The catalogue-only products get descriptions recombined from the sample's words (3 to 7 of them, so
nearly all distinct, like a real catalogue) and a ``launch_date`` 1 to 12 weeks after the sales end:
every one of them is a new product the export forecasts, none has anything to score in a backtest.
Each fit runs in a child process (its own session, so a timeout stops its pool workers too) that
reports wall seconds and the peak RSS of the largest process; the fit's log is kept, and its longest
silence (the largest gap between two log lines' timestamps) says whether a long step runs without a
word. ``--profile`` runs the fit under cProfile and records the functions with the most cumulative
time. ``--add`` keeps the other sizes' runs already in the results.
Writes experiments/results/catalogue.{json,md} (``--tag T``: catalogue_T.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "experiments" / "results"
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d) ")
WRAPPER = ("import json,resource,subprocess,sys,time;t=time.time();r=subprocess.run(sys.argv[1:]).returncode;"
           "print(json.dumps({'rc':r,'wall':time.time()-t,"
           "'cpu':(lambda u:u.ru_utime+u.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN)),"
           "'rss':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))")
MARKS = ("backtest fold", "chosen models:", "wrote ")  # log lines that start a phase


def make_catalogue(n_new: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """The sample's sales and products plus ``n_new`` catalogue-only products; (sales, products) paths."""
    from forecast.data.loading import sample_paths

    sales_path, products_path = sample_paths()
    sales = pd.read_csv(sales_path, dtype={"item_id": str})
    products = pd.read_csv(products_path, dtype={"item_id": str})
    rng = np.random.default_rng(seed)
    words = sorted({w for d in products["description"] for w in d.split()})
    lengths = rng.integers(3, 8, size=n_new)
    picks = rng.integers(0, len(words), size=int(lengths.sum()))
    cuts = np.cumsum(lengths)[:-1]
    descriptions = [" ".join(words[i] for i in chunk) for chunk in np.split(picks, cuts)]
    last = pd.Timestamp(sales["date"].max())
    launch = last + pd.to_timedelta(7 * rng.integers(1, 13, size=n_new), unit="D")
    new = pd.DataFrame({"item_id": [f"C{i:06d}" for i in range(n_new)], "description": descriptions,
                        "launch_date": launch.strftime("%Y-%m-%d")})
    products = pd.concat([products.assign(launch_date=""), new], ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    sales.to_csv(folder / "sales.csv", index=False)
    products.to_csv(folder / "products.csv", index=False)
    return folder / "sales.csv", folder / "products.csv"


def measure(n_new: int, folder: Path, seed: int, timeout: float | None, profile: bool,
            extra: list[str]) -> dict:
    """Wall time, peak RSS, the longest silence of the log and (``profile``) the top functions of one fit."""
    sales, products = make_catalogue(n_new, folder, seed)
    run = [sys.executable, "-m", "cProfile", "-o", str(folder / "fit.prof"), "-m", "forecast"] if profile \
        else [sys.executable, "-m", "forecast"]
    fit = [*run, "fit", "--sales", str(sales), "--products", str(products), "--no-progress",
           "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--export", str(folder / "forecast.csv"),
           "--checkpoint-dir", str(folder / "checkpoints"), *extra]
    out = {"catalogue_only": n_new, "products": n_new + 300, "profiled": profile}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stdout, stderr, stopped = _run_in_own_session([sys.executable, "-c", WRAPPER, *fit], folder, env, timeout)
    (folder / "fit.log").write_text(stderr)
    if stopped:
        return {**out, "ok": False, "stopped_after_seconds": timeout, **silence(stderr)}
    stats = json.loads(stdout.strip().splitlines()[-1])
    out.update({"wall_seconds": round(stats["wall"], 1), "cpu_seconds": round(stats["cpu"], 1),
                "peak_rss_mb": round(stats["rss"]), "ok": stats["rc"] == 0, **silence(stderr),
                "phase_starts": phase_starts(stderr)})
    if not out["ok"]:
        out["last_log_line"] = stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""
    if profile and (folder / "fit.prof").is_file():
        out["profile_top"] = top_functions(folder / "fit.prof")
    return out


def _run_in_own_session(cmd: list[str], cwd: Path, env: dict, timeout: float | None) -> tuple[str, str, bool]:
    """(stdout, stderr, stopped): the command in a session of its own, so that stopping it at ``timeout``
    reaches the fit's baseline pool workers too (they hold its pipes open)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        return (*proc.communicate(timeout=timeout), False)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return (*proc.communicate(), True)


def silence(log: str) -> dict:
    """The longest gap between consecutive timestamped log lines, and the line it followed."""
    stamps = [(int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]), line) for line in log.splitlines()
              if (m := STAMP.match(line))]
    if len(stamps) < 2:
        return {"longest_silence_seconds": None}
    gaps = [((b[0] - a[0]) % 86400, a[1]) for a, b in zip(stamps, stamps[1:])]
    gap, after = max(gaps, key=lambda g: g[0])
    return {"longest_silence_seconds": gap, "silent_after": after[:200]}


def phase_starts(log: str) -> dict[str, int]:
    """Seconds from the log's first line to each phase's first line (the backtest folds, the choice, the
    export): where the wall time went, without a profiler."""
    stamps = [(int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]), line) for line in log.splitlines()
              if (m := STAMP.match(line))]
    out = {}
    for stamp, line in stamps:
        text = line.split(" INFO ", 1)[1] if " INFO " in line else ""
        for mark in MARKS:
            if text.startswith(mark):
                out.setdefault(text.split(":")[0] if mark != "wrote " else "export written",
                               (stamp - stamps[0][0]) % 86400)
    return out


PACKAGE = "forecast/"


def top_functions(path: Path, n: int = 25) -> list[dict]:
    """The package's functions (and torch/tokenizer entry points) with the most cumulative seconds."""
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, name), (_, calls, _, cumulative, _) in stats.stats.items():
        if PACKAGE in file and "/.venv/" not in file or name in ("_call_impl", "__call__") and "tokenization" in file:
            rows.append({"function": f"{file.split(PACKAGE, 1)[-1]}:{line}({name})", "calls": calls,
                         "cumulative_seconds": round(cumulative, 1)})
    return sorted(rows, key=lambda r: -r["cumulative_seconds"])[:n]


def write(runs: list[dict], commands: list[str], tag: str | None, results: Path = RESULTS) -> None:
    stem = f"catalogue_{tag}" if tag else "catalogue"
    meta = {"commands": commands, "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared; load "
            "average at each run's start and end in the table)"}
    (results / f"{stem}.json").write_text(json.dumps({**meta, "runs": runs}, indent=2) + "\n")
    lines = [f"# A default `forecast fit` on a large catalogue ({stem})", "",
             f"Commands: {'; then '.join(f'`{c}`' for c in commands)}; machine {meta['machine']}. "
             "Data: the embedded sample (300 products with sales) plus N catalogue-only products launching in "
             "the forecast weeks (`make_catalogue`).", "",
             "| catalogue-only | code | wall s | CPU s | peak RSS MB | longest log silence s | profiled "
             "| load avg (start / end) |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        wall = r.get("wall_seconds", f"stopped at {r.get('stopped_after_seconds', 0):.0f}")
        lines.append(f"| {r['catalogue_only']:,} | {r.get('code', '')} | {wall} | {r.get('cpu_seconds', '')} | {r.get('peak_rss_mb', '')} | "
                     f"{r.get('longest_silence_seconds')} | {r['profiled']} | {r.get('load')} / {r.get('load_end')} |")
    for r in runs:
        if r.get("profile_top"):
            lines += ["", f"Top cumulative seconds (cProfile), {r['catalogue_only']:,} catalogue-only, "
                      f"{r.get('code', '')}:", "",
                      "| function | calls | cumulative s |", "|---|---|---|"]
            lines += [f"| `{p['function']}` | {p['calls']} | {p['cumulative_seconds']} |" for p in r["profile_top"]]
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000", help="catalogue-only products, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, help="stop a fit after this many seconds (recorded)")
    parser.add_argument("--profile", action="store_true", help="run each fit under cProfile")
    parser.add_argument("--keep", type=Path, help="keep each size's folder (tables, log, export) under here")
    parser.add_argument("--tag", help="write catalogue_TAG.{json,md}")
    parser.add_argument("--add", action="store_true", help="keep the other sizes' runs already in the results")
    parser.add_argument("--label", default="this tree",
                        help="the code measured, kept with each run (e.g. 'before: 01d2f87')")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder the results go to")
    parser.add_argument("--make", type=int, help="only write a catalogue of this many catalogue-only products")
    parser.add_argument("--out", type=Path, help="with --make: the folder")
    parser.add_argument("fit_args", nargs="*", help="after --: extra fit options, e.g. -- --models knn,ets")
    args = parser.parse_args()
    if args.make is not None:
        print(*make_catalogue(args.make, args.out or Path(f"catalogue_{args.make}"), args.seed))
        return
    stem = f"catalogue_{args.tag}" if args.tag else "catalogue"
    runs, commands = [], []
    if args.add and (args.results / f"{stem}.json").is_file():
        earlier = json.loads((args.results / f"{stem}.json").read_text())
        wanted = {(int(s), args.label, args.profile) for s in args.sizes.split(",")}
        runs = [r for r in earlier["runs"] if (r["catalogue_only"], r.get("code"), r["profiled"]) not in wanted]
        commands = earlier["commands"]
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for n in sorted(int(s) for s in args.sizes.split(",")):
            print(f"[catalogue] fit with {n} catalogue-only products ...", flush=True)
            load = round(os.getloadavg()[0], 1)
            run = measure(n, base / f"n{n}", args.seed, args.timeout, args.profile, args.fit_args)
            runs.append({**run, "code": args.label, "load": load, "load_end": round(os.getloadavg()[0], 1)})
            print(f"[catalogue] {json.dumps(runs[-1])[:2000]}", flush=True)
    runs.sort(key=lambda r: (r["catalogue_only"], r["profiled"], r.get("code", "")))
    write(runs, commands + ["python experiments/catalogue_benchmark.py " + " ".join(sys.argv[1:])], args.tag,
          args.results)


if __name__ == "__main__":
    main()
