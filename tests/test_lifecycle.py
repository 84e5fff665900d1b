"""The product life cycle in the data contract: launches anywhere on the grid, series that end.

Through the CLI on a ten-week table, plus the panel/backtest rules underneath.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from forecast.evaluation.backtest import _fold_targets
from forecast.cli import main
from forecast.core.config import DataConfig, RunConfig
from forecast.data.contract import load_tables
from forecast.models.neural.features import training_windows
from forecast.data.panel import OPEN_END, build_panel
from forecast.core.errors import ConfigError
from forecast.models.base import HISTORY, NEW
from tests.conftest import refused, write_csv

WEEKS = pd.date_range("2024-01-01", periods=10, freq="W-MON")  # table ends 2024-03-04; next week 2024-03-11


def sales_rows(item: str, weeks: range, units: float = 5.0) -> str:
    return "".join(f"{item},{WEEKS[w].date()},{units}\n" for w in weeks)


SALES = "item_id,date,units\n" + sales_rows("A", range(10)) + sales_rows("B", range(4)) + sales_rows("F", range(5)) \
    + sales_rows("G", range(10)) + sales_rows("L", range(7, 10))
PRODUCTS = (
    "item_id,description,launch_date,end_date\n"
    "A,red wool coat,,\n"
    "B,blue wool coat,,2024-01-22\n"      # ended in week 3: nothing after it, no future rows
    "C,green wool coat,2024-02-05,\n"     # no sales, launch inside the table (week 5)
    "D,grey wool coat,2023-12-04,\n"      # no sales, launch before the table starts (week -4)
    "E,black wool coat,,\n"               # no sales, no launch date: after the table
    "F,white wool coat,,\n"               # stops selling after week 4 (ends there with last-sale)
    "G,pink wool coat,,2024-03-18\n"      # ends inside the horizon: rows up to 2024-03-18 only
    "L,brown wool coat,2024-02-05,\n"     # launched week 5, first sale week 7
)


@pytest.fixture
def files(tmp_path):
    return write_csv(tmp_path, "sales.csv", SALES), write_csv(tmp_path, "products.csv", PRODUCTS)


def panel_of(files, **kwargs):
    return build_panel(load_tables(*files, DataConfig()), **kwargs)


def fit(files, *extra: str) -> pd.DataFrame:
    code = main(["fit", "--sales", files[0], "--products", files[1], "--horizon", "3", "--folds", "1",
                 "--models", "moving_average,knn", "--no-progress", *extra])
    assert code == 0
    return pd.read_csv("forecast.csv", dtype={"item_id": str})


def dates_of(export: pd.DataFrame, item: str) -> list[str]:
    return export.loc[export["item_id"] == item, "date"].tolist()


def test_fit_forecasts_each_product_from_its_launch_and_stops_at_its_end(workdir, files, caplog):
    with caplog.at_level(logging.INFO):
        export = fit(files)
    assert dates_of(export, "A") == ["2024-03-11", "2024-03-18", "2024-03-25"]
    # a past launch without sales rows (inside the table, or before it): missing sales, forecast for the coming weeks
    assert dates_of(export, "C") == ["2024-03-11", "2024-03-18", "2024-03-25"]
    assert dates_of(export, "D") == ["2024-03-11", "2024-03-18", "2024-03-25"]
    assert dates_of(export, "E") == ["2024-03-11", "2024-03-18", "2024-03-25"]  # no launch_date: after the table
    assert dates_of(export, "B") == []  # ended before the forecast start
    assert dates_of(export, "G") == ["2024-03-11", "2024-03-18"]  # ends inside the horizon
    assert dates_of(export, "F") == ["2024-03-11", "2024-03-18", "2024-03-25"]  # series-end table: runs on
    assert "2 product(s) have a launch_date before the sales table ends (2024-03-04) but no sales rows (C, D)" \
        in caplog.text
    assert "1 product(s) end before their forecast start: no future rows" in caplog.text


def test_new_products_no_model_serves_get_the_knn_fallback_and_every_missing_product_is_named(
        workdir, files, caplog):
    """--models moving_average serves only products with history: the new ones (C, D, E) still get rows
    (the description-kNN, said at WARNING), and the one product without rows (B, ended) is named with why."""
    code = main(["fit", "--sales", files[0], "--products", files[1], "--horizon", "3", "--folds", "1",
                 "--models", "moving_average", "--no-progress"])
    assert code == 0
    export = pd.read_csv("forecast.csv", dtype={"item_id": str})
    assert set(export["item_id"]) == set("ACDEFGL")
    assert set(export.loc[export["item_id"].isin(list("CDE")), "model"]) == {"knn"}
    assert dates_of(export, "C") == ["2024-03-11", "2024-03-18", "2024-03-25"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("none of --models moving_average forecasts new products: fitting knn for the 3" in w
               for w in warnings), warnings
    [missing] = [w for w in warnings if "no rows in the export" in w]
    assert "1 of 8 products" in missing and "ends before the forecast starts" in missing and ": B" in missing


def test_products_no_chosen_model_serves_are_named_at_warning(workdir, files, caplog):
    """--models knn serves only new products: those with history get no rows, and the run says which."""
    code = main(["fit", "--sales", files[0], "--products", files[1], "--horizon", "3", "--folds", "1",
                 "--models", "knn", "--no-progress"])
    assert code == 0
    export = pd.read_csv("forecast.csv", dtype={"item_id": str})
    assert set(export["item_id"]) == set("CDE")
    [missing] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "no rows" in r.getMessage()]
    assert "5 of 8 products" in missing
    assert "4 no model chosen forecasts products with history: A, F, G, L" in missing


def test_series_end_last_sale_ends_series_at_their_last_row(workdir, files, caplog):
    with caplog.at_level(logging.INFO):
        export = fit(files, "--series-end", "last-sale")
    assert dates_of(export, "F") == []
    assert dates_of(export, "B") == []
    assert dates_of(export, "A") == ["2024-03-11", "2024-03-18", "2024-03-25"]  # sold in the last week
    assert dates_of(export, "G") == ["2024-03-11", "2024-03-18"]  # an end_date wins over the last sale
    assert "2 product(s) end before their forecast start" in caplog.text


def test_bad_series_end_is_refused(workdir, files, capsys):
    refused(capsys, ["fit", "--sales", files[0], "--products", files[1], "--series-end", "never"], "--series-end")
    with pytest.raises(ConfigError, match="data.series_end: 'never' is not one of table, last-sale"):
        RunConfig().updated({"data.series_end": "never"})


def test_mostly_zero_filled_cells_warn_naming_the_options(workdir, tmp_path, caplog):
    sales = "item_id,date,units\n" + "".join(sales_rows(i, range(2)) for i in "ABC") + sales_rows("D", range(10))
    products = "item_id,description\nA,a red coat\nB,a blue coat\nC,a green coat\nD,a grey coat\n"
    files = write_csv(tmp_path, "s.csv", sales), write_csv(tmp_path, "p.csv", products)
    with caplog.at_level(logging.INFO):
        fit(files)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING and "zero-filled" in r.message]
    assert warnings and "--series-end" in warnings[0] and "--gaps" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        fit(files, "--series-end", "last-sale")
    assert "zero-filled" not in caplog.text


def test_end_date_before_a_sale_is_refused(workdir, tmp_path, capsys):
    products = PRODUCTS.replace("B,blue wool coat,,2024-01-22", "B,blue wool coat,,2024-01-08")
    files = write_csv(tmp_path, "sales.csv", SALES), write_csv(tmp_path, "products.csv", products)
    refused(capsys, ["fit", "--sales", files[0], "--products", files[1], "--models", "moving_average"],
            "products.csv: column 'end_date'", "line 3: item_id=B", outputs=("forecast.csv",))


# --- the panel and backtest rules ----------------------------------------------------------------
def test_launch_position_and_history_are_separate_facts(files):
    p = panel_of(files)
    row = {item: k for k, item in enumerate(p.item_ids)}
    T = p.n_periods
    assert [p.start[row[i]] for i in "CDEL"] == [T, T, T, 5]  # C, D: past launches without rows start now
    assert [bool(p.has_history[row[i]]) for i in "ACDEL"] == [True, False, False, False, True]
    assert p.first_sale[row["L"]] == 7
    np.testing.assert_array_equal(p.units[row["L"], 5:], [0, 0, 5, 5, 5])  # zero weeks after its launch
    assert np.isnan(p.units[row["C"]]).all()  # no sales rows: no invented zeros after its launch


def test_an_end_makes_later_periods_unknown_not_zero(files):
    p = panel_of(files, series_end="last-sale")
    row = {item: k for k, item in enumerate(p.item_ids)}
    assert p.end[row["B"]] == 4 and p.end[row["F"]] == 5 and p.end[row["G"]] == 12
    assert np.isnan(p.units[row["F"], 5:]).all()
    assert len(p.history(row["F"])) == 5
    assert p.gaps_filled == 2  # L's two weeks between launch and first sale, nothing after an end
    table = panel_of(files)
    assert table.end[table.item_ids == "F"][0] == OPEN_END
    assert table.gaps_filled == 2 + 5  # F zero-filled to the table's end


def test_truncate_makes_unsold_items_new_at_their_launch_before_the_origin(files):
    p = panel_of(files)
    row = {item: k for k, item in enumerate(p.item_ids)}
    cut = p.truncate(6)
    L = row["L"]
    assert not cut.has_history[L] and cut.start[L] == 5  # launch before the origin, first sale after it
    assert np.isnan(cut.units[L]).all()  # the launch-to-origin zero weeks are not shown as history
    assert cut.has_history[row["A"]]


def test_fold_scores_a_past_launch_on_its_launch_window(files):
    p = panel_of(files, series_end="last-sale")
    row = {item: k for k, item in enumerate(p.item_ids)}
    fold = _fold_targets(p, 6, 3)
    assert row["L"] in fold.rows[NEW] and row["C"] not in fold.rows[NEW]  # C has no truth
    k = list(fold.rows[NEW]).index(row["L"])
    np.testing.assert_array_equal(fold.truth[NEW][k], [0, 0, 5])  # weeks 5, 6, 7 from its launch
    assert row["B"] not in fold.rows[HISTORY]  # ended (week 4) before the origin
    assert row["F"] not in fold.rows[HISTORY]  # last sale week 4: ended
    assert row["A"] in fold.rows[HISTORY]


def test_training_windows_never_start_after_a_series_end():
    start, end = np.array([0, 2, 5]), np.array([4, OPEN_END, 5])
    (items, origins), (val_items, val_origins), cut = training_windows(start, 10, 2, end)
    assert cut == 8
    for i, s, e in zip(range(3), start, end):
        assert set(origins[items == i]) == set(range(s, min(e, cut)))
    assert list(val_items) == [1]  # item 0 ended before the validation cut, item 2 has no sales


def test_date_at_reaches_before_the_table(files):
    p = panel_of(files)
    assert [str(d.date()) for d in p.date_at(np.array([-1, 0, 11]))] == ["2023-12-25", "2024-01-01", "2024-03-18"]
