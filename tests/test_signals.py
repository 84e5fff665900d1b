"""Exogenous signals (--signals): validation, mapping to products, and the leakage rule."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from forecast.cli import main
from forecast.core.config import DataConfig
from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.data.signals import attach_signals, signal_windows
from tests.conftest import assert_refused, run_cli, write_csv

WEEKS = pd.date_range("2024-01-01", periods=10, freq="W-MON")
SALES = "item_id,date,units\n" + "".join(f"{i},{d.date()},{u}\n" for i, u in (("A", 4), ("B", 7)) for d in WEEKS)
PRODUCTS = ("item_id,description,colour,launch_date\n"
            "A,red wool coat,Red,\nB,blue cotton dress,blue,\nN,green wool scarf,green,2024-03-25\n")


def signal_csv(start: str = "2023-10-02", periods: int = 40) -> str:
    """red = 1000 + grid position (so a value names its own date), wool = 1, cotton = 2; from before the table."""
    dates = pd.date_range(start, periods=periods, freq="W-MON")
    position = (dates - WEEKS[0]).days // 7
    return "date,red,wool,cotton\n" + "".join(f"{d.date()},{1000 + p},1,2\n" for d, p in zip(dates, position))


@pytest.fixture
def files(tmp_path):
    return (write_csv(tmp_path, "sales.csv", SALES), write_csv(tmp_path, "products.csv", PRODUCTS),
            write_csv(tmp_path, "signals.csv", signal_csv()))


def panel_with_signals(files):
    return attach_signals(build_panel(load_tables(files[0], files[1], DataConfig())), files[2])


def test_fit_with_signals_logs_which_products_use_which(workdir, files, caplog):
    with caplog.at_level(logging.INFO):
        code = main(["fit", "--sales", files[0], "--products", files[1], "--signals", files[2], "--horizon", "2",
                     "--folds", "1", "--models", "moving_average", "--no-progress"])
    assert code == 0
    assert "signals from signals.csv: 3 signal(s); 1 product(s) use 2, 2 product(s) use 1" in caplog.text
    assert "attribute values with no signal: colour=blue, colour=green" in caplog.text


def test_products_match_signals_by_attribute_value_or_word_case_insensitively(files):
    p = panel_with_signals(files)
    names = p.signals.names
    assert [[names[k] for k in picks] for picks in p.signals.items] == [["red", "wool"], ["cotton"], ["wool"]]
    assert p.signals.first == -13 and p.signals.values.shape == (3, 40)


BAD = {
    "missing_date": ("week,red\n2024-01-01,3\n", ["signals.csv", "missing required column(s) 'date'", "found columns: week"]),
    "no_signal_columns": ("date\n2024-01-01\n", ["signals.csv", "no signal columns"]),
    "unparseable_date": ("date,red\n2024-01-01,3\nsoon,4\n", ["signals.csv", "'date'", "line 3", "soon"]),
    "non_numeric": ("date,red\n2024-01-01,3\n2024-01-08,high\n", ["signals.csv", "'red'", "not numbers", "line 3"]),
    "nan": ("date,red\n2024-01-01,3\n2024-01-08,\n", ["signals.csv", "'red'", "empty or NaN", "line 3"]),
    "duplicate_date": ("date,red\n2024-01-01,3\n2024-01-01,4\n", ["signals.csv", "'date'", "repeat", "line 3"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_signal_files_are_refused_naming_file_column_and_lines(workdir, files, capsys, case):
    text, needles = BAD[case]
    bad = write_csv(workdir, "signals.csv", text)
    code, err = run_cli(capsys, ["fit", "--sales", files[0], "--products", files[1], "--signals", bad,
                                 "--horizon", "2", "--folds", "1", "--models", "moving_average", "--no-progress"])
    assert_refused(code, err, *needles)


def test_off_grid_signal_dates_are_averaged_into_their_periods(files, tmp_path, caplog):
    days = pd.date_range("2024-01-01", periods=21, freq="D")  # three weeks of daily values 0..20
    daily = write_csv(tmp_path, "daily.csv", "date,red\n" + "".join(f"{d.date()},{k}\n" for k, d in enumerate(days)))
    with caplog.at_level(logging.INFO):
        p = attach_signals(build_panel(load_tables(files[0], files[1], DataConfig())), daily)
    assert "21 dates are not on the W-MON grid: averaged into the 3 periods" in caplog.text
    np.testing.assert_allclose(p.signals.values[0], [3, 10, 17])


# --- the leakage rule -------------------------------------------------------------------------------
def visible_positions(values: np.ndarray) -> np.ndarray:
    """Grid positions named by the visible 'red' values (1000 + position), NaN where hidden."""
    return values[..., 0] - 1000


def test_a_window_sees_only_signal_values_dated_before_its_origin(files):
    p = panel_with_signals(files)
    origins = np.array([3, 8, 10])
    seen = visible_positions(signal_windows(p.signals, np.array([0, 0, 0]), origins, 52))
    for k, origin in enumerate(origins):
        positions = seen[k][np.isfinite(seen[k])]
        assert positions.max() == origin - 1  # the last week before the origin ...
        assert (positions < origin).all()  # ... and never a forecast week
        assert positions.min() == -13  # as far back as the signal goes


def test_a_signal_equal_to_the_future_truth_is_not_visible(files):
    """The trap: 'red' carries item A's future sales; changing them changes nothing a model sees."""
    p = panel_with_signals(files)
    origin, H = 6, 3
    before = signal_windows(p.signals, np.array([0]), np.array([origin]), 16)
    trap = p.signals.values.copy()
    trap[0, origin - p.signals.first: origin - p.signals.first + H] = p.units[0, origin:origin + H] * 1e6
    p.signals.values = trap
    after = signal_windows(p.signals, np.array([0]), np.array([origin]), 16)
    np.testing.assert_array_equal(before, after)


def test_a_new_product_sees_signals_before_its_launch_and_a_backtest_nothing_after_its_cutoff(files):
    p = panel_with_signals(files)
    new = int(np.flatnonzero(p.item_ids == "N")[0])
    launch = p.start[new]
    assert launch == 12  # 2024-03-25, after the table
    seen = signal_windows(p.signals, np.array([new]), np.array([launch]), 52)
    assert np.isnan(seen[..., 0]).all()  # N does not use 'red'
    wool = seen[0, :, p.signals.names.index("wool")]
    assert np.isfinite(wool[-1]) and np.isnan(seen[0, :, 2]).all()  # its 'wool' up to the week before launch
    cut = p.truncate(5)
    seen = visible_positions(signal_windows(cut.signals, np.array([0]), np.array([8]), 16))
    assert np.nanmax(seen) == 4  # at a backtest cut-off of 5, later signal values are unknown
