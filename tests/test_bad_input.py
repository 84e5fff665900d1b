"""The bad-input catalogue: each case through the CLI gives exit 2, one clear message
naming the file/column/rows, no traceback, no export file and no finished MLflow run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forecast.cli import main
from tests.conftest import write_csv

GOOD_SALES = "item_id,date,units,price\nA,2024-01-01,3,2.0\nA,2024-01-08,4,2.0\nA,2024-01-15,5,2.0\n" + "".join(
    f"A,2024-{m:02d}-{d:02d},5,2.0\n" for m, d in [(1, 22), (1, 29), (2, 5), (2, 12), (2, 19), (2, 26), (3, 4)]
)
GOOD_PRODUCTS = "item_id,description\nA,red wool coat\n"


def fit_args(sales: str, products: str, *extra: str) -> list[str]:
    return ["fit", "--sales", sales, "--products", products, "--horizon", "2", "--folds", "1",
            "--models", "moving_average", "--no-progress", *extra]


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_refused(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(message) == 1, err
    for needle in needles:
        assert needle in message[0], message[0]
    assert not Path("forecast.csv").exists()


def no_finished_runs() -> bool:
    db = Path("mlruns/mlflow.db")
    if not db.exists():
        return True
    import sqlite3

    with sqlite3.connect(db, timeout=60) as con:
        return con.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0] == 0


CASES = {
    # name: (sales text or None for a missing file, products text, extra args, expected fragments)
    "empty_file": ("", GOOD_PRODUCTS, [], ["sales.csv", "empty"]),
    "header_only": ("item_id,date,units\n", GOOD_PRODUCTS, [], ["sales.csv", "no data rows"]),
    "semicolons": ("item_id;date;units\nA;2024-01-01;3\n", GOOD_PRODUCTS, [], ["sales.csv", "semicolons"]),
    "missing_column": ("item_id,date\nA,2024-01-01\n", GOOD_PRODUCTS, [], ["sales.csv", "'units'"]),
    "misspelled_column": ("item_id,date,unit\nA,2024-01-01,3\n", GOOD_PRODUCTS, [], ["'units'", "did you mean 'unit'"]),
    "non_numeric_units": (GOOD_SALES + "A,2024-03-11,many,2.0\n", GOOD_PRODUCTS, [],
                          ["'units'", "not numbers", "line 12", "many"]),
    "negative_units": (GOOD_SALES + "A,2024-03-11,-4,2.0\n", GOOD_PRODUCTS, [], ["'units'", "negative", "line 12"]),
    "nan_units": (GOOD_SALES + "A,2024-03-11,NaN,2.0\n", GOOD_PRODUCTS, [], ["'units'", "NaN", "line 12"]),
    "empty_units": (GOOD_SALES + "A,2024-03-11,,2.0\n", GOOD_PRODUCTS, [], ["'units'", "empty", "line 12"]),
    "inf_price": (GOOD_SALES + "A,2024-03-11,3,inf\n", GOOD_PRODUCTS, [], ["'price'", "infinite", "line 12"]),
    "unparseable_date": (GOOD_SALES + "A,not-a-date,3,2.0\n", GOOD_PRODUCTS, [], ["'date'", "line 12", "not-a-date"]),
    "mixed_date_formats": (GOOD_SALES + "A,11/03/2024,3,2.0\n", GOOD_PRODUCTS, [], ["'date'", "format", "line 12"]),
    "duplicate_rows": (GOOD_SALES + "A,2024-01-08,9,2.0\n", GOOD_PRODUCTS, [], ["duplicate", "(item_id, date)", "line 3"]),
    "mixed_frequency": (GOOD_SALES + "A,2024-03-13,3,2.0\n", GOOD_PRODUCTS, [], ["not on the W-MON grid", "2024-03-13"]),
    "unknown_item": (GOOD_SALES + "B,2024-01-01,3,2.0\n", GOOD_PRODUCTS, [], ["not in products.csv", "B"]),
    "empty_description": (GOOD_SALES, "item_id,description\nA,\n", [], ["products.csv", "'description'", "line 2"]),
    "duplicate_product": (GOOD_SALES, GOOD_PRODUCTS + "A,blue coat\n", [], ["products.csv", "repeat", "line 3"]),
    "products_missing_column": (GOOD_SALES, "item_id,name\nA,coat\n", [], ["products.csv", "'description'"]),
    "horizon_zero": (GOOD_SALES, GOOD_PRODUCTS, ["--horizon", "0"], ["horizon", "positive"]),
    "horizon_negative": (GOOD_SALES, GOOD_PRODUCTS, ["--horizon", "-3"], ["horizon", "positive"]),
    "too_short_for_horizon": (GOOD_SALES, GOOD_PRODUCTS, ["--horizon", "9"], ["10 periods", "horizon"]),
    "unknown_model": (GOOD_SALES, GOOD_PRODUCTS, ["--models", "prophet"], ["unknown model", "prophet"]),
    "model_not_fitted": (GOOD_SALES, GOOD_PRODUCTS, ["--model", "ets"], ["--model 'ets'", "not among"]),
    "unwritable_export": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "/no/such/folder/out.csv"], ["export path", "does not exist"]),
    "export_is_directory": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "."], ["is a directory"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_clearly(case, workdir, capsys):
    sales_text, products_text, extra, needles = CASES[case]
    sales = write_csv(workdir, "sales.csv", sales_text)
    products = write_csv(workdir, "products.csv", products_text)
    code, err = run_cli(capsys, fit_args(sales, products, *extra))
    assert_refused(code, err, *needles)
    assert no_finished_runs()


def test_missing_file(workdir, capsys):
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args(str(workdir / "nope.csv"), products))
    assert_refused(code, err, "nope.csv", "not found")


def test_non_utf8_bytes(workdir, capsys):
    (workdir / "products.csv").write_bytes("item_id,description\nA,caf\xe9 cr\xe8me coat\n".encode("latin-1"))
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    code, err = run_cli(capsys, fit_args(sales, str(workdir / "products.csv")))
    assert_refused(code, err, "products.csv", "UTF-8", "line 2")


def test_only_one_table_given(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    code, err = run_cli(capsys, ["fit", "--sales", sales])
    assert_refused(code, err, "--sales and --products")


def test_bad_config_key(workdir, capsys):
    config = write_csv(workdir, "cfg.yaml", "evaluation:\n  horizonn: 4\n")
    code, err = run_cli(capsys, ["fit", "--config", config])
    assert_refused(code, err, "evaluation.horizonn")


def test_long_description_is_truncated_with_a_warning(workdir, capsys, caplog):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", "item_id,description\nA," + "wool " * 300 + "\n")
    code, err = run_cli(capsys, fit_args(sales, products))
    assert code == 0, err
    assert "truncated" in caplog.text
    assert Path("forecast.csv").exists()


def test_short_series_is_forecast_not_refused(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES + "B,2024-03-04,7,1.0\n")
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS + "B,blue linen shirt\n")
    code, err = run_cli(capsys, fit_args(sales, products))
    assert code == 0, err
    import pandas as pd

    out = pd.read_csv("forecast.csv", dtype={"item_id": str})
    assert set(out["item_id"]) == {"A", "B"}


def test_real_process_prints_no_traceback(workdir):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES + "A,2024-03-11,-4,2.0\n")
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    proc = subprocess.run([sys.executable, "-m", "forecast", *fit_args(sales, products)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "negative" in proc.stderr
