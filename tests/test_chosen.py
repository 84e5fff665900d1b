"""The chosen-forecast arm (experiments/chosen_benchmark.py): fit's own path on the data known at an origin,
its export put on the benchmark's cells. A forecast shifted by a week, an item in the wrong group or a
launch forecast from the wrong week must fail here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.models.base import HISTORY, NEW

from experiments import common

MONDAYS = pd.date_range("2024-01-01", periods=34, freq="W-MON")
CUTOFF = 20


@pytest.fixture
def panel(tmp_path: Path):
    """a sells from period 0 (10 + t), b from 6 (50 + t), c from 10 (alternating 4 and 8); d launches at 22
    and e at 25, after the cut-off (new at the origin, with 12 and 9 weeks of truth)."""
    rows = ([("a", MONDAYS[t], 10 + t) for t in range(34)] + [("b", MONDAYS[t], 50 + t) for t in range(6, 34)]
            + [("c", MONDAYS[t], 4 + 4 * (t % 2)) for t in range(10, 34)]
            + [("d", MONDAYS[t], 30.0) for t in range(22, 34)] + [("e", MONDAYS[t], 7.0) for t in range(25, 34)])
    pd.DataFrame(rows, columns=["item_id", "date", "units"]).to_csv(tmp_path / "sales.csv", index=False)
    pd.DataFrame({"item_id": list("abcde"), "description": ["red mug", "blue mug", "green cup", "red cup",
                                                               "blue plate"]}).to_csv(tmp_path / "products.csv",
                                                                                      index=False)
    return build_panel(load_tables(tmp_path / "sales.csv", tmp_path / "products.csv"))


def baseline_config():
    """fit's defaults with two baselines only (no neural model, no process pool): fast and exact."""
    return common.fit_config("online_retail", seed=0).updated(
        {"models": ["moving_average", "launch_curve"], "baselines.n_jobs": 1})


def test_the_chosen_export_lands_on_the_folds_items_and_weeks(panel) -> None:
    export, meta = common.chosen_forecast(panel, CUTOFF, baseline_config())
    frame = common.export_long_frame(panel, CUTOFF, export)
    assert meta["chosen"] == {HISTORY: "moving_average", NEW: "launch_curve"}
    assert set(frame["model"]) == {common.CHOSEN}
    assert {"units_p10", "units_p90"} <= set(frame.columns)  # the exported 80 % range travels with it
    truth = common.truth_table(panel, [CUTOFF], (HISTORY, NEW))
    key = MONDAYS[CUTOFF].strftime("%Y-%m-%d")

    ids, start, _, _ = truth[key, HISTORY]
    pred, own = common.align(panel, ids, start, frame[frame["group"] == HISTORY])
    assert list(ids) == ["a", "b", "c"] and own.all()
    last4 = {"a": np.mean([26, 27, 28, 29]), "b": np.mean([66, 67, 68, 69]), "c": 6.0}  # periods 16-19
    np.testing.assert_allclose(pred, np.repeat([[last4[i]] for i in ids], 12, axis=1), atol=0.005)

    ids, start, y, _ = truth[key, NEW]
    pred, own = common.align(panel, ids, start, frame[frame["group"] == NEW])
    assert list(ids) == ["d", "e"] and own.all() and list(start) == [22, 25]
    # launch_curve with fewer than 10 observed launches: every item's first 12 weeks known before the
    # cut-off, averaged per step over the items that reached it (c only reached 10 of them)
    k = np.arange(12)
    a, b, c = 10.0 + k, 56.0 + k, np.where(k < 10, 4.0 + 4 * ((10 + k) % 2), np.nan)
    np.testing.assert_allclose(pred, np.repeat(np.nanmean([a, b, c], axis=0)[None, :], 2, axis=0), atol=0.005)
    assert np.isnan(y[1, 9:]).all()  # e's weeks past the data have no truth, whatever is forecast there


def test_an_export_that_puts_a_fold_item_in_the_other_group_is_refused(panel) -> None:
    export, _ = common.chosen_forecast(panel, CUTOFF, baseline_config())
    wrong = export.assign(group=np.where(export["item_id"] == "d", HISTORY, export["group"]))
    with pytest.raises(ValueError, match="other group"):
        common.export_long_frame(panel, CUTOFF, wrong)


def test_the_meta_keeps_the_backtests_held_out_bands_of_the_chosen_model_and_method_only(panel) -> None:
    _, meta = common.chosen_forecast(panel, CUTOFF, baseline_config())
    bands = pd.DataFrame(meta["bands"])
    assert not bands.empty
    assert set(zip(bands["group"], bands["model"])) <= set(meta["chosen"].items())
    assert (bands.groupby("group")["method"].nunique() == 1).all()  # the method the export's ranges use
    assert set(bands["level"]) == {0.8, 0.9}
