"""A quick sanity check of run_peers.py output: WAPE per model and group.

Not the benchmark's scoring (that uses the package's metrics); this only checks
the forecasts are sane. WAPE = 100 * sum|y - f| / sum|y| over every forecast
cell with truth: a week with no sales row counts as 0 units, a week past the
data's last week has no truth and is skipped.

    python quick_wape.py SALES.csv PRODUCTS.csv OUT_DIR/forecasts.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_data import load_dataset, truth_frame  # noqa: E402


def wape_table(sales: str, products: str, forecasts_path: str) -> pd.DataFrame:
    data = load_dataset(Path(sales), Path(products))
    fc = pd.read_csv(forecasts_path, dtype={"item_id": str})
    fc["actual"] = truth_frame(data, fc)
    fc = fc.dropna(subset=["actual"])
    fc["abs_err"] = (fc["units"] - fc["actual"]).abs()
    fc["abs_y"] = fc["actual"].abs()
    table = fc.groupby(["group", "model"]).agg(
        cells=("actual", "size"), abs_err=("abs_err", "sum"), abs_y=("abs_y", "sum"),
        sum_f=("units", "sum"), sum_y=("actual", "sum"))
    table["wape"] = (100 * table["abs_err"] / table["abs_y"]).round(1)
    table["bias_pct"] = (100 * (table["sum_f"] - table["sum_y"]) / table["abs_y"]).round(1)
    return table[["cells", "wape", "bias_pct"]].sort_values(["group", "wape"])


if __name__ == "__main__":
    with pd.option_context("display.width", 120):
        print(wape_table(*sys.argv[1:4]).to_string())
