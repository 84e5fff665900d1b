"""Bad input, round three (issue 26): option values out of range, outputs onto inputs, typed columns of
the wrong type, far-off dates, absurd numbers, unusual files, look-alike ids, and a saved model's
forecast that must not depend on the products forecast with it. Every case goes through the CLI."""

from __future__ import annotations

import gzip
import io
import os
import unicodedata
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
import pandas as pd
import pytest
import yaml

from forecast.cli import build_parser
from forecast.core.config import RANGES, RunConfig
from tests.conftest import ROOT, assert_refused, no_finished_runs, run_cli, run_cli_process, write_csv
from tests.test_bad_input import GOOD_PRODUCTS, GOOD_SALES, fit_args


def sales_frame() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(GOOD_SALES), dtype={"item_id": str})


# --- option values out of range ---------------------------------------------------------------------------
RANGE_CASES = {
    # key: (value, fragments of the one error line)
    "baselines.moving_average_window": (0, ["baselines.moving_average_window", "0", "at least 1"]),
    "neural.dropout": (1.5, ["neural.dropout", "1.5", "between 0 and 1, 1 excluded"]),
    "data.max_description_chars": (0, ["data.max_description_chars", "0", "at least 1"]),
    "evaluation.interval": (float("nan"), ["evaluation.interval", "nan", "between 0 and 1"]),
    "baselines.n_jobs": (0, ["baselines.n_jobs", "0", "at least 1, or -1"]),
    "seed": (-1, ["seed", "-1", "between 0 and"]),
    "train.learning_rate": (0.0, ["train.learning_rate", "0.0", "0 excluded"]),
    "train.devices": ([], ["train.devices", "empty list"]),
    "neural.max_tokens": (100_000, ["neural.max_tokens", "100000", "between 1 and 512"]),
}


def nested(key: str, value) -> dict:
    *sections, leaf = key.split(".")
    return {sections[0]: {leaf: value}} if sections else {leaf: value}


@pytest.mark.parametrize("key", sorted(RANGE_CASES))
def test_config_value_out_of_range_is_refused_before_any_work(key, workdir, capsys):
    value, needles = RANGE_CASES[key]
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    Path("cfg.yaml").write_text(yaml.safe_dump(nested(key, value)))
    code, err = run_cli(capsys, fit_args(sales, products, "--config", "cfg.yaml"))
    assert_refused(code, err, *needles)
    assert not Path("mlruns").exists()


@pytest.mark.parametrize(("options", "needles"), [
    (["--folds", "0"], ["evaluation.folds", "at least 1"]),
    (["--interval", "1.0"], ["evaluation.interval", "1.0", "both excluded"]),
    (["--max-epochs", "-2"], ["train.max_epochs", "-2", "at least 1"]),
])
def test_option_value_out_of_range_is_refused(options, needles, workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args(sales, products, *options))
    assert_refused(code, err, *needles)


def test_a_search_space_reaching_out_of_range_is_refused(tmp_path):
    from forecast.core.errors import ConfigError
    from forecast.tuning import load_search_space

    space = write_csv(tmp_path, "space.yaml", "neural.dropout: {type: float, low: 0.0, high: 1.2}\n")
    with pytest.raises(ConfigError, match=r"neural.dropout: 1.2 is out of range"):
        load_search_space(space)


def test_no_model_at_all_is_refused():
    from forecast.core.errors import ConfigError

    with pytest.raises(ConfigError, match="models is empty"):
        RunConfig().updated({"models": []}).validate()


def numeric_keys() -> list[str]:
    """Every config key whose type admits an int or a float (a list of them included)."""
    keys = []
    root = get_type_hints(RunConfig)
    for f in fields(RunConfig):
        hint = root[f.name]
        sections = [(f"{f.name}.", get_type_hints(hint), fields(hint))] if hasattr(hint, "__dataclass_fields__") \
            else [("", {f.name: hint}, [f])]
        for prefix, hints, leaves in sections:
            for leaf in leaves:
                types = {t for a in (get_args(hints[leaf.name]) or (hints[leaf.name],))
                         for t in (get_args(a) or (a,))}
                if types & {int, float}:
                    keys.append(prefix + leaf.name)
    return keys


def test_every_numeric_key_has_its_range_in_the_config_the_help_and_the_readme():
    keys = numeric_keys()
    assert "neural.dropout" in keys and "seed" in keys and "train.devices" in keys
    assert sorted(set(keys) - set(RANGES)) == []  # a new numeric key needs its range in RANGES
    assert sorted(set(RANGES) - set(keys)) == []
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["fit"].format_help().split())
    readme = ROOT.joinpath("README.md").read_text()
    reference = readme[readme.index("## Configuration"):readme.index("## Tracking")]
    for key, valid in RANGES.items():
        assert f"{key.rpartition('.')[2]} {valid}" in help_text, key
        assert f"`{key}`" in reference and str(valid) in reference, key


# --- outputs never overwrite an input --------------------------------------------------------------------
def test_export_onto_the_config_file_is_refused_and_the_config_kept(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    config = write_csv(workdir, "cfg.yaml", "evaluation:\n  horizon: 2\n")
    code, err = run_cli(capsys, fit_args(sales, products, "--config", config, "--export", "cfg.yaml"))
    assert_refused(code, err, "cfg.yaml", "input file")
    assert Path(config).read_text() == "evaluation:\n  horizon: 2\n"
    assert no_finished_runs()


def test_tune_outputs_onto_the_search_space_or_each_other_are_refused(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    space = write_csv(workdir, "space.yaml", "neural.dropout: {type: float, low: 0.0, high: 0.3}\n")
    base = ["tune", "--sales", sales, "--products", products, "--search-space", space, "--trials", "1",
            "--horizon", "2", "--folds", "1", "--no-progress"]
    code, err = run_cli(capsys, [*base, "--best-config", "space.yaml"])
    assert_refused(code, err, "space.yaml", "input file")
    code, err = run_cli(capsys, [*base, "--export", "out.csv", "--best-config", "out.csv"])
    assert_refused(code, err, "out.csv", "same file")
    assert Path(space).read_text().startswith("neural.dropout")
    assert not Path("mlruns/optuna.db").exists()


def test_predict_export_into_the_model_folder_and_trends_output_onto_the_config_are_refused(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    Path("model").mkdir()
    Path("model/meta.json").write_text("{}")
    code, err = run_cli(capsys, ["predict", "--model-dir", "model", "--sales", sales, "--products", products,
                                 "--export", "model/meta.json"])
    assert_refused(code, err, "model/meta.json", "input file")
    assert Path("model/meta.json").read_text() == "{}"
    config = write_csv(workdir, "cfg.yaml", "evaluation:\n  horizon: 2\n")
    write_csv(workdir, "fc.csv", "item_id,date,units\nA,2024-03-11,3\n")
    code, err = run_cli(capsys, ["trends", "--sales", sales, "--products", products, "--forecast", "fc.csv",
                                 "--config", config, "--output", "cfg.yaml"])
    assert_refused(code, err, "cfg.yaml", "input file")


# --- typed columns of the wrong type ----------------------------------------------------------------------
def test_boolean_units_in_parquet_are_refused(workdir, capsys):
    frame = sales_frame()
    frame.assign(units=frame["units"] > 3).to_parquet("sales.parquet")
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args("sales.parquet", products))
    assert_refused(code, err, "sales.parquet", "'units'", "true/false", "bool", "numbers")


@pytest.mark.parametrize(("table", "change", "needles"), [
    ("sales", lambda f: f.assign(price=True), ["'price'", "true/false"]),
    ("sales", lambda f: f.assign(date=20240101), ["'date'", "stored as numbers", "int64"]),
    ("sales", lambda f: f.assign(item_id=1.5), ["'item_id'", "numbers", "float64", "ids must be text"]),
    ("products", lambda f: f.assign(description=3.0), ["products.parquet", "'description'", "numbers", "text"]),
    ("products", lambda f: f.assign(item_id=True), ["'item_id'", "true/false"]),
])
def test_typed_columns_that_cannot_mean_the_contract_are_refused(table, change, needles, workdir, capsys):
    frames = {"sales": sales_frame(), "products": pd.DataFrame({"item_id": ["A"], "description": ["red wool coat"]})}
    change(frames[table]).to_parquet(f"{table}.parquet")
    other = "products" if table == "sales" else "sales"
    frames[other].to_parquet(f"{other}.parquet")
    code, err = run_cli(capsys, fit_args("sales.parquet", "products.parquet"))
    assert_refused(code, err, *needles)


def test_whole_number_ids_stored_as_floats_match_the_text_ids(workdir, capsys):
    """Parquet writes an integer id column with a gap as float (10002.0): it is the id 10002."""
    frame = sales_frame().assign(item_id=10002.0)
    frame.to_parquet("sales.parquet")
    products = write_csv(workdir, "products.csv", "item_id,description\n10002,red wool coat\n")
    code, err = run_cli(capsys, fit_args("sales.parquet", products))
    assert code == 0, err
    assert set(pd.read_csv("forecast.csv", dtype={"item_id": str})["item_id"]) == {"10002"}


# --- a date far outside the table ---------------------------------------------------------------------------
DAILY = "item_id,date,units\n" + "".join(f"A,{d.date()},{1 + d.day % 3}\n" for d in pd.date_range("2024-01-01", periods=60))


@pytest.mark.parametrize(("sales_text", "products_text", "needles"), [
    (DAILY.replace("2024-02-29", "2204-02-29"), GOOD_PRODUCTS,  # the example
     ["sales.csv", "'date'", "far outside", "2024-01-01 to 2024-02-28", "line 61", "2204-02-29"]),
    (GOOD_SALES.replace("2024-01-29", "1024-01-29"), GOOD_PRODUCTS, ["'date'", "far outside", "line 6", "1024"]),
    (GOOD_SALES, "item_id,description,launch_date\nA,red wool coat,\nN,blue coat,2402-05-06\n",
     ["products.csv", "'launch_date'", "far outside", "line 3", "2402-05-06"]),
])
def test_a_date_far_outside_the_sales_dates_is_refused_with_its_line(sales_text, products_text, needles,
                                                                     workdir, capsys):
    sales = write_csv(workdir, "sales.csv", sales_text)
    products = write_csv(workdir, "products.csv", products_text)
    code, err = run_cli(capsys, fit_args(sales, products))
    assert_refused(code, err, *needles)


def test_old_history_within_the_tables_span_is_not_refused(workdir, capsys):
    """Three years of weekly rows, the first year thin: nothing far off."""
    dates = pd.date_range("2021-01-04", periods=156, freq="W-MON")
    text = "item_id,date,units\n" + "".join(f"A,{d.date()},{1 + i % 4}\n" for i, d in enumerate(dates) if i % 9 == 0
                                            or i > 100)
    sales = write_csv(workdir, "sales.csv", text)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args(sales, products))
    assert code == 0, err


# --- absurd numbers ------------------------------------------------------------------------------------------
TWO_PRODUCTS = "item_id,description\nA,red wool coat\nB,blue linen shirt\n"


def test_one_absurd_row_is_named_and_does_not_widen_another_products_range(workdir, capsys, caplog):
    text = "item_id,date,units\n" + "".join(
        f"{item},{d.date()},{units}\n" for item in "ABC" for k, d in enumerate(pd.date_range("2024-01-01", periods=14,
                                                                                        freq="W-MON"))
        for units in [("1e12" if (item, k) == ("B", 12) else 3 + (k + ord(item)) % 4)])
    sales = write_csv(workdir, "sales.csv", text)
    products = write_csv(workdir, "products.csv", TWO_PRODUCTS + "C,green silk scarf\n")
    code, err = run_cli(capsys, fit_args(sales, products, "--folds", "2", "--step", "1"))
    assert code == 0, err
    assert "over 1000 times their product's median sale" in caplog.text and "line 28: item_id=B" in caplog.text
    out = pd.read_csv("forecast.csv", dtype={"item_id": str})
    others = out[out["item_id"] != "B"]
    assert others["units_p90"].max() < 1e5, others  # B's 1e12 errors are clipped, not pooled into A's and C's range


@pytest.mark.parametrize(("column", "value", "needles"), [
    ("units", "1.7e308", ["'units'", "beyond", "1e+15", "line 12"]),
    ("price", "1e20", ["'price'", "beyond", "line 12"]),
    ("promo", "-1e300", ["'promo'", "beyond", "line 12"]),
])
def test_numbers_beyond_any_quantity_are_refused(column, value, needles, workdir, capsys):
    text = GOOD_SALES.replace("price\n", "price,promo\n", 1).replace(",2.0\n", ",2.0,0\n")
    row = {"units": f"A,2024-03-11,{value},2.0,0\n", "price": f"A,2024-03-11,3,{value},0\n",
           "promo": f"A,2024-03-11,3,2.0,{value}\n"}[column]
    sales = write_csv(workdir, "sales.csv", text + row)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args(sales, products))
    assert_refused(code, err, *needles)


# --- unusual files -----------------------------------------------------------------------------------------------
def exported_units() -> list[float]:
    return pd.read_csv("forecast.csv")["units"].tolist()


@pytest.fixture
def reference_units(workdir, capsys) -> list[float]:
    """The forecast of the plain CSV files, which every readable variant must reproduce."""
    sales = write_csv(workdir, "plain.csv", GOOD_SALES)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args(sales, products, "--export", "plain_forecast.csv"))
    assert code == 0, err
    return pd.read_csv("plain_forecast.csv")["units"].tolist()


@pytest.mark.parametrize("variant", ["cr_line_endings", "gzip", "parquet_named_csv", "csv_named_parquet"])
def test_unusual_but_readable_files_are_read(variant, reference_units, workdir, capsys):
    name = {"gzip": "sales.csv.gz", "csv_named_parquet": "sales.parquet"}.get(variant, "sales.csv")
    path = Path(name)
    if variant == "cr_line_endings":
        path.write_bytes(GOOD_SALES.replace("\n", "\r").encode())
    elif variant == "gzip":
        path.write_bytes(gzip.compress(GOOD_SALES.encode()))
    elif variant == "parquet_named_csv":
        sales_frame().to_parquet(path)
    else:
        path.write_text(GOOD_SALES)
    code, err = run_cli(capsys, fit_args(name, "products.csv"))
    assert code == 0, err
    assert exported_units() == reference_units


@pytest.mark.parametrize(("content", "needles"), [
    (b"item_id,date,units\nA\x00B,2024-01-01,3\n", ["'item_id'", "control characters", "line 2", "A\\x00B"]),
    ("item_id,date,units\nA,2024-01-01,3\n".encode("utf-16"), ["sales.csv", "UTF-16", "UTF-8"]),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), ["sales.csv", "Excel 97-2003 workbook"]),
    (b"\x1f\x8b\x08\x00garbage", ["sales.csv", "gzip", "cannot be decompressed"]),
])
def test_files_that_are_no_table_are_named_for_what_they_are(content, needles, workdir, capsys):
    Path("sales.csv").write_bytes(content)
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args("sales.csv", products))
    assert_refused(code, err, *needles)


def test_an_excel_workbook_is_named(workdir, capsys):
    with zipfile.ZipFile("sales.xlsx", "w") as book:
        book.writestr("xl/workbook.xml", "<workbook/>")
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args("sales.xlsx", products))
    assert_refused(code, err, "sales.xlsx", "ZIP archive", "xlsx")


def test_piped_sales_on_stdin_are_read(workdir):
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    proc = run_cli_process(*fit_args("/dev/stdin", products), stdin=GOOD_SALES)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv("forecast.csv")) == 2


@pytest.mark.parametrize(("content", "code", "needle"), [(GOOD_SALES, 0, ""),
                                                          ("", 2, "a pipe or device that gave no data")])
def test_a_fifo_is_read_and_an_empty_one_named(content, code, needle, workdir, capsys):
    import threading

    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    os.mkfifo("sales.fifo")

    def feed() -> None:
        with open("sales.fifo", "w") as fifo:
            fifo.write(content)

    writer = threading.Thread(target=feed)
    writer.start()
    got, err = run_cli(capsys, fit_args("sales.fifo", products))
    writer.join(timeout=60)
    assert got == code, err
    assert needle in err
    assert Path("forecast.csv").exists() == (code == 0)


# --- ids that look the same ------------------------------------------------------------------------------------
def test_ids_in_nfd_and_nfc_are_the_same_product(workdir, capsys):
    nfc, nfd = unicodedata.normalize("NFC", "Café-1"), unicodedata.normalize("NFD", "Café-1")
    assert nfc != nfd
    sales = write_csv(workdir, "sales.csv", GOOD_SALES.replace("A,", f"{nfd},"))
    products = write_csv(workdir, "products.csv", f"item_id,description\n{nfc},red wool coat\n")
    code, err = run_cli(capsys, fit_args(sales, products))
    assert code == 0, err
    assert set(pd.read_csv("forecast.csv")["item_id"]) == {nfc}


@pytest.mark.parametrize(("sales_id", "needles"), [
    ("A\u200b", ["not in products.csv", "A\\u200b"]),  # a zero-width space, escaped
    ("A\u2060", ["not in products.csv", "A\\u2060"]),  # a word joiner, escaped
    ("\ufeffA", ["not in products.csv", "\\ufeffA"]),  # a byte-order mark inside the id
])
def test_invisible_characters_in_ids_are_escaped_in_messages(sales_id, needles, workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES + f"{sales_id},2024-03-11,3,2.0\n")
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    code, err = run_cli(capsys, fit_args(sales, products))
    assert_refused(code, err, *needles)
    assert sales_id not in err


# --- a saved model's forecast does not depend on its batch-mates -------------------------------------------
BATCH_H = 4
TINY = {"train.max_epochs": 1, "train.windows_per_epoch": 600, "train.progress": False, "neural.hidden_size": 8,
        "neural.context_length": 6, "train.batch_size": 128, "neural.knn_feature": 3,
        "neural.attribute_curves": True, "neural.recent_launches": 6, "neural.age_curve": True}


@pytest.fixture(scope="module")
def saved_fusion(tmp_path_factory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A tiny fusion model with every retrieval feature on, saved; its tables, where every product with
    history has a row in the last period (so alone its series ends where the table does)."""
    from forecast.data import synthetic
    from forecast.data.contract import load_tables
    from forecast.data.panel import build_panel
    from forecast.models.neural.estimator import NeuralEstimator

    root = tmp_path_factory.mktemp("batch")
    sales, products = synthetic.generate(n_items=9, n_periods=24, n_new=3, seed=3, launch_window=0.6)
    last = sales["date"].max()
    ends = pd.DataFrame({"item_id": sorted(set(sales["item_id"]) - set(sales.loc[sales["date"] == last, "item_id"])),
                         "date": last, "units": 0, "price": 1.0})
    sales = pd.concat([sales, ends], ignore_index=True)
    sales.to_csv(root / "sales.csv", index=False)
    products.to_csv(root / "products.csv", index=False)
    panel = build_panel(load_tables(root / "sales.csv", root / "products.csv"))
    model = NeuralEstimator("fusion", RunConfig().updated(TINY))
    model.fit(panel, BATCH_H)
    return model.save(root / "model"), pd.read_csv(root / "sales.csv", dtype=str), \
        pd.read_csv(root / "products.csv", dtype=str, keep_default_na=False)


def batch_forecast(model_dir: Path, sales: pd.DataFrame, products: pd.DataFrame, capsys) -> pd.DataFrame:
    """The CLI's export for these rows of the tables, indexed by (item_id, date)."""
    sales.to_csv("sales.csv", index=False)
    products.to_csv("products.csv", index=False)
    code, err = run_cli(capsys, ["predict", "--model-dir", str(model_dir), "--sales", "sales.csv", "--products",
                                 "products.csv", "--export", "out.csv"])
    assert code == 0, err
    return pd.read_csv("out.csv", dtype={"item_id": str}).set_index(["item_id", "date"])


def test_a_saved_models_forecast_of_a_product_is_the_same_alone_and_in_the_full_batch(saved_fusion, workdir,
                                                                                       capsys):
    """Through `predict` and the pyfunc model: each product with history alone, each new product with one
    product with history (a new product has no sales rows of its own), against the full batch."""
    from forecast.tracking import serving

    model_dir, sales, products = saved_fusion
    full = batch_forecast(model_dir, sales, products, capsys)
    history = sorted(set(sales["item_id"]))
    new = sorted(set(products["item_id"]) - set(history))
    assert len(history) == 9 and len(new) == 3
    pyfunc = serving.ForecastModel(model_dir)
    groups = [[item] for item in history] + [[item, history[k]] for k, item in enumerate(new)]
    for items in groups:
        part = batch_forecast(model_dir, sales[sales["item_id"].isin(items)], products[products["item_id"].isin(items)],
                              capsys)
        mine = full.loc[part.index]
        np.testing.assert_allclose(part["units"], mine["units"], atol=0.011, err_msg=str(items))
        served = pyfunc.predict(serving.tables_frame(sales[sales["item_id"].isin(items)],
                                                     products[products["item_id"].isin(items)]))
        served = served.set_index(["item_id", served["date"].astype(str)])
        np.testing.assert_allclose(served.loc[part.index, "units"], mine["units"], atol=0.011, err_msg=str(items))


def test_the_saved_reference_reproduces_the_fit_forecast_and_is_checksummed(saved_fusion, tmp_path):
    """Unrounded: the loaded model's forecast of one product equals its forecast in the full panel (the
    reference replaces the batch), and an edited reference file is refused."""
    import shutil

    from forecast.data.contract import load_tables
    from forecast.data.panel import build_panel
    from forecast.core.errors import ForecastError
    from forecast.models.neural.estimator import REFERENCE, NeuralEstimator

    model_dir, sales, products = saved_fusion
    sales.to_csv(tmp_path / "s.csv", index=False)
    products.to_csv(tmp_path / "p.csv", index=False)
    item = sales["item_id"].iloc[-1]
    sales[sales["item_id"] == item].to_csv(tmp_path / "s1.csv", index=False)
    products[products["item_id"] == item].to_csv(tmp_path / "p1.csv", index=False)
    model = NeuralEstimator.load(model_dir)
    full_panel = build_panel(load_tables(tmp_path / "s.csv", tmp_path / "p.csv"))
    full = model.predict(full_panel, BATCH_H)
    alone = model.predict(build_panel(load_tables(tmp_path / "s1.csv", tmp_path / "p1.csv")), BATCH_H)
    row = int(np.flatnonzero(full_panel.item_ids[full.item_index] == item)[0])
    np.testing.assert_allclose(alone.units[0], full.units[row], rtol=1e-5, atol=1e-6)
    edited = shutil.copytree(model_dir, tmp_path / "edited")
    data = bytearray((edited / REFERENCE).read_bytes())
    data[-3] ^= 1
    (edited / REFERENCE).write_bytes(bytes(data))
    with pytest.raises(ForecastError, match="reference.safetensors: the file is corrupt or was modified"):
        NeuralEstimator.load(edited)
