"""Forecast ranges on the weeks after the backtest: when the backtest's folds disagree, the best sellers'
ranges still hold (forecast.evaluation.intervals.choose's fallback; experiments/results/ranges_shift.md)."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.evaluation.intervals import (FALLBACK_METHOD, MIN_BAND, TOLERANCE, band_coverage, calibrate, choose,
                                         evaluate)
from tests.test_intervals import volume_noise_folds


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_when_no_method_holds_in_every_band_the_best_sellers_ranges_hold_on_later_weeks(level) -> None:
    truth, forecasts = volume_noise_folds(folds=4, items=2000)
    later_truth, later_forecast = truth.pop(), forecasts.pop()  # the weeks after the backtest, as fit exports
    forecasts[0] = np.zeros_like(forecasts[0])  # a fold cut just after a closed week: a naive forecast of 0
    results = evaluate(truth, forecasts, (level,))
    assert min(r["gap"] for r in results.values()) > TOLERANCE  # leave-one-fold-out, no method passes

    method = choose({m: (r["gap"], r["wql"]) for m, r in results.items()})
    ranges = calibrate(method, truth, forecasts, (level,)).ranges(later_forecast)
    later = {b["band"]: b["coverage"] for b in band_coverage(later_truth, later_forecast, ranges)}
    assert all(abs(later[band] - level) <= 0.05 for band in ("q3", "q4", "q5", "top5")), (method, later)
    assert method == FALLBACK_METHOD


def test_a_band_with_too_few_errors_at_a_step_borrows_from_the_bands_next_to_it_not_the_slow_sellers() -> None:
    truth, forecasts = volume_noise_folds(folds=3, items=2000)
    rng = np.random.default_rng(1)
    for fold in truth:  # the last step scored for 3 % of items (new products launched early enough)
        fold[rng.random(len(fold)) < 0.97, -1] = np.nan
    q = calibrate("sqrt+bands", truth, forecasts, (0.8,)).quantile[0.8]  # [bands, steps], top band last
    top_errors = sum(np.isfinite(t[f[:, 0] >= np.quantile(np.concatenate(forecasts)[:, 0], 0.95), -1]).sum()
                     for t, f in zip(truth, forecasts))
    assert top_errors < MIN_BAND  # the top band is too thin at the last step for a quantile of its own
    assert q[-1, -1] >= q[-2, -1] > q[0, -1]  # a best seller's range at least the 80-95 % band's, not the pooled one
    assert q[-1, 0] > q[-2, 0]  # at a step with errors enough, each band keeps its own
