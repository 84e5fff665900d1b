"""End to end through the CLI: fit on generated data, MLflow run contents, export, predict, trends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from forecast.cli import build_parser, main

FAST = ["--horizon", "6", "--folds", "2", "--step", "6", "--max-epochs", "2", "--no-progress", "--seed", "0"]


def run_metrics(db: Path) -> tuple[list[tuple], dict[str, float], set[str]]:
    with sqlite3.connect(db, timeout=60) as con:
        runs = con.execute("select run_uuid, status from runs").fetchall()
        metrics = dict(con.execute("select key, value from latest_metrics"))
        params = {k for (k,) in con.execute("select key from params")}
    return runs, metrics, params


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, synthetic_csv):
    """One fit with fusion + baselines on the synthetic data, shared by the tests below."""
    import os

    folder = tmp_path_factory.mktemp("fit")
    old = Path.cwd()
    os.chdir(folder)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        sales, products = synthetic_csv
        code = main(["fit", "--sales", sales, "--products", products, "--models",
                     "seasonal_naive,moving_average,theta,knn,fusion", *FAST])
    finally:
        os.chdir(old)
    assert code == 0
    return folder, sales, products


def test_fit_exports_every_product_with_the_promised_columns(fitted):
    folder, _, products = fitted
    export = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    assert list(export.columns) == ["item_id", "date", "model", "units", "price", "trend", "trend_direction",
                                    "description"]
    catalogue = pd.read_csv(products, dtype={"item_id": str})
    assert set(export["item_id"]) == set(catalogue["item_id"])
    assert (export.groupby("item_id").size() == 6).all()
    assert (export["units"] >= 0).all()
    # products with history start the week after the table ends; new ones at their launch date
    new = catalogue[catalogue["launch_date"].notna()].set_index("item_id")["launch_date"]
    first = export.groupby("item_id")["date"].min()
    assert (first[new.index] == new).all()
    assert (first.drop(new.index) == "2024-01-01").all()  # the week after the table's last week, 2023-12-25
    assert set(export["trend_direction"]) <= {"rising", "falling", "flat", "new"}


def test_fit_records_one_finished_run_with_every_models_metrics(fitted):
    folder, _, _ = fitted
    runs, metrics, params = run_metrics(folder / "mlruns" / "mlflow.db")
    assert [status for _, status in runs] == ["FINISHED"]
    for model in ("seasonal_naive", "moving_average", "theta", "fusion"):
        assert f"{model}/history/wape" in metrics
        assert f"{model}/history/mase" in metrics
    assert "knn/new/wape" in metrics and "fusion/new/wape" in metrics
    assert any(k.startswith("fusion") and "train/loss" in k for k in metrics)  # Lightning curves in the same run
    assert "evaluation.horizon" in params
    artifacts = {p.name for p in (folder / "mlruns" / "artifacts").rglob("*") if p.is_file()}
    assert {"forecast.csv", "backtest.csv", "forecast_vs_actual.png", "config.yaml"} <= artifacts


def test_predict_reloads_the_saved_model_without_retraining(fitted, monkeypatch):
    folder, sales, products = fitted
    monkeypatch.chdir(folder)
    saved = [p.parent for p in (folder / "checkpoints").rglob("model.safetensors")]
    if not saved:
        pytest.skip("no neural model was chosen for export in this run")
    from forecast.models.neural import estimator as neural

    def no_training(*args, **kwargs):
        raise AssertionError("predict must not train")

    monkeypatch.setattr(neural.NeuralEstimator, "fit", no_training)
    code = main(["predict", "--model-dir", str(saved[0]), "--sales", sales, "--products", products,
                 "--export", "predicted.csv"])
    assert code == 0
    predicted = pd.read_csv(folder / "predicted.csv", dtype={"item_id": str})
    exported = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    name = saved[0].name
    mine = exported[exported["model"] == name].merge(predicted, on=["item_id", "date"], suffixes=("", "_p"))
    assert len(mine) > 0
    assert (mine["units"] - mine["units_p"]).abs().max() < 1e-3


def test_trends_report_from_the_export(fitted, monkeypatch):
    folder, sales, products = fitted
    monkeypatch.chdir(folder)
    assert main(["trends", "--sales", sales, "--products", products, "--min-products", "2"]) == 0
    report = pd.read_csv(folder / "trends.csv")
    assert {"all", "colour", "category", "word"} <= set(report["dimension"])
    assert set(report["direction"]) <= {"rising", "falling", "flat"}
    assert (report["change_lo"] <= report["shrunk_change"]).all() and (report["shrunk_change"] <= report["change_hi"]).all()
    assert (folder / "trends.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trends_with_the_saved_model_explain_words_and_log_to_mlflow(fitted, monkeypatch, capsys):
    folder, sales, products = fitted
    monkeypatch.chdir(folder)
    model_dir = next(folder.glob("checkpoints/*/fusion"))
    data = ["--sales", sales, "--products", products]
    assert main(["trends", *data, "--min-products", "2", "--model-dir", str(model_dir), "--output", "why.csv",
                 "--tracking-uri", f"sqlite:///{folder / 'trends.db'}"]) == 0
    report = pd.read_csv(folder / "why.csv")
    words = report[report["dimension"] == "word"]
    assert words["model_effect"].notna().all() and report.loc[report["dimension"] != "word", "model_effect"].isna().all()
    with sqlite3.connect(folder / "trends.db") as con:
        (run,) = con.execute("select run_uuid from runs").fetchone()
    artifacts = {p.name for p in folder.rglob("*") if run in str(p)}
    assert {"why.csv", "why.png"} <= artifacts

    capsys.readouterr()
    item = pd.read_csv(products)["item_id"].iloc[0]
    assert main(["trends", *data, "--model-dir", str(model_dir), "--item", item]) == 0
    shown = capsys.readouterr().out
    description = pd.read_csv(products).set_index("item_id").loc[item, "description"]
    assert "model_effect" in shown and all(w in shown for w in description.lower().split())
    assert main(["trends", *data, "--item", item]) == 2  # --item explains a model's forecast: it needs one


def test_default_fit_runs_on_the_embedded_sample(workdir):
    code = main(["fit", "--models", "moving_average,knn", "--folds", "1", "--no-progress"])
    assert code == 0
    export = pd.read_csv("forecast.csv", dtype={"item_id": str})
    assert export["item_id"].nunique() == 300


def test_help_documents_every_option(capsys):
    parser = build_parser()
    for verb in ("fit", "predict", "tune", "trends", "ui"):
        with pytest.raises(SystemExit):
            parser.parse_args([verb, "--help"])
        text = capsys.readouterr().out
        assert "usage:" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["fit", "--help"])
    text = capsys.readouterr().out
    for option in ("--sales", "--products", "--horizon", "--export", "--model", "--models", "--tracking-uri",
                   "--freq", "--resume", "--config"):
        assert option in text


@pytest.mark.parametrize("verb, option", [
    (verb, option) for verb in ("predict", "trends")
    for option in ("--folds", "--step", "--seed", "--tracking-uri", "--experiment", "--run-name")
    if (verb, option) != ("trends", "--tracking-uri")  # trends logs its report and chart to a store when given
])
def test_verbs_refuse_options_they_would_ignore(workdir, capsys, verb, option):
    extra = ["--model-dir", "somewhere"] if verb == "predict" else []
    assert main([verb, *extra, option, "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: " + option), err


def test_tune_help_says_trials_is_the_number_the_study_should_hold(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "finished (complete or pruned) trials the study should hold" in text
