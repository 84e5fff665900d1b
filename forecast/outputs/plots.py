"""Pictures a person would rather see than read: forecast vs actual, metric bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from forecast.evaluation.backtest import BacktestResult  # noqa: E402
from forecast.evaluation.intervals import Calibration  # noqa: E402
from forecast.data.panel import Panel  # noqa: E402
from forecast.models.base import HISTORY, NEW  # noqa: E402


def plot_forecast_vs_actual(panel: Panel, result: BacktestResult, models: list[str], path: str | Path,
                            n_items: int = 12, chosen: dict[str, str] | None = None,
                            calibrations: dict[str, dict[str, Calibration]] | None = None) -> Path:
    """Latest backtest fold: history, actuals and each model's forecast for a sample of items, by date.

    Items with history are the highest-volume ones (what a planner checks first);
    a few new items show the launch forecasts. The chosen model of each group (``chosen``)
    is drawn thick with its forecast range as a band (``calibrations``: per chosen model and group,
    the ranges the fit computed once for its export; without them, no band); the others thin, behind it.
    """
    chosen, calibrations = chosen or {}, calibrations or {}
    fold = result.folds[-1]
    picks = _pick_items(panel, fold, n_items)
    cols = 3
    rows = max(1, -(-len(picks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(picks):]:
        ax.axis("off")
    for ax, (group, k) in zip(axes.flat, picks):
        row = fold.rows[group][k]
        first = fold.cutoff if group == HISTORY else panel.start[row]
        horizon = fold.truth[group].shape[1]
        steps = np.arange(first, first + horizon)
        dates = _dates(panel, steps)
        context = np.arange(max(panel.start[row], fold.cutoff - 26), fold.cutoff) if group == HISTORY else []
        if len(context):
            ax.plot(_dates(panel, context), panel.units[row, context], color="0.6", lw=1, label="history")
        ax.plot(dates, fold.truth[group][k], color="black", lw=1.5, marker=".", label="actual")
        for colour, name in enumerate(models):  # one colour per model across all panels
            if group not in fold.forecasts.get(name, {}):
                continue
            values = fold.forecasts[name][group][k]
            best = chosen.get(group) == name
            label = f"{name} (chosen)" if best else name
            ax.plot(dates, values, lw=2.4 if best else 1, alpha=1 if best else 0.6, label=label,
                    color=f"C{colour % 10}", zorder=3 if best else 2)
            if best and group in calibrations.get(name, {}):  # the headline level's range
                lower, upper = next(iter(calibrations[name][group].ranges(values[None, :]).values()))
                ax.fill_between(dates, lower[0], upper[0], color=f"C{colour % 10}", alpha=0.18, lw=0,
                                label=f"{name} range")
        title = panel.products["description"].iloc[row][:40]
        ax.set_title(f"{'NEW: ' if group == NEW else ''}{title}", fontsize=11)
        ax.set_xlabel("week", fontsize=10)
        ax.set_ylabel("units", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.tick_params(axis="x", labelrotation=30)
    handles = {h.get_label(): h for ax in axes.flat for h in [*ax.get_lines(), *ax.collections]}
    fig.legend(handles.values(), handles.keys(), fontsize=10, loc="lower center", ncol=min(len(handles), 6))
    fig.suptitle(f"Backtest: forecast vs actual from the cut-off {result.cutoffs_dates[-1].date()}", fontsize=13)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _dates(panel: Panel, periods: np.ndarray):
    """Grid positions as dates (positions past the table's end continue its frequency)."""
    return panel.date_at(np.asarray(periods, dtype=int))


def _pick_items(panel: Panel, fold, n_items: int) -> list[tuple[str, int]]:
    n_new = min(len(fold.rows[NEW]), max(1, n_items // 4)) if len(fold.rows[NEW]) else 0
    volume = np.nansum(fold.truth[HISTORY], axis=1)
    top = np.argsort(-volume, kind="stable")[: n_items - n_new]
    new_volume = np.nansum(fold.truth[NEW], axis=1)
    top_new = np.argsort(-new_volume, kind="stable")[:n_new]
    return [(HISTORY, int(k)) for k in top] + [(NEW, int(k)) for k in top_new]


def plot_metric_bars(summary, path: str | Path, metric: str = "wape", chosen: dict[str, str] | None = None) -> Path:
    """One bar per model and group, best on top: the backtest table at a glance, the chosen model
    of each group (``chosen``) marked."""
    chosen = chosen or {}
    groups = list(dict.fromkeys(summary["group"]))
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(6 * max(len(groups), 1), 4), squeeze=False)
    if not groups:  # e.g. only the kNN, and no product launched inside the backtest: nothing was scored
        axes[0, 0].text(0.5, 0.5, "no model could be scored in the backtest", ha="center", va="center")
    for ax, group in zip(axes.flat, groups):
        part = summary[summary["group"] == group].sort_values(metric)
        picked = (part["model"] == chosen.get(group)).to_numpy()
        labels = [f"{m} (chosen)" if p else m for m, p in zip(part["model"], picked)]
        ax.barh(labels, part[metric], color=np.where(picked, "tab:orange", "tab:blue"))
        ax.invert_yaxis()
        ax.set_title(f"{metric.upper()} — items with {'history' if group == HISTORY else 'no history (new)'}",
                     fontsize=12)
        ax.set_xlabel(f"backtest {metric.upper()} (lower is better)", fontsize=10)
        ax.tick_params(labelsize=10)
        for y, v in enumerate(part[metric]):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_trends(report, path: str | Path, top: int = 5, weeks: str = "") -> Path:
    """Per dimension (attribute, word), the ``top`` highest and lowest shrunk changes with their
    intervals: a dot per value (colour = direction), its interval (at the forecast range's level) as a bar, and the raw,
    unshrunk change as a cross, so a planner sees what volume and uncertainty did to it. ``weeks``
    names the periods compared (the figure's title)."""
    from forecast.outputs.trends import OVERALL

    colours = {"rising": "tab:green", "falling": "tab:red", "flat": "0.5"}
    overall = report.loc[report["dimension"] == OVERALL, "shrunk_change"]
    report = report[report["dimension"] != OVERALL]
    dimensions = list(dict.fromkeys(report["dimension"]))
    picks = [_extremes(report[report["dimension"] == d], top) for d in dimensions]
    heights = [max(len(p), 1) * 0.32 + 0.9 for p in picks]
    fig, axes = plt.subplots(len(picks) or 1, 1, figsize=(9, sum(heights) or 2), squeeze=False,
                             gridspec_kw={"height_ratios": heights or [1]})
    for ax, dimension, part in zip(axes.flat, dimensions, picks):
        y = np.arange(len(part))[::-1]
        change, lo, hi = (100 * part[c].to_numpy(float) for c in ("shrunk_change", "change_lo", "change_hi"))
        for yk, ck, lk, hk, d in zip(y, change, lo, hi, part["direction"]):
            ax.plot([lk, hk], [yk, yk], color=colours[d], lw=2.5, alpha=0.45, solid_capstyle="butt")
            ax.plot(ck, yk, "o", color=colours[d], ms=6)
        edge = 1.3 * max(np.abs(np.r_[lo, hi]).max(initial=0), 10)  # a raw +495 % is drawn at the edge
        ax.plot(np.clip(100 * part["change"].to_numpy(float), -edge, edge), y, "x", color="black", ms=5)
        ax.set_xlim(-105, edge)  # no change is below -100 %
        ax.axvline(0, color="black", lw=0.8)
        if len(overall):
            ax.axvline(100 * overall.iloc[0], color="tab:blue", lw=1, ls="--")
        labels = [f"{v}  ({n} products, {r:,.0f} → {f:,.0f})" for v, n, r, f in
                  zip(part["value"], part["products"], part["reference_units"], part["forecast_units"])]
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_title(f"{dimension}: top rising and falling (change vs reference, %)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="-", color=c, label=d) for d, c in colours.items()]
    handles.append(plt.Line2D([], [], marker="x", ls="", color="black", label="unshrunk change"))
    handles.append(plt.Line2D([], [], ls="--", color="tab:blue", label="all products (what small groups shrink to)"))
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=3)
    if weeks:
        fig.suptitle(weeks, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _extremes(part, top: int):
    """The ``top`` highest and ``top`` lowest rows by shrunk change, highest first, none twice."""
    ordered = part.sort_values("shrunk_change", ascending=False, kind="stable")
    if len(ordered) <= 2 * top:
        return ordered
    return ordered.iloc[np.r_[:top, len(ordered) - top:len(ordered)]]


def plot_band_coverage(bands, path: str | Path) -> Path:
    """Coverage of the forecast ranges per volume band (quintiles of forecast level, top 5 %),
    held out in the backtest: per item group and level, each model's chosen method (solid) against
    the nominal level (dashed) and one absolute error for every item (``absolute``, dotted), so a
    planner sees whether a best seller's range holds as often as a slow seller's."""
    from forecast.evaluation.metrics import BANDS

    keys = list(dict.fromkeys(zip(bands["group"], bands["level"])))
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4.5 * max(len(keys), 1), 3.4), squeeze=False)
    if not keys:
        axes[0, 0].text(0.5, 0.5, "no held-out coverage (one backtest fold)", ha="center", va="center")
    x = np.arange(len(BANDS))
    for ax, (group, level) in zip(axes.flat, keys):
        part = bands[(bands["group"] == group) & (bands["level"] == level)]
        for k, (model, rows) in enumerate(part.groupby("model", sort=False)):
            colour = f"C{k % 10}"
            for chosen, style in ((True, "-"), (False, ":")):
                line = rows[rows["chosen"] if chosen else rows["method"] == "absolute"]
                if len(line) and (chosen or not line["chosen"].any()):
                    values = line.set_index("band")["coverage"].reindex(BANDS).to_numpy(float)
                    label = f"{model} ({line['method'].iloc[0]}{'' if chosen else ', one width for all'})"
                    ax.plot(x, values, style, marker="o" if chosen else None, color=colour, ms=4, label=label)
        ax.axhline(level, color="black", ls="--", lw=1, label="nominal")
        ax.set_xticks(x, [b.replace("top5", "top 5%") for b in BANDS], fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{group}: {level:.0%} ranges, coverage by volume", fontsize=9)
        ax.legend(fontsize=6, loc="lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
