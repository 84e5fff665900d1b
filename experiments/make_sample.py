"""Rebuild forecast/data/sample/ (the embedded default data) from ../shared/data/online_retail.

A seeded random 300 of the 3,571 products (CC0), all their weekly rows:
    python experiments/make_sample.py
"""

from pathlib import Path

import numpy as np
import pandas as pd

SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "online_retail"
TARGET = Path(__file__).resolve().parents[1] / "forecast" / "data" / "sample"
N_PRODUCTS, SEED = 300, 7


def main() -> None:
    products = pd.read_csv(SOURCE / "products.csv", dtype=str)
    sales = pd.read_csv(SOURCE / "sales.csv", dtype={"item_id": str})
    rng = np.random.default_rng(SEED)
    chosen = set(rng.choice(products["item_id"].to_numpy(), size=N_PRODUCTS, replace=False))
    TARGET.mkdir(exist_ok=True)
    products[products["item_id"].isin(chosen)].to_csv(TARGET / "products.csv", index=False)
    sales[sales["item_id"].isin(chosen)].to_csv(TARGET / "sales.csv", index=False)
    print(f"wrote {TARGET}: {len(chosen)} products")


if __name__ == "__main__":
    main()
