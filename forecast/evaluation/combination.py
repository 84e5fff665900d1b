"""The ``ensemble`` model: per item group, a weighted average of the fitted models' forecasts.

It fits nothing new. The backtest already holds every model's forecast on every fold, so the
combination only learns, per group (history / new), non-negative weights that sum to 1:

- **Fit.** The weights minimise the WAPE of ``Σ_k w_k · forecast_k`` against the actuals over the
  folds' cells (Σ|y − F w|, w ≥ 0, Σ w = 1: the metric the backtest chooses models by). The L1 fit
  is solved by iteratively reweighted least squares, a majorise-minimise scheme that lowers the
  objective at every step; each step is a least-squares problem on the simplex with K unknowns.
- **Shrinkage.** The fitted weights can be pulled toward equal weights:
  ``w = (1 − s) · w_fit + s / K`` with ``s = baselines.ensemble_shrinkage``; s = 0 keeps the fitted
  weights, s = 1 is the plain average of the members. Equal weights are the classic hedge when
  weights are estimated from few periods (the "forecast combination puzzle"). Here each fold holds
  thousands of cells, and on every data set measured the weights fitted on two folds scored on the
  third almost as well as on their own folds, while any s > 0 raised the WAPE (members such as
  seasonal_naive are far worse than the best one): the default is s = 0
  (experiments/results/combination.md).
- **Honest score.** Its backtest forecast on fold f uses weights fitted on the *other* folds only
  (leave-one-fold-out), so its score never comes from the folds that set its weights; it is then
  scored, ranged (forecast.evaluation.intervals) and chosen like any model. With one fold there is nothing to
  hold out: the ensemble is not scored, so not chosen (``--model ensemble`` still forces it).
- **Future forecast.** The weights fitted on all folds, applied to the refitted members' forecasts.

Members: per group, every forecast on every fold that scores the group: each fitted model's own and
its prediction variants' (``fusion:average_text_new``, ``launch_curve:attributes``), so a variant
that wins on its own (fusion's average-description forecast of VISUELLE's launches) is not left out
of the combination. They are not pre-selected on the folds, so the leave-one-fold-out score stays
honest; the weights sort them (a variant equal to its model's forecast for a group just splits its
weight). A group with fewer than two members has nothing to combine and is not scored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from forecast.evaluation.backtest import BacktestResult, FoldResult
from forecast.data.panel import Panel
from forecast.models.base import HISTORY, NEW, Prediction, in_group, variant_name
from forecast.models.registry import forecast_as

log = logging.getLogger(__name__)

NAME = "ensemble"
IRLS_STEPS = 50  # reweighted least-squares steps of the WAPE fit (it stops earlier once the weights settle)


@dataclass
class GroupWeights:
    """One group's combination: its members and their weights (non-negative, summing to 1)."""

    members: list[str]
    weights: np.ndarray
    fold_weights: list[np.ndarray] = field(default_factory=list)  # the leave-one-fold-out weights, per fold


@dataclass
class Ensemble:
    """The combination per item group, as fitted on a backtest (and logged)."""

    shrinkage: float
    groups: dict[str, GroupWeights] = field(default_factory=dict)  # weights fitted on all folds

    def to_dict(self) -> dict:
        """What was combined and how, as JSON-ready data (the MLflow artifact ``ensemble.json``)."""
        return {"shrinkage": self.shrinkage, "groups": {
            group: {"weights": dict(zip(gw.members, map(float, gw.weights))),
                    "leave_one_fold_out_weights": [dict(zip(gw.members, map(float, w))) for w in gw.fold_weights]}
            for group, gw in self.groups.items()}}

    def describe(self) -> str:
        """One line per group, e.g. ``history: 0.52 ets + 0.31 theta + 0.17 moving_average``."""
        return "; ".join(f"{group}: " + " + ".join(f"{w:.2f} {m}" for m, w in sorted(
            zip(gw.members, gw.weights), key=lambda mw: -mw[1])) for group, gw in self.groups.items())


# --- the weights ------------------------------------------------------------------------------
def simplex_least_squares(forecasts: np.ndarray, truth: np.ndarray, cell_weights: np.ndarray) -> np.ndarray:
    """argmin_w Σ c_i (y_i − F_i w)² subject to w ≥ 0, Σ w = 1 (``forecasts`` F: [n, K])."""
    from scipy.optimize import minimize

    k = forecasts.shape[1]
    weighted = forecasts * cell_weights[:, None]
    gram, target = forecasts.T @ weighted, weighted.T @ truth
    norm = max(float(np.abs(gram).max()), 1e-12)  # scaled so the solver's tolerances mean the same for any units
    gram, target = gram / norm, target / norm
    result = minimize(lambda w: w @ gram @ w - 2 * target @ w, np.full(k, 1.0 / k),
                      jac=lambda w: 2 * (gram @ w - target), method="SLSQP", bounds=[(0.0, 1.0)] * k,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}],
                      options={"ftol": 1e-12, "maxiter": 200})
    return _on_simplex(result.x)


def wape_weights(forecasts: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """argmin_w Σ|y − F w| subject to w ≥ 0, Σ w = 1: the combination of lowest WAPE on these cells.

    Iteratively reweighted least squares: |r| ≤ r² / (2|r₀|) + |r₀| / 2, so each weighted
    least-squares step on the simplex lowers the absolute error (majorise-minimise); the floor
    ``eps`` on |r₀| keeps exactly-fitted cells from taking infinite weight.
    """
    keep = np.isfinite(truth) & np.isfinite(forecasts).all(axis=1)
    forecasts, truth = forecasts[keep], truth[keep]
    if truth.size == 0:
        return np.full(forecasts.shape[1], 1.0 / forecasts.shape[1])
    eps = max(1e-3 * float(np.mean(np.abs(truth))), 1e-9)
    weights = simplex_least_squares(forecasts, truth, np.ones_like(truth))
    for _ in range(IRLS_STEPS):
        residual = np.abs(truth - forecasts @ weights)
        updated = simplex_least_squares(forecasts, truth, 1.0 / np.maximum(residual, eps))
        if np.abs(truth - forecasts @ updated).sum() > residual.sum():
            break  # no lower: the floor eps has the last word
        settled = np.abs(updated - weights).max() < 1e-6
        weights = updated
        if settled:
            break
    return weights


def shrink(weights: np.ndarray, shrinkage: float) -> np.ndarray:
    """``(1 − s) · weights + s · equal``: weights pulled toward the plain average (see the module docstring)."""
    return _on_simplex((1.0 - shrinkage) * weights + shrinkage / len(weights))


def fit_weights(truth: list[np.ndarray], stacks: list[np.ndarray], shrinkage: float) -> np.ndarray:
    """The shrunk WAPE weights over these folds (``truth`` [m, H] and ``stacks`` [m, H, K] per fold)."""
    y = np.concatenate([t.reshape(-1) for t in truth])
    f = np.concatenate([s.reshape(-1, s.shape[-1]) for s in stacks])
    return shrink(wape_weights(f, y), shrinkage)


def leave_one_fold_out(truth: list[np.ndarray], stacks: list[np.ndarray],
                       shrinkage: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(combined forecast, weights) per fold, each from the weights fitted on the other folds only.
    Needs at least two folds."""
    if len(truth) < 2:
        raise ValueError("leave-one-fold-out needs at least two folds")
    forecasts, weights = [], []
    for k in range(len(truth)):
        rest = [i for i in range(len(truth)) if i != k]
        w = fit_weights([truth[i] for i in rest], [stacks[i] for i in rest], shrinkage)
        forecasts.append(stacks[k] @ w)
        weights.append(w)
    return forecasts, weights


def _on_simplex(weights: np.ndarray) -> np.ndarray:
    """Round-off removed: no negative weight, a sum of exactly 1."""
    weights = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    return weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1.0 / len(weights))


# --- on the backtest --------------------------------------------------------------------------
def members(folds: list[FoldResult], group: str) -> list[str]:
    """The fitted models' forecasts and prediction variants (not a combination) of ``group`` on every fold
    that scores it, in the backtest's order."""
    scored = [f for f in folds if f.truth[group].size]
    if not scored:
        return []
    return [n for n in scored[0].forecasts if n != NAME and all(group in f.forecasts.get(n, {}) for f in scored)]


def add_to_backtest(backtest: BacktestResult, shrinkage: float) -> tuple[BacktestResult, Ensemble]:
    """The backtest with the ensemble's leave-one-fold-out forecasts and scores added (where it can be
    scored: two or more members and folds), and the weights fitted on all folds for the future forecast."""
    ensemble = Ensemble(shrinkage)
    scored_any = False
    for group in (HISTORY, NEW):
        names = members(backtest.folds, group)
        if not names:
            continue
        folds = [f for f in backtest.folds if f.truth[group].size]
        truth = [f.truth[group] for f in folds]
        stacks = [np.stack([f.forecasts[n][group] for n in names], axis=-1) for f in folds]
        gw = GroupWeights(names, fit_weights(truth, stacks, shrinkage))
        ensemble.groups[group] = gw
        if len(names) < 2 or len(folds) < 2:
            log.info("ensemble, %s items: not scored (%s): it is not chosen on the backtest", group,
                     "one member, nothing to combine" if len(names) < 2 else
                     "one fold scores them, none left to hold out")
            continue
        combined, gw.fold_weights = leave_one_fold_out(truth, stacks, shrinkage)
        for fold, values in zip(folds, combined):
            fold.forecasts.setdefault(NAME, {})[group] = values
        scored_any = True
    if not scored_any:
        return backtest, ensemble
    used = {n for gw in ensemble.groups.values() for n in gw.members}
    summary = backtest.summary()
    seconds = float(summary.loc[summary["model"].isin(used)].groupby("model")["fit_seconds"].first().sum())
    return backtest.with_model(NAME, seconds), ensemble


# --- the future forecast ----------------------------------------------------------------------
def chosen_groups(chosen: dict[str, str], ensemble: Ensemble) -> dict[str, GroupWeights]:
    """The groups the ensemble forecasts: chosen for them (or forced with ``--model ensemble``) and
    combinable; a forced group with no member to combine is said, and gets no rows."""
    groups = {}
    for group, name in chosen.items():
        if name != NAME:
            continue
        if group in ensemble.groups:
            groups[group] = ensemble.groups[group]
        else:
            log.warning("ensemble: no fitted model forecasts %s items, so there is nothing to combine for them", group)
    return groups


def combine(panel: Panel, predictions: dict[str, Prediction], group: str, gw: GroupWeights) -> Prediction:
    """The ensemble's forecast of ``group``'s items: the members' refitted forecasts, weighted.

    Items are those every member forecasts; price comes from the heaviest member that forecasts one.
    ``predictions`` are keyed by fitted model; a member that is a variant takes that model's variant."""
    parts = {m: _group_rows(panel, member_forecast(predictions, m), group) for m in gw.members}
    common = sorted(set.intersection(*(set(p.item_index.tolist()) for p in parts.values())))
    dropped = max(len(p.item_index) for p in parts.values()) - len(common)
    if dropped:
        log.warning("ensemble, %s items: %d product(s) lack a forecast from some member and are left out",
                    group, dropped)
    aligned = {m: _rows(p, np.array(common, dtype=int)) for m, p in parts.items()}
    units = sum(w * aligned[m].units for m, w in zip(gw.members, gw.weights))
    first = aligned[gw.members[0]]
    heaviest = [aligned[m] for m in np.array(gw.members)[np.argsort(-gw.weights, kind="stable")]]
    price = next((p.price for p in heaviest if p.price is not None), None)
    return Prediction(NAME, first.item_index, first.start, np.asarray(units, dtype=float), price)


def member_forecast(predictions: dict[str, Prediction], name: str) -> Prediction:
    """Member ``name``'s forecast from its fitted model's prediction (:func:`registry.forecast_as`)."""
    return forecast_as(predictions[variant_name(name)[0]], name)


def _group_rows(panel: Panel, prediction: Prediction, group: str) -> Prediction:
    return prediction.select(in_group(panel.has_history[prediction.item_index], group))


def _rows(prediction: Prediction, rows: np.ndarray) -> Prediction:
    """The prediction's forecasts of exactly these panel rows, in this order."""
    position = {int(r): k for k, r in enumerate(prediction.item_index)}
    order = np.array([position[int(r)] for r in rows], dtype=int)
    take = lambda a: None if a is None else a[order]  # noqa: E731
    return Prediction(prediction.model, prediction.item_index[order], prediction.start[order],
                      prediction.units[order], take(prediction.price), take(prediction.trend))
