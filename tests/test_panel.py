import numpy as np
import pandas as pd
import pytest

from forecast.core.config import DataConfig
from forecast.data import synthetic
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.core.errors import DataError
from tests.conftest import write_csv

SALES = "item_id,date,units,price\nA,2024-01-01,3,2.0\nA,2024-01-15,5,2.5\nB,2024-01-08,1,9.0\nB,2024-01-22,2,\n"
PRODUCTS = "item_id,description,launch_date\nA,red coat,\nB,blue coat,\nC,new green coat,2024-02-12\n"


def panel_from(tmp_path, sales=SALES, products=PRODUCTS, **kwargs):
    tables = load_tables(write_csv(tmp_path, "s.csv", sales), write_csv(tmp_path, "p.csv", products),
                         DataConfig(negative_units=kwargs.pop("negative_units", "error")))
    return build_panel(tables, **kwargs)


def test_gaps_are_zero_and_series_start_at_first_sale(tmp_path):
    p = panel_from(tmp_path)
    assert p.freq == "W-MON" and p.season_length == 52
    np.testing.assert_array_equal(p.units[0], [3, 0, 5, 0])
    np.testing.assert_array_equal(p.units[1], [np.nan, 1, 0, 2])
    assert p.gaps_filled == 3
    # price is carried forward through gaps and a missing value
    np.testing.assert_array_equal(p.price[0], [2.0, 2.0, 2.5, 2.5])
    np.testing.assert_array_equal(p.price[1, 1:], [9.0, 9.0, 9.0])


def test_new_product_starts_at_its_launch_after_the_table(tmp_path):
    p = panel_from(tmp_path)
    assert list(p.has_history) == [True, True, False]
    assert p.start[2] == 6  # 2024-02-12 is 6 weeks after 2024-01-01
    assert str(p.date_at(p.start[2])[0].date()) == "2024-02-12"


def test_gaps_error_mode_names_the_series(tmp_path):
    with pytest.raises(DataError, match="missing period"):
        panel_from(tmp_path, gaps="error")


def test_negative_units_can_be_counted_as_zero(tmp_path):
    p = panel_from(tmp_path, sales=SALES + "A,2024-01-22,-2,2.0\n", negative_units="zero")
    assert p.units[0, 3] == 0


def test_truncate_turns_late_starters_into_new_products(tmp_path):
    p = panel_from(tmp_path).truncate(1)
    assert p.n_periods == 1
    assert list(p.has_history) == [True, False, False]
    assert p.start[1] == 1


def test_window_reads_past_the_end_as_nan(tmp_path):
    p = panel_from(tmp_path)
    w = p.window(np.array([0]), np.array([2]), 4)
    np.testing.assert_array_equal(w, [[5, 0, np.nan, np.nan]])


def test_synthetic_generator_is_deterministic_and_reads_its_words():
    a, pa = synthetic.generate(n_items=30, seed=3)
    b, pb = synthetic.generate(n_items=30, seed=3)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(pa, pb)
    level = a.merge(pa, on="item_id").groupby("colour")["units"].mean()
    assert level["red"] > level["yellow"] * 3  # the colour word decides the level
