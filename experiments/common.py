"""What the experiments share: the data sets and their splits, the truth, one scorer, the targets.

The benchmark (``benchmark.py``), the epoch profile (``profile_epoch.py``) and the tests import this
module and ``protocol.py``, never one another: a script is run, not imported. See experiments/README.md.

Splits. online_retail (41 weekly periods): reported origins are the cut-offs 20, 16 and 12 weeks before
the end (horizon 12); validation origins are 12, 8 and 4 weeks before the first reported one. The
first validation origin (2011-01-31) is the one whose 12 weeks hold a seasonal rise: from the
post-Christmas trough (w/c 2011-02-07) into the spring peak before Mothering Sunday and Easter
(w/c 2011-03-28), the last 4 weeks of its items with history selling 13 % more than the first 4 (the
other two: 1.00 and 0.86). visuelle (new products only): reported, the cut-off is the launch date of
the latest 15 % of products; validation drops those products and cuts at the 40 %, 55 % and 70 %
launch quantiles (of the products the reported split knows), forecasting every product launched after
each cut-off.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.protocol import SEED_AVERAGE_SUFFIX, is_reference  # noqa: E402
from forecast.evaluation.backtest import _fold_targets, origins  # noqa: E402
from forecast.core.config import DataConfig, EvalConfig, RunConfig  # noqa: E402
from forecast.data.contract import Tables, load_tables  # noqa: E402
from forecast.data.panel import Panel, build_panel  # noqa: E402
from forecast.evaluation.metrics import score, score_by_step  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
CACHE = ROOT / "experiments" / ".cache"
HORIZON = 12
VISUELLE_NEW_SHARE = 0.15  # reported: the latest 15% of launches
VISUELLE_VALIDATION_SHARE = 0.15  # validation: the 15% steps of launches before those
VISUELLE_VALIDATION_ORIGINS = 3  # validation cut-offs at the 40%, 55% and 70% launch quantiles
ONLINE_RETAIL_VALIDATION_BACK = (12, 8, 4)  # validation origins: weeks before the first reported origin
MEAN_LAUNCH_CURVE = "mean launch curve"
# What the tables call a peer's model (by its library) and one of ours (by package); others show their key.
PEER_LABELS = {
    "autoets": "statsforecast AutoETS", "autotheta": "statsforecast AutoTheta", "croston": "statsforecast Croston",
    "adida": "statsforecast ADIDA", "imapa": "statsforecast IMAPA", "lgbm": "LightGBM",
    "lgbm_new_onehot": "LightGBM on attribute one-hots", "lgbm_new_text": "LightGBM on text embeddings",
    "ridge_new_text": "scikit-learn Ridge on text embeddings", "tft": "pytorch-forecasting TFT",
    "deepar": "pytorch-forecasting DeepAR",
}
LABELS = {
    "seasonal_naive": "forecast seasonal naive", "moving_average": "forecast moving average",
    "ets": "forecast ETS (statsmodels)", "theta": "forecast Theta (statsmodels)", "knn": "forecast description-kNN",
    "fusion": "forecast fusion", "sequence": "forecast sequence (no text)", "text": "forecast text only",
}


def label(model: str, source: str = "forecast") -> str:
    """The name a table shows for a model key: a peer's by its library (statsforecast's ``croston`` is not
    the package's), ours by package; a key without a label shows itself."""
    return (PEER_LABELS if source == "peer" else LABELS).get(model, model)


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


def panel_tables(panel: Panel, sales: Path, products: Path) -> None:
    """The panel's products and observed sales rows as contract CSVs: the peers see exactly the
    products and weeks our models see (e.g. without the reported launches in validation)."""
    rows, cols = np.nonzero(np.isfinite(panel.units))
    frame = pd.DataFrame({"item_id": panel.item_ids[rows], "date": panel.dates[cols].strftime("%Y-%m-%d"),
                          "units": panel.units[rows, cols]})
    if panel.price is not None:
        frame["price"] = panel.price[rows, cols]
    frame.to_csv(sales, index=False)
    panel.products.to_csv(products, index=False)


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
    return reported if split == "reported" else [reported[0] - back for back in ONLINE_RETAIL_VALIDATION_BACK]


def groups_of(dataset: str) -> tuple[str, ...]:
    return (NEW,) if dataset == "visuelle" else (HISTORY, NEW)


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


# --- the forecast fit chooses -------------------------------------------------------
CHOSEN = "chosen"  # the model name of the chosen arm's rows: what ``fit`` exports, whichever model that is


def fit_config(dataset: str, seed: int) -> RunConfig:
    """The config of ``python -m forecast fit`` on a data set as a user runs it: the package defaults, the
    data set's loading options (visuelle: ``--series-end last-sale --negative-units zero``), the seed, the
    benchmark's horizon, ranges at 80 % and 90 % (``--interval 0.8,0.9``: issue 23's two levels from one fit;
    the point forecast does not depend on it) and no progress bar (which changes no forecast)."""
    series_end = "last-sale" if dataset == "visuelle" else "table"
    return RunConfig(seed=seed).updated({"data.negative_units": "zero", "data.series_end": series_end,
                                         "evaluation.horizon": HORIZON, "evaluation.interval": [0.8, 0.9],
                                         "train.progress": False})


def chosen_forecast(panel: Panel, cutoff: int, cfg: RunConfig) -> tuple[pd.DataFrame, dict]:
    """What ``fit`` exports when the data end at ``cutoff``: its own path (``forecast.pipeline.plan`` then
    ``refit``, which ``Forecaster.fit`` and the CLI's fit run; no MLflow, nothing written) on the panel
    truncated as the backtest truncates it. Returns (the export's rows, {"chosen": group -> model,
    "ensemble": group -> members and weights, "backtest": fit's own pooled backtest table, "bands": the chosen
    model's held-out coverage per level and volume band on fit's backtest folds, with the range method it exports})."""
    from forecast.pipeline import check_models_serve, plan, refit

    train = panel.truncate(cutoff)
    check_models_serve(cfg, train)
    planned = plan(cfg, train)
    fitted = refit(cfg, train, planned)
    ensemble = {g: {"members": list(w.members), "weights": [round(float(v), 4) for v in w.weights]}
                for g, w in planned.combined.items()}
    summary = planned.backtest.summary()
    columns = [c for c in ("model", "group", "wape", "bias", "coverage", "wql") if c in summary]
    return fitted.frame, {"chosen": dict(planned.chosen), "ensemble": ensemble,
                          "backtest": summary[columns].round(4).to_dict("records"),
                          "bands": chosen_bands(planned.backtest.bands, planned.chosen)}


def chosen_bands(bands: pd.DataFrame | None, chosen: dict[str, str]) -> list[dict]:
    """The backtest's held-out per-band coverage rows of each group's chosen model and chosen range method:
    what the folds said of the ranges the export carries (to set beside their coverage on later weeks)."""
    if bands is None or bands.empty:
        return []
    mine = bands[bands["chosen"].astype(bool) & (bands["model"] == bands["group"].map(chosen))]
    columns = ["group", "model", "method", "level", "band", "coverage", "width", "zero_share", "n"]
    return mine[columns].round(4).to_dict("records")


def export_long_frame(panel: Panel, cutoff: int, export: pd.DataFrame, name: str = CHOSEN) -> pd.DataFrame:
    """An export's rows for the items the fold at ``cutoff`` scores, as the benchmark's long frame
    (cutoff, model = ``name``, group, item_id, date, units, the range's units_pXX columns) plus
    ``exported``, the model the export names for the row. The group is the fold's; an export that puts
    one of the fold's items in the other group is refused (the truth would be of other weeks)."""
    fold = _fold_targets(panel, cutoff, HORIZON)
    group = pd.Series({item: g for g in (HISTORY, NEW) for item in panel.item_ids[fold.rows[g]]}, dtype=object)
    rows = export[export["item_id"].astype(str).isin(group.index)]
    wrong = rows["group"].to_numpy() != group.reindex(rows["item_id"].astype(str)).to_numpy()
    if wrong.any():
        raise ValueError(f"the export puts {rows.loc[wrong, 'item_id'].nunique()} of the fold's items in the "
                         f"other group than the fold at {panel.dates[cutoff].date()} (e.g. "
                         f"{rows.loc[wrong, 'item_id'].iloc[0]})")
    ranges = [c for c in rows.columns if str(c).startswith("units_p")]
    return pd.DataFrame({"cutoff": panel.dates[cutoff].strftime("%Y-%m-%d"), "model": name,
                         "group": rows["group"].to_numpy(), "item_id": rows["item_id"].astype(str).to_numpy(),
                         "date": rows["date"].astype(str).to_numpy(), "units": rows["units"].to_numpy(),
                         **{c: rows[c].to_numpy() for c in ranges}, "exported": rows["model"].to_numpy()})


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


def align_columns(panel: Panel, ids: np.ndarray, start: np.ndarray, forecasts: pd.DataFrame,
                  columns: tuple[str, ...]) -> list[np.ndarray]:
    """:func:`align`'s forecast [m, H] of each of ``columns`` (e.g. units and a range's two bounds)."""
    return [align(panel, ids, start, forecasts.assign(units=forecasts[c]))[0] for c in columns]


def _aligned(panel: Panel, truth: dict, forecasts: pd.DataFrame):
    """(model, group, seed, [(cutoff, ids, truth, forecast, MASE scale, own) per origin]) for every model,
    group and seed of ``forecasts``, on the truth's items and steps (see ``align``)."""
    for (model, group, seed), part in forecasts.groupby(["model", "group", "seed"]):
        folds = []
        for (cutoff, g), (ids, start, y, scale) in truth.items():
            if g == group:
                pred, own = align(panel, ids, start, part[part["cutoff"] == cutoff])
                folds.append((cutoff, ids, y, pred, scale, own))
        yield model, group, seed, folds


def score_all(dataset: str, panel: Panel, truth: dict, forecasts: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Metrics of every model, group and seed: pooled over origins (cutoff "all") and per origin;
    per-step WAPE of the pooled ones."""
    rows_out, steps_out = [], []
    if forecasts.empty:
        return rows_out, steps_out
    for model, group, seed, folds in _aligned(panel, truth, forecasts):
        for cutoff, _, y, pred, scale, own in folds:
            rows_out.append(_score_row(dataset, model, group, seed, cutoff, y, pred, scale, own))
        if folds:
            y, f, s, own = (np.concatenate(x) for x in list(zip(*folds))[2:])
            rows_out.append(_score_row(dataset, model, group, seed, "all", y, f, s, own))
            for h, m in enumerate(score_by_step(y, f), 1):
                steps_out.append({"dataset": dataset, "model": model, "group": group, "seed": seed, "step": h,
                                  "wape": m["wape"]})
    return rows_out, steps_out


def item_errors(dataset: str, panel: Panel, truth: dict, forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per model, group, seed, origin and item: Σ|error|, Σerror and Σactual over the item's cells with
    truth. Summed over items they give WAPE and bias exactly; the paired comparisons resample them
    (experiments/protocol.py)."""
    frames = []
    for model, group, seed, folds in ([] if forecasts.empty else _aligned(panel, truth, forecasts)):
        for cutoff, ids, y, pred, _, _ in folds:
            known = np.isfinite(y)
            err = np.where(known, pred - np.nan_to_num(y), 0.0)
            frames.append(pd.DataFrame({
                "dataset": dataset, "model": model, "group": group, "seed": seed, "cutoff": cutoff,
                "item_id": ids, "abs_error": np.abs(err).sum(axis=1), "error": err.sum(axis=1),
                "actual": np.abs(np.where(known, y, 0.0)).sum(axis=1)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _score_row(dataset, model, group, seed, cutoff, y, f, scale, own) -> dict:
    metrics = score(y, f, scale if group == HISTORY else None)
    return {"dataset": dataset, "model": model, "group": group, "seed": seed, "cutoff": cutoff, **metrics,
            "coverage": round(float(own.mean()), 3) if len(own) else float("nan")}


# --- targets ---------------------------------------------------------------------------
def validation_choice(dataset: str, group: str, tag: str = "") -> str | None:
    """The model ``fit`` would choose for a group, as it chooses on its own origins: the lowest-WAPE one of
    our models and their prediction variants on the validation split (benchmark_validation.json; for an
    ablation ``tag``, its own validation run's JSON), seed averages left out (fit trains one of each)."""
    path = (RESULTS / "ablations" / tag if tag else RESULTS).glob(
        f"benchmark{'_validation_*' if tag else '_validation'}.json")
    for found in sorted(path):
        rows = pd.DataFrame(json.loads(found.read_text())["pooled"])
        rows = rows[(rows.dataset == dataset) & (rows.group == group) & (rows.source == "forecast")
                    & ~rows.model.str.endswith(SEED_AVERAGE_SUFFIX)]
        if len(rows):
            return rows.sort_values("wape").model.iloc[0]
    return None


def targets(table: pd.DataFrame, scaling: list[dict], tag: str = "", origins: pd.DataFrame | None = None,
            chosen: dict | None = None) -> list[dict]:
    """Issue #22's targets on the seed-mean pooled WAPE of the reported split, for the model ``fit`` chooses
    per group (``chosen``: (dataset, group) -> model; by default ``validation_choice``, else fusion's plain
    forecast): <= 0.95 x the best peer or reference; visuelle launches <= 0.92 x the mean launch curve on
    every origin (``origins``: seed-mean WAPE per dataset, group, model and cutoff); seed spread <= 2 % of its
    WAPE; |bias| <= 10 %; a default fit on all of online_retail within 5 minutes."""
    out = []
    for (dataset, group), part in table.groupby(["dataset", "group"], sort=True):
        name = (chosen or {}).get((dataset, group)) or validation_choice(dataset, group, tag) or "fusion"
        if tag and "@" not in name:
            name = f"{name}@{tag}"
        mine = part[(part.model == name) & (part.source == "forecast")]
        if mine.empty:
            continue
        fit = mine.iloc[0]
        refs = part[[is_reference(m, s) and not m.endswith(SEED_AVERAGE_SUFFIX)
                     for m, s in zip(part.model, part.source)]].sort_values("wape")
        if len(refs):
            best = refs.iloc[0]
            out.append(_target(f"{dataset} {group}: {name} <= 0.95 x best reference", fit.wape, 0.95 * best.wape,
                               f"best reference {label(best.model, best.source)} {best.wape:.3f}"))
        if dataset == "visuelle" and origins is not None:
            at = origins[(origins.dataset == dataset) & (origins.group == group)]
            for cutoff, o in at.groupby("cutoff"):
                ours, curve = o[o.model == name].wape, o[o.model == MEAN_LAUNCH_CURVE].wape
                if len(ours) and len(curve):
                    out.append(_target(f"visuelle new, origin {cutoff}: {name} <= 0.92 x mean launch curve",
                                       ours.iloc[0], 0.92 * curve.iloc[0], f"mean launch curve {curve.iloc[0]:.3f}"))
        spread = fit.get("seed_spread", np.nan)
        if np.isfinite(spread):
            out.append(_target(f"{dataset} {group}: {name} seed spread <= 2 % of its WAPE", spread, 0.02 * fit.wape,
                               f"{int(fit.get('seeds', 0))} seeds"))
        out.append(_target(f"{dataset} {group}: {name} |bias| <= 10 %", abs(fit.bias), 0.10, f"bias {fit.bias:+.3f}"))
    full = [s for s in scaling if s["products"] >= 3571]
    if full:
        out.append(_target("a default fit on all of online_retail <= 5 minutes (2 cores)", full[0]["wall_seconds"],
                           300.0, "seconds"))
    return out


def _target(name, value, bound, detail, strict=False) -> dict:
    met = bool(value < bound if strict else value <= bound)
    return {"target": name, "value": round(float(value), 4), "bound": round(float(bound), 4), "met": met,
            "detail": detail, "margin": round(float(value / bound - 1), 4) if bound else None}


def wape_bars(table: pd.DataFrame, path: Path, colours: dict[str, str], xlabel: str, width: float = 5.0,
              highlight: str | None = None) -> None:
    """One panel per data set and group: each model's WAPE as a bar, best first, coloured by its source;
    ``highlight``: the models named so (or as a prefix) in blue, and that exact model's ``per_seed``
    WAPEs as dots on its bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(table.groupby(["dataset", "group"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.5), squeeze=False)
    for ax, ((dataset, group), part) in zip(axes.flat, panels):
        part = part.sort_values("wape").reset_index(drop=True)
        marked = part["model"].str.startswith(highlight) if highlight else pd.Series(False, index=part.index)
        ax.barh(part["model"], part["wape"], color=["tab:blue" if m else colours.get(s, "k")
                                                     for m, s in zip(marked, part["source"])])
        for y, r in (part[part["model"] == highlight].iterrows() if highlight else ()):
            ax.plot(r["per_seed"], [y] * len(r["per_seed"]), "k.", label="each seed")
        ax.invert_yaxis()
        ax.set_title(f"{dataset}: {group}", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
