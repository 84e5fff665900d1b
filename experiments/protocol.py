"""The benchmark's statistics: the seed-average forecast, paired bootstrap comparisons, the adoption rule.

Why paired and bootstrapped: five rounds of ablations moved no group by more than about 2 %, while the
seed spread of one setting was as large (issue #22). A candidate and the arm it is compared with are
scored on the same products and origins, so their WAPE difference is far less noisy than either WAPE;
resampling products (and origins) with replacement says how much of the difference the particular
products explain. Seeds are averaged before resampling (each arm's error is its mean over seeds), so
the seed spread is reported beside the interval, not inside it.

Imported by experiments/benchmark.py and tests/test_protocol.py; it needs numpy and pandas only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

LEVEL = 0.90  # the bootstrap interval's coverage
MIN_SEEDS = 5  # per neural configuration: with two, a 2 % effect could not be told from seed noise
BOOTSTRAPS = 2000
MAX_ABS_BIAS = 0.10  # a WAPE bought by under-forecasting does not count: a planner orders from the forecast
ADOPTION_RULE = (f"a setting is adopted only when the {LEVEL:.0%} interval of its WAPE difference to the default "
                 f"lies below 0 on the validation split and its |bias| <= {MAX_ABS_BIAS:.0%}")
SEED_AVERAGE = -1  # the ``seed`` of a seed-average forecast's rows
SEED_AVERAGE_SUFFIX = " [seed avg]"  # appended to a model's name for its seed-average forecast
# Models that are references, not candidates: the simple methods a forecast must beat. A name not listed
# (a new neural model, a combination) is a candidate; peers and the mean launch curve are references by source.
REFERENCE_MODELS = frozenset({"seasonal_naive", "moving_average", "ets", "theta", "sarimax", "knn", "launch_curve",
                              "croston", "tsb", "imapa", "adida"})
REFERENCE_SOURCES = frozenset({"peer", "reference"})
KEYS = ["cutoff", "item_id"]  # what pairs two arms' errors: the same product at the same origin


def stem(model: str) -> str:
    """A model key without its prediction variant, ablation tag and seed-average suffix:
    ``fusion:average_text_new@t [seed avg]`` -> ``fusion``."""
    return model.removesuffix(SEED_AVERAGE_SUFFIX).partition("@")[0].partition(":")[0]


def tag_of(model: str) -> str:
    """The ablation tag of a model key (``fusion:v@t [seed avg]`` -> ``t``; untagged: "")."""
    return model.removesuffix(SEED_AVERAGE_SUFFIX).partition("@")[2]


def is_reference(model: str, source: str) -> bool:
    """Whether a row is a reference (a peer, the mean launch curve, one of the package's simple models)."""
    return source in REFERENCE_SOURCES or stem(model) in REFERENCE_MODELS


def seed_average(forecasts: pd.DataFrame) -> pd.DataFrame:
    """The mean of the seeds' forecasts of every model run with two seeds or more, as a model of its own
    (``MODEL [seed avg]``, seed ``SEED_AVERAGE``): what averaging K trainings would give. A cell one seed
    did not forecast is averaged over the seeds that did; a peer's fallback cell stays marked."""
    if forecasts.empty:
        return forecasts.iloc[0:0]
    arm = [c for c in ("model", "source") if c in forecasts]  # a peer's croston is not the package's
    seeds = forecasts.groupby(arm)["seed"].transform("nunique")
    several = forecasts[seeds >= 2]
    if several.empty:
        return forecasts.iloc[0:0]
    keys = [c for c in several.columns if c not in ("seed", "units", "fallback")]
    agg = {"units": ("units", "mean")}
    if "fallback" in several:
        agg["fallback"] = ("fallback", lambda f: bool(f.fillna(False).astype(bool).any()))
    out = several.groupby(keys, dropna=False, sort=False).agg(**agg).reset_index()
    return out.assign(model=out["model"] + SEED_AVERAGE_SUFFIX, seed=SEED_AVERAGE)


def mean_over_seeds(errors: pd.DataFrame) -> pd.DataFrame:
    """One arm's per-(origin, item) errors averaged over its seeds: summed over items they give the mean
    of the seeds' WAPE (every seed is scored on the same cells)."""
    return errors.groupby(KEYS, as_index=False)[["abs_error", "error", "actual"]].mean()


@dataclass(frozen=True)
class Comparison:
    """Arm a against arm b on the same products and origins; ``difference`` = WAPE(a) - WAPE(b) (< 0: a
    is better) with its bootstrap interval [low, high]."""

    wape_a: float
    wape_b: float
    difference: float
    low: float
    high: float
    bias_a: float
    bias_b: float
    items: int
    origins: int

    @property
    def excludes_zero(self) -> bool:
        return self.high < 0 or self.low > 0


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, level: float = LEVEL, n_boot: int = BOOTSTRAPS,
                     seed: int = 0) -> Comparison:
    """Compare two arms given per (cutoff, item_id) Σ|error| (``abs_error``), Σerror (``error``) and Σactual
    (``actual``), e.g. ``mean_over_seeds`` of ``common.item_errors``. Each bootstrap draw resamples
    products with replacement (a product at several origins is drawn with all of them: its origins are
    not independent) and, with several origins, the origins too; both arms' WAPE are computed on the same
    draw. Deterministic for a given ``seed``. Raises ValueError when the arms are not on the same cells."""
    cells_a, cells_b = _cells(a, "a"), _cells(b, "b")
    if not cells_a.index.equals(cells_b.index) or not np.allclose(cells_a["actual"], cells_b["actual"]):
        raise ValueError(f"the arms are not scored on the same products, origins and truth ({len(cells_a)} "
                         f"and {len(cells_b)} (cutoff, item) cells): a paired comparison needs both on every cell")
    origins, items = cells_a.index.levels[0], cells_a.index.levels[1]
    grid = pd.MultiIndex.from_product([origins, items])
    abs_a, abs_b, actual = (cells.reindex(grid, fill_value=0.0).to_numpy().reshape(len(origins), len(items))
                            for cells in (cells_a["abs_error"], cells_b["abs_error"], cells_a["actual"]))
    rng = np.random.default_rng(seed)
    item_w = rng.multinomial(len(items), np.full(len(items), 1 / len(items)), size=n_boot).astype(float)
    origin_w = (rng.multinomial(len(origins), np.full(len(origins), 1 / len(origins)), size=n_boot).astype(float)
                if len(origins) > 1 else np.ones((n_boot, 1)))
    total = ((origin_w @ actual) * item_w).sum(axis=1)
    ok = total > 0
    diff = (((origin_w @ abs_a) * item_w).sum(axis=1)[ok] - ((origin_w @ abs_b) * item_w).sum(axis=1)[ok]) / total[ok]
    low, high = np.quantile(diff, [(1 - level) / 2, 1 - (1 - level) / 2]) if ok.any() else (np.nan, np.nan)
    y = actual.sum()
    wape_a, wape_b = abs_a.sum() / y, abs_b.sum() / y
    return Comparison(float(wape_a), float(wape_b), float(wape_a - wape_b), float(low), float(high),
                      float(cells_a["error"].sum() / y), float(cells_b["error"].sum() / y), len(items), len(origins))


def _cells(errors: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = {*KEYS, "abs_error", "error", "actual"} - set(errors.columns)
    if missing:
        raise ValueError(f"arm {name} lacks the columns {sorted(missing)}")
    if errors.duplicated(KEYS).any():
        raise ValueError(f"arm {name} has several rows for one (cutoff, item): average its seeds first "
                         "(mean_over_seeds)")
    cells = errors.set_index(KEYS)[["abs_error", "error", "actual"]].astype(float).sort_index()
    cells.index = cells.index.remove_unused_levels()
    return cells


def default_of(model: str, default: str, tag: str, default_tag: str) -> str | None:
    """The arm a candidate is compared with as "the current default": a tagged candidate's own model, variant
    and seed averaging in the default run (untagged, or ``default_tag``); an untagged one, ``default`` (seed-
    averaged when it is); None for the default itself."""
    if tag and tag_of(model) == tag:
        return model.replace(f"@{tag}", f"@{default_tag}" if default_tag else "", 1)
    name = default + (SEED_AVERAGE_SUFFIX if model.endswith(SEED_AVERAGE_SUFFIX) else "")
    return None if name == model else name


def compare_all(table: pd.DataFrame, errors: pd.DataFrame, split: str, default: str = "fusion", tag: str = "",
                default_tag: str = "") -> list[dict]:
    """Every candidate of ``table`` (seed-mean rows: dataset, group, model, source, wape, bias, seed_spread)
    against the current default (``default_of``) and against the best reference present (the lowest WAPE of
    the group's peers, simple models and mean launch curve), each comparison paired on ``errors`` (per model,
    source, seed, origin and item, as ``common.item_errors``). Candidates: our models that are not
    references, their variants and seed averages; in an ablation ``tag``, only its tagged ones."""
    out = []
    for (dataset, group), part in table.groupby(["dataset", "group"], sort=True):
        arms = errors[(errors["dataset"] == dataset) & (errors["group"] == group)]

        def arm(model: str, source: str) -> pd.DataFrame:
            return mean_over_seeds(arms[(arms["model"] == model) & (arms["source"] == source)])

        reference = pd.Series([is_reference(m, s) for m, s in zip(part["model"], part["source"])],
                              index=part.index, dtype=bool)
        refs = part[reference & part["model"].isin(arms["model"])].sort_values("wape")
        best = refs.iloc[0] if len(refs) else None
        candidates = ~reference & (part["source"] == "forecast")
        if tag:  # an ablation's candidates are its own models; the untagged ones are the default arm
            candidates &= part["model"].map(tag_of) == tag
        for c in part[candidates].sort_values("wape").itertuples():
            base = default_of(c.model, default, tag, default_tag)
            base_arm = arm(base, "forecast") if base is not None else pd.DataFrame()
            vs_default = None if base_arm.empty else paired_bootstrap(arm(c.model, "forecast"), base_arm)
            vs_reference = None if best is None else paired_bootstrap(arm(c.model, "forecast"),
                                                                      arm(best.model, best.source))
            out.append({"dataset": dataset, "group": group, "model": c.model, "wape": c.wape, "bias": c.bias,
                        "seed_spread": getattr(c, "seed_spread", np.nan), "default": base,
                        "reference": None if best is None else best.model,
                        "reference_source": None if best is None else best.source,
                        "vs_default": None if vs_default is None else asdict(vs_default),
                        "vs_reference": None if vs_reference is None else asdict(vs_reference),
                        "verdict": verdict(vs_default, c.bias, split)})
    return out


def verdict(against_default: Comparison | None, bias: float, split: str) -> str:
    """The adoption rule (``ADOPTION_RULE``) applied to a candidate's comparison with the default."""
    if split != "validation":
        return "reported split: no choice made here"
    if against_default is None:
        return "no default to compare with"
    if against_default.low > 0:
        return "no: worse than the default"
    if against_default.high >= 0:
        return "no: interval includes 0"
    if abs(bias) > MAX_ABS_BIAS:
        return f"no: bias {bias:+.0%} beyond ±{MAX_ABS_BIAS:.0%}"  # no "|": the verdict sits in a markdown table
    return "adopt"
