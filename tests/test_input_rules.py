"""What is accepted, and how, through the CLI: dates read one way, covariates only when meant,
prices never carried backward, exports that respect the files a planner owns, no formulas."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.core.config import DataConfig
from forecast.data.contract import load_tables
from forecast.models.neural.features import Scaler
from forecast.data.panel import build_panel
from forecast.outputs.export import neutralise_formulas
from tests.conftest import run_cli, write_csv
from tests.test_bad_input import GOOD_PRODUCTS, GOOD_SALES, MONTHLY_DAY_FIRST, fit_args, with_column


def fit_ok(capsys, sales: str, products: str, *extra: str) -> pd.DataFrame:
    code, err = run_cli(capsys, fit_args(sales, products, *extra))
    assert code == 0, err
    return pd.read_csv("forecast.csv", dtype={"item_id": str}, keep_default_na=False)


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


# --- dates ----------------------------------------------------------------------------
def test_day_first_dates_are_read_day_first_when_a_day_proves_it(workdir, capsys):
    day_first = re.sub(r"2024-(\d\d)-(\d\d)", r"\2/\1/2024", GOOD_SALES)  # 15/01/2024 cannot be month-first
    export = fit_ok(capsys, write_csv(workdir, "sales.csv", day_first), write_csv(workdir, "products.csv", GOOD_PRODUCTS))
    assert list(export["date"]) == ["2024-03-11", "2024-03-18"]


def test_date_format_is_honoured_for_sales_products_and_signals(workdir, capsys, caplog):
    caplog.set_level(logging.INFO)
    sales = write_csv(workdir, "sales.csv", MONTHLY_DAY_FIRST)
    products = write_csv(workdir, "products.csv", "item_id,description,launch_date,colour\n"
                         "A,red wool coat,,red\nN,red linen dress,01/02/25,red\n")
    signals = write_csv(workdir, "signals.csv", "date,red\n" + "".join(f"01/{m:02d}/24,{m}\n" for m in range(1, 13)))
    export = fit_ok(capsys, sales, products, "--date-format", "%d/%m/%y", "--signals", signals,
                    "--models", "moving_average,knn")
    dates = export.groupby("item_id")["date"].apply(list)
    assert dates["A"] == ["2025-01-01", "2025-02-01"]  # monthly, after December 2024
    assert dates["N"] == ["2025-02-01", "2025-03-01"]  # its launch, 1 February 2025
    assert "off the grid" not in caplog.text and "not on the" not in caplog.text  # signals on the monthly grid


def test_one_time_zone_offset_is_accepted_as_local_dates(workdir, capsys):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES.replace(",3,", "T00:00+05:00,3,").replace(
        ",4,", "T00:00+05:00,4,").replace(",5,", "T00:00+05:00,5,"))
    export = fit_ok(capsys, sales, write_csv(workdir, "products.csv", GOOD_PRODUCTS))
    assert list(export["date"]) == ["2024-03-11", "2024-03-18"]


def test_daily_frequency_on_weekly_data_warns(workdir, capsys, caplog):
    sales = write_csv(workdir, "sales.csv", GOOD_SALES)
    fit_ok(capsys, sales, write_csv(workdir, "products.csv", GOOD_PRODUCTS), "--freq", "D")
    assert "--freq is finer than the data's W-MON" in warnings_of(caplog)


# --- columns --------------------------------------------------------------------------
def test_stray_columns_are_ignored_with_a_warning_and_known_ones_used(workdir, capsys, caplog):
    text = with_column(with_column(GOOD_SALES, "Promo", "1"), "store", "north")
    rows = text.splitlines()
    indexed = "\n".join([f",{rows[0]}", *(f"{i},{row}" for i, row in enumerate(rows[1:]))]) + "\n"  # pandas' index
    sales = write_csv(workdir, "sales.csv", indexed.replace(",price,", ",PRICE,", 1))
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    export = fit_ok(capsys, sales, products)
    warned = warnings_of(caplog)
    assert "'Unnamed: 0', 'store'" in warned and "Promo" not in warned and "PRICE" not in warned
    assert (export["price"] == 2.0).all()  # PRICE is the price column
    tables = load_tables(sales, products, DataConfig())
    assert tables.covariates == ["Promo"]


def test_declared_covariates_are_used(workdir):
    sales = write_csv(workdir, "sales.csv", with_column(with_column(GOOD_SALES, "store_traffic", "7"), "note", "x"))
    products = write_csv(workdir, "products.csv", GOOD_PRODUCTS)
    assert load_tables(sales, products, DataConfig(covariates=["Store_Traffic"])).covariates == ["store_traffic"]


@pytest.mark.parametrize("header_comma", [True, False])
def test_trailing_comma_on_every_row_is_ignored_with_a_warning(workdir, capsys, caplog, header_comma):
    lines = GOOD_SALES.splitlines()
    text = "\n".join([lines[0] + ("," if header_comma else ""), *(line + "," for line in lines[1:])]) + "\n"
    export = fit_ok(capsys, write_csv(workdir, "sales.csv", text), write_csv(workdir, "products.csv", GOOD_PRODUCTS))
    assert len(export) == 2
    assert "trailing comma" in warnings_of(caplog)


# --- prices ---------------------------------------------------------------------------
def test_blank_prices_are_carried_forward_only(workdir):
    """A price first known in week 4 must not reach a backtest origin before week 4."""
    sales = ("item_id,date,units,price\n" + "".join(f"A,2024-01-{d:02d},3,{p}\n" for d, p in
                                                     [(1, ""), (8, ""), (15, ""), (22, "8.0"), (29, "")])
             + "".join(f"B,2024-01-{d:02d},3,1.0\n" for d in (1, 8, 15, 22, 29)))
    panel = build_panel(load_tables(write_csv(workdir, "s.csv", sales), write_csv(
        workdir, "p.csv", "item_id,description\nA,red coat\nB,blue coat\n")))
    assert np.isnan(panel.price[0, :3]).all() and list(panel.price[0, 3:]) == [8.0, 8.0]  # forward, not back
    early = panel.truncate(3)
    assert np.isnan(early.price[0]).all()
    scaler = Scaler.fit(early, end=early.n_periods, transform="sqrt", scaling="global", launch_periods=2)
    assert scaler.price_mean == pytest.approx(0.0)  # log(1.0) of B only: A's future 8.0 is unseen


def test_products_price_is_the_plan_of_a_new_product(workdir, capsys):
    products = write_csv(workdir, "products.csv", "item_id,description,Price\nA,red wool coat,\nN,blue coat,12.5\n")
    export = fit_ok(capsys, write_csv(workdir, "sales.csv", GOOD_SALES), products, "--models", "moving_average,knn")
    prices = export.groupby("item_id")["price"].first()
    assert prices["A"] == 2.0 and prices["N"] == 12.5


# --- exports --------------------------------------------------------------------------
def test_export_writes_through_a_symlink_and_keeps_permissions(workdir, capsys):
    target = workdir / "shared" / "plan.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(target, 0o640)
    Path("link.csv").symlink_to(target)
    code, err = run_cli(capsys, fit_args(write_csv(workdir, "sales.csv", GOOD_SALES),
                                         write_csv(workdir, "products.csv", GOOD_PRODUCTS), "--export", "link.csv"))
    assert code == 0, err
    assert Path("link.csv").is_symlink()
    assert target.read_text().startswith("item_id,date,step,group,origin,model")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_new_export_gets_the_umask(workdir, capsys):
    old = os.umask(0o027)
    try:
        fit_ok(capsys, write_csv(workdir, "sales.csv", GOOD_SALES), write_csv(workdir, "products.csv", GOOD_PRODUCTS))
    finally:
        os.umask(old)
    assert stat.S_IMODE(Path("forecast.csv").stat().st_mode) == 0o640


def test_formulas_are_neutralised_in_forecast_and_trends(workdir, capsys):
    header, body = GOOD_SALES.split("\n", 1)
    write_csv(workdir, "sales.csv", header + "\n" + body + body.replace("A,", "@B,") + body.replace("A,", "-7,"))
    write_csv(workdir, "products.csv", "item_id,description,colour\nA,=cmd|' /C calc'!A0,+red\n"
              "@B,-2+3 coat,+red\n-7,@SUM(A1) coat,+red\n")
    fit_ok(capsys, "sales.csv", "products.csv")
    export = pd.read_csv("forecast.csv", dtype=str, keep_default_na=False)
    assert set(export["item_id"]) == {"A", "'@B", "-7"}  # -7 is a number, not a formula
    assert set(export["description"]) == {"'=cmd|' /C calc'!A0", "'-2+3 coat", "'@SUM(A1) coat"}
    code, err = run_cli(capsys, ["trends", "--sales", "sales.csv", "--products", "products.csv",
                                 "--min-products", "1"])
    assert code == 0, err  # the neutralised item id '@B is read back as @B
    report = pd.read_csv("trends.csv", dtype=str, keep_default_na=False)
    colour = report[report["dimension"] == "colour"]
    assert colour["value"].tolist() == ["'+red"] and colour["products"].tolist() == ["3"]


def test_numeric_columns_are_never_neutralised():
    frame = pd.DataFrame({"units": [-1.5, 2.0], "note": ["-1.5", "=1+1"]})
    out = neutralise_formulas(frame)
    assert out["units"].tolist() == [-1.5, 2.0] and out["note"].tolist() == ["-1.5", "'=1+1"]
