"""End to end through the CLI: fit on generated data, MLflow run contents, export, predict, trends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import mlflow_runs, run_cli_in, runs_by_name, store_uri
from forecast.cli import build_parser, main

FAST = ["--horizon", "6", "--folds", "2", "--step", "6", "--max-epochs", "2", "--no-progress", "--seed", "0"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, synthetic_csv):
    """One fit with fusion + baselines on the synthetic data, shared by the tests below."""
    folder = tmp_path_factory.mktemp("fit")
    sales, products = synthetic_csv
    code = run_cli_in(folder, ["fit", "--sales", sales, "--products", products, "--models",
                               "seasonal_naive,moving_average,theta,knn,fusion", "--model", "fusion", "--register",
                               "demand", *FAST])
    assert code == 0
    return folder, sales, products


def test_fit_exports_every_product_with_the_promised_columns(fitted):
    folder, _, products = fitted
    export = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    assert list(export.columns) == ["item_id", "date", "step", "group", "origin", "model", "units", "units_p10",
                                    "units_p90", "price", "trend",
                                    "trend_direction", "description"]
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


def test_fit_records_a_parent_run_and_one_child_run_per_model_with_the_same_keys(fitted):
    folder, sales, _ = fitted
    experiment, parents, children = mlflow_runs(store_uri(folder))
    children = runs_by_name(children)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    [parent] = parents
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == f"fit {Path(sales).parent.name}/{Path(sales).name} 68 items h6"
    # fusion's average-description forecast of new products is a candidate of its own (a prediction variant)
    assert set(children) == {"seasonal_naive", "moving_average", "theta", "knn", "fusion", "fusion:average_text_new"}
    for model, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id and child.data.params["model"] == model
        assert child.info.status == "FINISHED"
    for model in ("seasonal_naive", "moving_average", "theta", "fusion"):
        keys = set(children[model].data.metrics)
        assert {"history/wape", "history/mase", "history/coverage", "history/interval_width", "history/msis",
                "history/wql", "history/coverage_q1", "history/coverage_top5", "history/wape_by_step"} <= keys
    assert "new/wape" in set(children["knn"].data.metrics) & set(children["fusion"].data.metrics)
    assert any("train/loss" in k for k in children["fusion"].data.metrics)  # Lightning's curves in its child
    refit = children["fusion"].data.metrics  # the served model's own training record
    assert refit["refit/members"] == 3 and refit["refit/epochs"] == 2 and refit["refit/train_windows"] > 0
    assert not any(k.startswith("refit/") for k in children["theta"].data.metrics)
    assert parent.data.tags["forecast.model.history"] == "fusion" and "history/wape" in parent.data.metrics
    assert "evaluation.horizon" in parent.data.params
    artifacts = {p.name for p in (folder / "mlruns" / "artifacts").rglob("*") if p.is_file()}
    assert {"forecast.csv", "backtest.csv", "forecast_vs_actual.png", "config.yaml", "interval_bands.csv",
            "interval_coverage.png"} <= artifacts


def test_the_refit_model_is_an_mlflow_model_that_loads_predicts_and_is_registered(fitted, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from forecast.tracking.serving import tables_frame

    folder, sales, products = fitted
    monkeypatch.chdir(folder)
    uri = store_uri(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    run_id = runs_by_name(mlflow_runs(store_uri(folder))[2])["fusion"].info.run_id
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/fusion")
    assert {"table", "item_id"} <= set(model.metadata.get_input_schema().input_names())
    frame = model.predict(tables_frame(pd.read_csv(sales, dtype=str), pd.read_csv(products, dtype=str)))
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")  # typed output: a datetime, the CSV's text
    exported = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    both = exported.merge(frame, on=["item_id", "date"], suffixes=("", "_m"))
    assert len(both) == len(exported)
    assert (both["units"] - both["units_m"]).abs().max() < 0.011
    assert (both["units_p90"] - both["units_p90_m"]).abs().max() < 0.011
    versions = MlflowClient(uri).search_model_versions("name='demand'")
    assert [v.run_id for v in versions] == [run_id]
    logged = {p.name for p in (folder / "mlruns" / "artifacts").rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.yaml", "meta.json", "intervals.json", "MLmodel"} <= logged
    assert not any(name.endswith((".pkl", ".pickle")) for name in logged)  # nothing pickled


def test_predict_through_the_cli_from_a_logged_model(fitted, monkeypatch):
    folder, sales, products = fitted
    monkeypatch.chdir(folder)
    run_id = runs_by_name(mlflow_runs(store_uri(folder))[2])["fusion"].info.run_id
    assert main(["predict", "--model-uri", f"runs:/{run_id}/fusion", "--sales", sales, "--products", products,
                 "--export", "from_mlflow.csv"]) == 0
    predicted = pd.read_csv(folder / "from_mlflow.csv", dtype={"item_id": str})
    exported = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    both = exported.merge(predicted, on=["item_id", "date"], suffixes=("", "_p"))
    assert len(both) == len(exported) and (both["units"] - both["units_p"]).abs().max() < 0.011


def test_predict_refuses_an_unknown_logged_model(fitted, monkeypatch, capsys):
    folder, sales, products = fitted
    monkeypatch.chdir(folder)
    assert main(["predict", "--model-uri", "runs:/0123456789abcdef/model", "--sales", sales, "--products", products]) == 2
    assert capsys.readouterr().err.startswith("error: --model-uri runs:/0123456789abcdef/model: cannot load it")


def test_export_ranges_hold_the_forecast_and_units_are_rounded(fitted):
    folder, _, _ = fitted
    text = (folder / "forecast.csv").read_text().splitlines()
    export = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    assert export[["units_p10", "units_p90"]].notna().all().all()
    assert (export["units_p10"] >= 0).all()
    assert (export["units_p10"] <= export["units"]).all() and (export["units"] <= export["units_p90"]).all()
    for column in ("units", "units_p10", "units_p90", "trend"):
        decimals = export[column].astype(str).str.partition(".")[2].str.len()
        assert decimals.max() <= 2, column
    assert not any(",0.0002," in line for line in text)


def test_predict_reloads_the_saved_model_without_retraining(fitted, monkeypatch):
    folder, sales, products = fitted
    monkeypatch.chdir(folder)
    saved = [p.parent for p in (folder / "checkpoints").rglob("model.safetensors")]
    assert saved
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
    assert (mine["units_p10"] == mine["units_p10_p"]).all()  # the ranges travel with the saved model
    assert (mine["units_p90"] == mine["units_p90_p"]).all()


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
