"""The bad-input catalogue: each case through the CLI gives exit 2, one clear message
naming the file/column/rows, no traceback, no export file and no finished MLflow run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_refused, free_port, no_finished_runs, run_cli, run_cli_process, write_csv

GOOD_SALES = "item_id,date,units,price\nA,2024-01-01,3,2.0\nA,2024-01-08,4,2.0\nA,2024-01-15,5,2.0\n" + "".join(
    f"A,2024-{m:02d}-{d:02d},5,2.0\n" for m, d in [(1, 22), (1, 29), (2, 5), (2, 12), (2, 19), (2, 26), (3, 4)]
)
GOOD_PRODUCTS = "item_id,description\nA,red wool coat\n"
# 12 monthly rows on the 1st, written dd/mm/yy: read month-first they would be 12 consecutive days.
MONTHLY_DAY_FIRST = "item_id,date,units\n" + "".join(f"A,01/{m:02d}/24,{m}\n" for m in range(1, 13))


def with_column(sales: str, name: str, value: str) -> str:
    """The sales table with one more column, ``value`` on every row."""
    header, *rows = sales.splitlines()
    return "\n".join([f"{header},{name}", *(f"{row},{value}" for row in rows)]) + "\n"


def fit_args(sales: str, products: str, *extra: str) -> list[str]:
    return ["fit", "--sales", sales, "--products", products, "--horizon", "2", "--folds", "1",
            "--models", "moving_average", "--no-progress", *extra]


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
    "horizon_zero": (GOOD_SALES, GOOD_PRODUCTS, ["--horizon", "0"], ["horizon", "at least 1"]),
    "horizon_negative": (GOOD_SALES, GOOD_PRODUCTS, ["--horizon", "-3"], ["horizon", "-3", "at least 1"]),
    "too_short_for_horizon": (GOOD_SALES, GOOD_PRODUCTS, ["--horizon", "9"], ["10 periods", "horizon"]),
    "unknown_model": (GOOD_SALES, GOOD_PRODUCTS, ["--models", "prophet"], ["unknown model", "prophet"]),
    "model_not_fitted": (GOOD_SALES, GOOD_PRODUCTS, ["--model", "ets"], ["--model 'ets'", "not among"]),
    "unwritable_export": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "/no/such/folder/out.csv"], ["export path", "does not exist"]),
    "export_is_directory": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "."], ["is a directory"]),
    # dates are never guessed
    "ambiguous_day_first_dates": (MONTHLY_DAY_FIRST, GOOD_PRODUCTS, [],
                                  ["sales.csv", "'date'", "ambiguous", "--date-format %d/%m/%y", "line 3: item_id=A"]),
    "date_format_not_matching": (GOOD_SALES.replace("2024-03-04", "03/04/2024"), GOOD_PRODUCTS,
                                 ["--date-format", "%d/%m/%y"], ["'date'", "--date-format '%d/%m/%y'", "line 11"]),
    "date_format_bad_directive": (GOOD_SALES, GOOD_PRODUCTS, ["--date-format", "%Q-%m"], ["--date-format '%Q-%m'"]),
    "mixed_time_zone_offsets": (GOOD_SALES.replace("2024-03-04", "2024-03-04T00:00+02:00"), GOOD_PRODUCTS, [],
                                ["'date'", "time-zone offsets", "+02:00"]),
    "ambiguous_launch_date": (GOOD_SALES, "item_id,description,launch_date\nA,red wool coat,\nN,blue coat,03/04/24\n",
                              [], ["products.csv", "'launch_date'", "ambiguous", "line 3"]),
    "ambiguous_end_date": (GOOD_SALES, "item_id,description,end_date\nA,red wool coat,05/06/24\n", [],
                           ["products.csv", "'end_date'", "ambiguous", "--date-format"]),
    "launch_date_offsets": (GOOD_SALES, "item_id,description,launch_date\nA,red coat,2024-01-01T00:00+01:00\n"
                            "N,blue coat,2024-05-06T00:00-05:00\n", [], ["'launch_date'", "time-zone offsets", "line 3"]),
    "launch_date_not_matching_format": (GOOD_SALES, "item_id,description,launch_date\nA,red coat,\nN,blue coat,"
                                        "2024/13/01\n", ["--date-format", "%d/%m/%y"],
                                        ["products.csv", "'launch_date'", "--date-format", "line 3"]),
    # stray and duplicated columns
    "duplicate_header": (GOOD_SALES.replace("price\n", "units\n", 1), GOOD_PRODUCTS, [],
                         ["sales.csv", "'units'", "twice", "columns 3 and 4"]),
    "duplicate_header_other_case": (GOOD_SALES.replace("price\n", "price,Price\n", 1).replace(",2.0\n", ",2.0,2.0\n"),
                                    GOOD_PRODUCTS, [], ["sales.csv", "'Price'", "twice", "'price'"]),
    "products_duplicate_header": (GOOD_SALES, "item_id,description,colour,colour\nA,red coat,red,blue\n", [],
                                  ["products.csv", "'colour'", "twice"]),
    "declared_covariate_missing": (GOOD_SALES, GOOD_PRODUCTS, ["--covariates", "store"],
                                   ["sales.csv", "'store'", "--covariates", "found columns"]),
    "declared_covariate_not_numeric": (with_column(GOOD_SALES, "store", "north"), GOOD_PRODUCTS,
                                       ["--covariates", "store"], ["'store'", "not numbers", "line 2", "north"]),
    "recognised_covariate_not_numeric": (with_column(GOOD_SALES, "Promo", "yes"), GOOD_PRODUCTS, [],
                                         ["'Promo'", "not numbers", "line 2"]),
    "rows_longer_than_header": (GOOD_SALES.replace(",2.0\n", ",2.0,x\n"), GOOD_PRODUCTS, [],
                                ["sales.csv", "more fields than the header", "line 2"]),
    "capitalised_price_not_numeric": (GOOD_SALES.replace("price", "Price", 1) + 'A,2024-03-11,3,"1,299.00"\n',
                                      GOOD_PRODUCTS, [], ["'Price'", "not numbers", "line 12", "1,299.00"]),
    # the products' price is validated like the sales'
    "products_price_thousands": (GOOD_SALES, 'item_id,description,price\nA,red coat,"1,299.00"\n', [],
                                 ["products.csv", "'price'", "not numbers", "line 2", "1,299.00"]),
    "products_price_negative": (GOOD_SALES, "item_id,description,price\nA,red coat,-3\n", [],
                                ["products.csv", "'price'", "negative", "line 2"]),
    "products_price_text": (GOOD_SALES, "item_id,description,price\nA,red coat,2.0\nN,blue coat,call us\n", [],
                            ["products.csv", "'price'", "not numbers", "line 3"]),
    # the export never replaces what it must not
    "export_is_the_sales_file": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "sales.csv"], ["sales.csv", "input file"]),
    "export_is_the_products_file": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "./products.csv"],
                                    ["products.csv", "input file"]),
    "export_is_a_device": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "/dev/null"], ["/dev/null", "not a regular file"]),
    "export_under_a_file": (GOOD_SALES, GOOD_PRODUCTS, ["--export", "products.csv/out.csv"],
                            ["products.csv", "is a file, not a folder"]),
    # internal errors that are a user's mistake: clear messages before any run opens
    "tracking_uri_unknown_scheme": (GOOD_SALES, GOOD_PRODUCTS, ["--tracking-uri", "foo://bar"],
                                    ["tracking URI 'foo://bar'", "MLflow cannot open it"]),
    "tracking_server_unreachable": (GOOD_SALES, GOOD_PRODUCTS, ["--tracking-uri", "http://127.0.0.1:9"],
                                    ["tracking URI 'http://127.0.0.1:9'", "cannot reach the MLflow server"]),
    "checkpoint_dir_is_a_file": (GOOD_SALES, GOOD_PRODUCTS, ["--models", "moving_average,fusion",
                                 "--checkpoint-dir", "products.csv/models"],
                                 ["--checkpoint-dir products.csv/models", "is a file, not a folder"]),
    "knn_without_new_items": (GOOD_SALES, GOOD_PRODUCTS, ["--models", "knn"],
                              ["--models knn", "only new products", "none of the 1 products is new"]),
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
    proc = run_cli_process(*fit_args(sales, products), timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "negative" in proc.stderr


SIGNALS_CASES = {
    # name: (signals text, extra args, expected fragments)
    "signals_ambiguous_dates": ("date,red\n" + "".join(f"01/{m:02d}/24,{m}\n" for m in range(1, 13)), [],
                                ["signals.csv", "'date'", "ambiguous", "--date-format"]),
    "signals_mixed_offsets": ("date,red\n2024-01-01T00:00+01:00,1\n2024-01-08T00:00+01:00,2\n2024-01-15T00:00Z,3\n", [],
                              ["signals.csv", "time-zone offsets", "line 4"]),
    "signals_not_matching_format": ("date,red\n2024/31/01,1\n", ["--date-format", "%d/%m/%Y"],
                                    ["signals.csv", "--date-format '%d/%m/%Y'", "line 2"]),
    "signals_duplicate_header": ("date,red,red\n2024-01-01,1,2\n", [], ["signals.csv", "'red'", "twice"]),
}


@pytest.mark.parametrize("case", sorted(SIGNALS_CASES))
def test_bad_signals_are_refused_clearly(case, workdir, capsys):
    signals_text, extra, needles = SIGNALS_CASES[case]
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    signals = write_csv(workdir, "signals.csv", signals_text)
    code, err = run_cli(capsys, fit_args(sales, products, "--signals", signals, *extra))
    assert_refused(code, err, *needles)


OK_FORECAST = "item_id,date,units\nA,2024-03-11,3\n"
TRENDS_CASES = {
    # name: (forecast text or None for a missing file, extra args, expected fragments)
    "trends_units_not_numeric": ("item_id,date,units\nA,2024-03-11,3\nA,2024-03-18,lots\n", [],
                                 ["fc.csv", "'units'", "not numbers", "line 3", "lots"]),
    "trends_unknown_items": ("item_id,date,units\nZ,2024-03-11,3\nY,2024-03-11,3\n", [],
                             ["fc.csv", "'item_id'", "2 item(s)", "not in the products table", "Z, Y"]),
    "trends_missing_units_column": ("item_id,date,qty\nA,2024-03-11,3\n", [], ["fc.csv", "'units'"]),
    "trends_forecast_missing": (None, [], ["fc.csv", "forecast file not found"]),
    "trends_output_is_the_forecast": (OK_FORECAST, ["--output", "fc.csv"], ["fc.csv", "input file"]),
    "trends_output_is_the_sales": (OK_FORECAST, ["--output", "sales.csv"], ["sales.csv", "input file"]),
}


@pytest.mark.parametrize("case", sorted(TRENDS_CASES))
def test_bad_trends_input_is_refused_clearly(case, workdir, capsys):
    forecast_text, extra, needles = TRENDS_CASES[case]
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    if forecast_text is not None:
        write_csv(workdir, "fc.csv", forecast_text)
    code, err = run_cli(capsys, ["trends", "--sales", sales, "--products", products, "--forecast", "fc.csv", *extra])
    assert_refused(code, err, *needles)
    assert not Path("trends.csv").exists()
    assert Path("sales.csv").read_text() == GOOD_SALES
    if forecast_text is not None:
        assert Path("fc.csv").read_text() == forecast_text


def test_export_through_a_link_to_an_input_is_refused(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    Path("out.csv").symlink_to("sales.csv")
    code, err = run_cli(capsys, fit_args(sales, products, "--export", "out.csv"))
    assert_refused(code, err, "out.csv", "input file")
    assert Path("sales.csv").read_text() == GOOD_SALES



def test_config_gaps_error_spelled_otherwise_is_refused(workdir, capsys):
    """`gaps: Error` in a config must not silently fill gaps: the choice is refused by name."""
    sales = write_csv(workdir, "sales.csv", GOOD_SALES.replace("A,2024-01-08,4,2.0\n", ""))  # a gap
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    config = write_csv(workdir, "cfg.yaml", "data:\n  gaps: Error\n")
    code, err = run_cli(capsys, fit_args(sales, products, "--config", config))
    assert_refused(code, err, "data.gaps", "'Error'", "zero, error")
    assert no_finished_runs()
    config = write_csv(workdir, "cfg.yaml", "data:\n  gaps: error\n")  # the right spelling refuses the gap
    code, err = run_cli(capsys, fit_args(sales, products, "--config", config))
    assert_refused(code, err, "sales.csv", "1 missing period(s)", "e.g. A")


def test_unreachable_tracking_server_fails_within_seconds(workdir, capsys):
    """MLflow would retry for minutes: the run is refused at once with the URI named."""
    port = free_port()
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args(sales, products, "--tracking-uri", f"http://127.0.0.1:{port}"))
    assert_refused(code, err, f"http://127.0.0.1:{port}", "cannot reach")


def test_read_only_working_folder_is_refused(tmp_path, monkeypatch, capsys):
    """mlruns cannot be created in the working folder: a clear message, not an internal error. /sys refuses
    a new folder to every user, root included."""
    sales = write_csv(tmp_path, "sales.csv", GOOD_SALES)
    products = write_csv(tmp_path, "products.csv", GOOD_PRODUCTS)
    monkeypatch.chdir("/sys")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, err = run_cli(capsys, fit_args(sales, products, "--export", str(tmp_path / "out.csv")))
    assert_refused(code, err, "cannot create the MLflow store /sys/mlruns", "--tracking-uri")
    assert not (tmp_path / "out.csv").exists()


def test_search_space_without_high_is_refused(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    space = write_csv(workdir, "space.yaml", "train.learning_rate: {type: float, low: 0.001}\n")
    code, err = run_cli(capsys, ["tune", "--sales", sales, "--products", products, "--search-space", space,
                                 "--trials", "1", "--horizon", "2", "--folds", "1", "--no-progress"])
    assert_refused(code, err, "search space", "'train.learning_rate'", "without 'high'")
    assert not Path("mlruns/optuna.db").exists()


def test_knn_alone_with_nothing_to_score_still_exports_the_new_products(workdir, capsys, caplog):
    """No product launches inside the backtest, so the kNN is never scored: no internal error, the new
    product is forecast, and the product with history it cannot serve is named at WARNING."""
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS + "N,blue linen shirt\n")
    code, err = run_cli(capsys, fit_args(sales, products, "--models", "knn"))
    assert code == 0, err
    import pandas as pd

    assert set(pd.read_csv("forecast.csv")["item_id"]) == {"N"}
    assert "1 of 2 products have no rows in the export; 1 no model chosen forecasts products with history: A" \
        in caplog.text
