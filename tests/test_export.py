
import numpy as np
import pandas as pd
import pytest

from forecast.data.contract import load_tables
from forecast.data.panel import build_panel
from forecast.core.errors import ForecastError
from forecast.outputs.export import EXPORT_COLUMNS, forecast_frame, write_csv_atomic
from forecast.models.base import Prediction
from forecast.data.smoothing import centred_moving_average
from forecast.outputs.trends import relative_change, trend_report
from tests.conftest import write_csv

SALES = "".join(["item_id,date,units,price\n"] + [f"A,2024-01-{d:02d},{u},2.0\n" for d, u in [(1, 4), (8, 4), (15, 4)]]
                + [f"B,2024-01-{d:02d},{u},\n" for d, u in [(1, 10), (8, 10), (15, 10)]])
PRODUCTS = "item_id,description,colour\nA,red wool coat,red\nB,blue wool coat,blue\nN,green coat,green\n"


@pytest.fixture
def panel(tmp_path):
    return build_panel(load_tables(write_csv(tmp_path, "s.csv", SALES), write_csv(tmp_path, "p.csv", PRODUCTS)))


def test_export_has_one_row_per_item_and_period_with_dates_after_history(panel):
    fc = Prediction("m", np.array([0, 1, 2]), np.array([3, 3, 3]), np.array([[80.0, 80.0], [0.5, 0.5], [1.0, 2.0]]),
                  price=np.array([[2.0, 2.0], [np.nan, np.nan], [np.nan, np.nan]]))
    frame = forecast_frame(panel, [fc], trend_window=3, threshold=0.1)
    assert list(frame.columns) == EXPORT_COLUMNS
    assert list(frame["item_id"]) == ["A", "A", "B", "B", "N", "N"]
    assert list(frame["date"][:2]) == ["2024-01-22", "2024-01-29"]
    assert frame.loc[0, "description"] == "red wool coat"
    # A jumps from 4 to 80 a week: rising; B drops from 10 to 0.5: falling (both beyond Poisson noise); N is new
    assert list(frame["trend_direction"]) == ["rising", "rising", "falling", "falling", "new", "new"]
    # trend = centred moving average over history tail + forecast
    np.testing.assert_allclose(frame["trend"][:2], centred_moving_average(np.array([4, 4, 4, 80, 80.0]), 3)[3:],
                               atol=0.005)  # rounded to 2 decimals


def test_units_and_their_range_are_rounded_to_two_decimals_in_the_csv(panel, tmp_path):
    fc = Prediction("m", np.array([0]), np.array([3]), np.array([[0.0002, 3.14159]]),
                    quantiles={0.1: np.array([[0.0, 1.005001]]), 0.9: np.array([[1.23456, 5.0]])})
    path = write_csv_atomic(forecast_frame(panel, [fc], trend_window=3, threshold=0.1), tmp_path / "f.csv")
    rows = pd.read_csv(path, dtype=str)
    assert list(rows["units"]) == ["0.0", "3.14"]
    assert list(rows["units_p10"]) == ["0.0", "1.01"] and list(rows["units_p90"]) == ["1.23", "5.0"]
    assert list(rows.columns[:9]) == ["item_id", "date", "step", "group", "origin", "model", "units", "units_p10",
                                      "units_p90"]


def test_price_column_dropped_when_no_price_is_known(panel):
    fc = Prediction("m", np.array([1]), np.array([3]), np.ones((1, 2)))
    assert "price" not in forecast_frame(panel, [fc], trend_window=3, threshold=0.1).columns


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def boom(self, *a, **k):
        a[0].write("half a row,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError):
        write_csv_atomic(pd.DataFrame({"a": [1]}), target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left behind


def test_unwritable_folder_is_refused(tmp_path):
    """A 'folder' that is a regular file: unwritable for every user, root included (no skip)."""
    blocker = tmp_path / "report.csv"
    blocker.write_text("x\n")
    with pytest.raises(ForecastError, match="is a file, not a folder"):
        write_csv_atomic(pd.DataFrame({"a": [1]}), blocker / "x.csv")
    assert blocker.read_text() == "x\n"


def test_relative_change_handles_zero_reference():
    np.testing.assert_allclose(relative_change(np.array([2.0, 0.0, 3.0]), np.array([1.0, 0.0, 0.0])), [1.0, 0.0, 1.0])


def test_trend_report_aggregates_by_attribute_and_word(panel):
    export = pd.DataFrame({"item_id": ["A", "A", "B", "B"], "units": [8.0, 8.0, 2.0, 2.0]})
    report = trend_report(panel, export, threshold=0.1, min_products=1, level=0.8)
    colour = report[report["dimension"] == "colour"].set_index("value")
    # reference = last 2 periods of actuals: A 4+4, B 10+10
    assert colour.loc["red", "change"] == pytest.approx(1.0)
    assert colour.loc["red", "direction"] == "flat"  # 8 -> 16 units: Poisson noise alone could do it
    overall = report[report["dimension"] == "all"].iloc[0]
    assert overall["products"] == 2 and overall["change"] == pytest.approx(20 / 28 - 1, abs=1e-4)
    assert colour.loc["blue", "change"] == pytest.approx(-0.8)
    wool = report[(report["dimension"] == "word") & (report["value"] == "wool")].iloc[0]
    assert wool["products"] == 2
    assert wool["change"] == pytest.approx(20 / 28 - 1, abs=1e-4)  # rounded to 4 places


def test_trends_reads_the_range_columns_and_warns_on_a_range_without_a_level(panel, tmp_path, caplog):
    from forecast.outputs.trends import read_forecast

    ranged = tmp_path / "ranged.csv"
    ranged.write_text("item_id,date,units,units_p5,units_p95\nA,2024-01-22,8,6,\nA,2024-01-29,8,,11\n")
    export = read_forecast(ranged, panel)
    assert list(export.columns) == ["item_id", "units", "units_p5", "units_p95"]
    assert export["units_p5"].tolist()[0] == 6.0 and np.isnan(export["units_p5"].tolist()[1])
    legacy = tmp_path / "legacy.csv"
    legacy.write_text("item_id,date,units,units_lo,units_hi\nA,2024-01-22,8,6,11\n")
    assert list(read_forecast(legacy, panel).columns) == ["item_id", "units"]
    assert "do not say their level" in caplog.text
