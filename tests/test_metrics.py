import numpy as np
import pytest

from forecast.evaluation.metrics import mase_scale, score, score_by_step


def test_metrics_match_hand_computed_values():
    actual = np.array([[10.0, 0.0, 5.0], [2.0, 2.0, np.nan]])
    forecast = np.array([[8.0, 1.0, 5.0], [4.0, 2.0, 100.0]])
    m = score(actual, forecast, scale=np.array([2.0, 1.0]))
    # errors (f - y) on the 5 cells with truth: -2, 1, 0, 2, 0
    assert m["n"] == 5
    assert m["mae"] == pytest.approx(5 / 5)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 1 + 0 + 4 + 0) / 5))
    assert m["wape"] == pytest.approx(5 / 19)
    assert m["bias"] == pytest.approx(1 / 19)
    # sMAPE cells: 2*2/18, 2*1/1, 0, 2*2/6, 0
    assert m["smape"] == pytest.approx((4 / 18 + 2 + 0 + 4 / 6 + 0) / 5)
    # MASE: item MAE 1.0 / 2 and 1.0 / 1
    assert m["mase"] == pytest.approx((0.5 + 1.0) / 2)


def test_mase_scale_seasonal_and_short_fallback():
    seasonal = np.tile([1.0, 5.0, 3.0, 7.0], 3)
    assert mase_scale(seasonal, 4) == 0.0
    assert mase_scale(np.array([1.0, 3.0, 6.0]), 52) == pytest.approx(2.5)  # lag 1 on short history
    assert np.isnan(mase_scale(np.array([4.0]), 52))


def test_zero_scale_items_are_left_out_of_mase():
    m = score(np.array([[1.0], [2.0]]), np.array([[2.0], [2.0]]), scale=np.array([0.0, 1.0]))
    assert m["mase"] == pytest.approx(0.0)


def test_no_truth_gives_nan_and_zero_count():
    m = score(np.full((2, 2), np.nan), np.ones((2, 2)))
    assert m["n"] == 0 and np.isnan(m["wape"])


def test_per_step_scores_each_column():
    actual = np.array([[1.0, 10.0], [3.0, 10.0]])
    forecast = np.array([[2.0, 10.0], [3.0, 0.0]])
    steps = score_by_step(actual, forecast)
    assert [s["mae"] for s in steps] == [pytest.approx(0.5), pytest.approx(5.0)]


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        score(np.ones((2, 3)), np.ones((3, 2)))
