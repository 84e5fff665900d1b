"""A documented, deterministic generator of sales whose demand depends on the words.

Used by tests and examples to show that a model which reads descriptions wins.
Each product is "<colour> <fabric> <category>" (plus a neutral style word):

- level      = 8 × COLOURS[colour] × FABRICS[fabric]           (the words decide it)
- season     = 1 + amplitude × cos(2π (week_of_year − peak) / 52), peak and
               amplitude from CATEGORIES[category]
- trend      = 1 + slope × t / 52, slope from CATEGORIES[category]
- price      = base price × (1 − 0.3 × promo), promo on ~10% of weeks at random
- elasticity = (price / base)^(−1.5)
- units      ~ Poisson(level × season × trend × elasticity)

Two in three products launch at a random period within the first
``launch_window`` share of the history (the rest sell from the start); ``n_new``
further products have no sales and a ``launch_date`` right after the history ends.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLOURS = {"red": 3.0, "white": 2.0, "black": 1.4, "green": 0.8, "grey": 0.5, "yellow": 0.3}
FABRICS = {"wool": 1.3, "cotton": 1.0, "linen": 0.8}
# category: (peak week of year, seasonal amplitude, yearly trend slope, base price)
CATEGORIES = {
    "coat": (2, 0.7, 0.1, 120.0),
    "scarf": (50, 0.6, -0.2, 25.0),
    "dress": (22, 0.5, 0.3, 60.0),
    "swimsuit": (28, 0.8, 0.0, 35.0),
    "jeans": (10, 0.1, 0.0, 70.0),
}
STYLES = ["classic", "relaxed", "slim", "oversized", "cropped"]
ELASTICITY = -1.5


def describe(rng: np.random.Generator) -> tuple[str, str, str, str]:
    colour = rng.choice(list(COLOURS))
    fabric = rng.choice(list(FABRICS))
    category = rng.choice(list(CATEGORIES))
    style = rng.choice(STYLES)
    return f"{style} {colour} {fabric} {category}", str(colour), str(fabric), str(category)


def expected_demand(colour: str, fabric: str, category: str, dates: pd.DatetimeIndex,
                    price_ratio: np.ndarray | float = 1.0, t0: int = 0) -> np.ndarray:
    """The noise-free mean of units on these dates (t0: index of dates[0] in the history)."""
    peak, amplitude, slope, _ = CATEGORIES[category]
    week = dates.isocalendar().week.to_numpy(dtype=float)
    season = 1 + amplitude * np.cos(2 * np.pi * (week - peak) / 52)
    t = t0 + np.arange(len(dates))
    trend = np.maximum(1 + slope * t / 52, 0.2)
    level = 8 * COLOURS[colour] * FABRICS[fabric]
    return level * season * trend * np.power(price_ratio, ELASTICITY)


def generate(n_items: int = 60, n_periods: int = 104, n_new: int = 10, seed: int = 0,
             start: str = "2022-01-03", launch_window: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sales, products) in the data contract; identical for identical arguments."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n_periods, freq="W-MON")
    sales, products = [], []
    for i in range(n_items + n_new):
        item_id = f"P{i:04d}"
        description, colour, fabric, category = describe(rng)
        row = {"item_id": item_id, "description": description, "colour": colour,
               "fabric": fabric, "category": category, "launch_date": pd.NaT}
        if i >= n_items:
            row["launch_date"] = dates[-1] + pd.Timedelta(weeks=1 + int(rng.integers(0, 4)))
            products.append(row)
            continue
        products.append(row)
        launch = int(rng.integers(0, max(1, int(n_periods * launch_window)))) if i % 3 else 0
        base = CATEGORIES[category][3]
        promo = rng.random(n_periods - launch) < 0.1
        price = base * (1 - 0.3 * promo)
        mean = expected_demand(colour, fabric, category, dates[launch:], price / base, t0=launch)
        units = rng.poisson(mean)
        sales.append(pd.DataFrame({"item_id": item_id, "date": dates[launch:],
                                   "units": units, "price": np.round(price, 2)}))
    sales_df = pd.concat(sales, ignore_index=True)
    sales_df = sales_df[sales_df["units"] > 0].reset_index(drop=True)  # a zero week has no row
    sales_df["date"] = sales_df["date"].dt.strftime("%Y-%m-%d")
    products_df = pd.DataFrame(products)
    products_df["launch_date"] = products_df["launch_date"].dt.strftime("%Y-%m-%d").fillna("")
    return sales_df, products_df


def write(directory, **kwargs) -> tuple[str, str]:
    """Write generate(**kwargs) as sales.csv and products.csv; return their paths."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sales, products = generate(**kwargs)
    sales.to_csv(directory / "sales.csv", index=False)
    products.to_csv(directory / "products.csv", index=False)
    return str(directory / "sales.csv"), str(directory / "products.csv")
