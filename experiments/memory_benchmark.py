"""Peak memory of `forecast fit` on a generated sales table of about a million rows.

    python experiments/memory_benchmark.py [--items 10000 --periods 104]

Generates the table with forecast.data.synthetic (deterministic), runs the real CLI
in a child process and records its wall time and peak RSS (the largest of the
process and its workers, from getrusage) in experiments/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from forecast.data import synthetic

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--periods", type=int, default=125)  # 10,000 x 125 -> just over a million rows
    parser.add_argument("--models", default="moving_average,fusion")
    parser.add_argument("--max-epochs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        sales, products = synthetic.generate(n_items=args.items, n_periods=args.periods, n_new=0, seed=0)
        sales.to_csv(Path(tmp) / "sales.csv", index=False)
        products.to_csv(Path(tmp) / "products.csv", index=False)
        rows = len(sales)
        print(f"generated {rows:,} sales rows in {time.perf_counter() - tic:.0f}s", flush=True)
        cmd = [sys.executable, "-m", "forecast", "fit", "--sales", f"{tmp}/sales.csv", "--products",
               f"{tmp}/products.csv", "--models", args.models, "--folds", "1", "--max-epochs", str(args.max_epochs),
               "--export", f"{tmp}/forecast.csv", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", "--no-progress"]
        tic = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - tic
        if proc.returncode != 0:
            sys.exit(f"fit failed:\n{proc.stderr[-3000:]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        exported = len(pd.read_csv(f"{tmp}/forecast.csv"))
    result = {"sales_rows": rows, "items": args.items, "periods": args.periods, "models": args.models,
              "max_epochs": args.max_epochs, "wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_mb),
              "export_rows": exported, "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
              "benchmark_command": "python experiments/memory_benchmark.py " + " ".join(sys.argv[1:]),
              "fit_command": " ".join(["python", "-m", "forecast", *cmd[3:]]).replace(tmp, "<tmp>")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
