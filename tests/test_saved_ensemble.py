"""A chosen ensemble is saved by `fit` and served like any saved model: `predict --model-dir`, the
MLflow pyfunc model and `Forecaster.load` all read the one folder format and reproduce the export."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

import forecast
from tests.conftest import assert_refused, mlflow_runs, run_in_folder
from forecast.cli import main
from forecast.data import synthetic

HORIZON = 4
MODELS = "moving_average,tsb,knn,fusion,ensemble"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, str, str, list[str]]:
    """(fit folder, sales, products, the fit's log lines): the ensemble forced for both groups, fusion
    among its members, trained for 1 epoch on 30 weekly items launching over the whole table (so new
    products are scored in the backtest) and 2 products launching after it."""
    folder = tmp_path_factory.mktemp("ensemble")
    sales, products = synthetic.write(folder / "data", n_items=30, n_periods=40, n_new=2, seed=0,
                                     launch_window=0.95)
    code, lines = run_in_folder(folder, ["fit", "--sales", sales, "--products", products, "--models", MODELS,
                                         "--model", "ensemble", "--folds", "2", "--horizon", str(HORIZON),
                                         "--max-epochs", "1", "--no-progress"])
    assert code == 0
    return folder, sales, products, lines


def saved_folder(folder: Path) -> Path:
    [saved] = (folder / "checkpoints").glob("*/ensemble")
    return saved


def test_fit_saves_the_chosen_ensemble_and_names_its_folder(fitted):
    folder, _, _, lines = fitted
    saved = saved_folder(folder)
    meta = json.loads((saved / "forecaster.json").read_text())
    assert meta["chosen"] == {"history": "ensemble", "new": "ensemble"}
    assert set(meta["ensemble"]["history"]["members"]) == {"moving_average", "tsb", "fusion"}
    assert set(meta["ensemble"]["new"]["members"]) == {"knn", "fusion", "fusion:average_text_new"}  # a variant too
    for weights in meta["ensemble"].values():
        assert sum(weights["weights"]) == pytest.approx(1.0)
    assert (saved / "fusion" / "model.safetensors").is_file()  # the neural member's weights travel with it
    assert set(json.loads((saved / "intervals.json").read_text())["groups"]) == {"history", "new"}
    [summary] = [line for line in lines if line.startswith("fit done")]
    assert f"saved model (ensemble): {saved.relative_to(folder)}" in summary


def test_predict_from_the_saved_ensemble_reproduces_the_export(fitted, workdir):
    folder, sales, products, _ = fitted
    assert main(["predict", "--model-dir", str(saved_folder(folder)), "--sales", sales, "--products", products,
                 "--export", "again.csv"]) == 0
    assert Path("again.csv").read_bytes() == (folder / "forecast.csv").read_bytes()


def test_the_saved_ensemble_loads_as_a_forecaster_with_the_same_forecast(fitted):
    folder, sales, products, _ = fitted
    frame = forecast.Forecaster.load(saved_folder(folder)).predict(sales, products)
    exported = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    assert (frame["units"].to_numpy() == exported["units"].to_numpy()).all()
    assert set(frame["model"]) == {"ensemble"}


def test_the_ensemble_is_logged_as_an_mlflow_model_that_forecasts_the_export(fitted, monkeypatch):
    import mlflow

    from forecast.tracking.serving import tables_frame

    folder, sales, products, _ = fitted
    monkeypatch.chdir(folder)
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    [child] = [r for r in mlflow_runs(uri)[2] if r.data.params.get("model") == "ensemble"]
    model = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/ensemble")
    served = model.predict(tables_frame(pd.read_csv(sales, dtype=str), pd.read_csv(products, dtype=str)))
    exported = pd.read_csv(folder / "forecast.csv", dtype={"item_id": str})
    assert list(served["item_id"]) == list(exported["item_id"])
    assert (served["units"].to_numpy() == exported["units"].to_numpy()).all()
    assert (served["units_p90"].to_numpy() == exported["units_p90"].to_numpy()).all()


def test_predict_refuses_an_edited_member_of_the_saved_ensemble(fitted, workdir, capsys):
    folder, sales, products, _ = fitted
    copy = Path(shutil.copytree(saved_folder(folder), workdir / "model"))
    meta = json.loads((copy / "fusion" / "meta.json").read_text())
    meta["scaler"]["units_std"] *= 16
    (copy / "fusion" / "meta.json").write_text(json.dumps(meta, indent=2))
    code = main(["predict", "--model-dir", str(copy), "--sales", sales, "--products", products, "--export", "o.csv"])
    assert_refused(code, capsys.readouterr().err, "fusion/meta.json", "modified", outputs=("o.csv",))


def test_predict_refuses_a_truncated_forecaster_json_and_a_folder_that_holds_no_model(fitted, workdir, capsys):
    folder, sales, products, _ = fitted
    copy = Path(shutil.copytree(saved_folder(folder), workdir / "model"))
    text = (copy / "forecaster.json").read_text()
    (copy / "forecaster.json").write_text(text[: len(text) // 2])
    argv = ["--sales", sales, "--products", products, "--export", "o.csv"]
    assert_refused(main(["predict", "--model-dir", str(copy), *argv]), capsys.readouterr().err,
                   "forecaster.json", "corrupt or was modified", "refit", outputs=("o.csv",))
    run_folder = saved_folder(folder).parent  # one level too high: the run's folder, not a model's
    assert_refused(main(["predict", "--model-dir", str(run_folder), *argv]), capsys.readouterr().err,
                   "not a saved model", "checkpoints/<run id>/<model>", outputs=("o.csv",))


def test_predict_refuses_a_longer_horizon_than_the_ensemble_was_fitted_for(fitted, workdir, capsys):
    folder, sales, products, _ = fitted
    code = main(["predict", "--model-dir", str(saved_folder(folder)), "--sales", sales, "--products", products,
                 "--export", "o.csv", "--horizon", str(HORIZON + 1)])
    assert_refused(code, capsys.readouterr().err, f"--horizon {HORIZON + 1}", f"trained for {HORIZON} periods",
                   outputs=("o.csv",))


def test_a_saved_forecaster_serves_predict_and_says_why_a_group_has_no_range(workdir, caplog):
    """Forecaster.save writes the folder fit writes: `predict --model-dir` reads it; an ensemble that one
    fold could not score has no range, and predict says so for its rows."""
    sales, products = synthetic.write(workdir / "data", n_items=12, n_periods=30, n_new=0, seed=3)
    fc = forecast.Forecaster(horizon=3, models=["moving_average", "tsb", "ensemble"], folds=1, progress=False,
                             model="ensemble").fit(sales, products)
    fc.save(workdir / "saved")
    with caplog.at_level(logging.WARNING, logger="forecast"):
        assert main(["predict", "--model-dir", "saved", "--sales", sales, "--products", products,
                     "--export", "o.csv"]) == 0
    out = pd.read_csv("o.csv", dtype={"item_id": str})
    pd.testing.assert_frame_equal(out, pd.read_csv(_written(fc.predict()), dtype={"item_id": str}))
    assert not [c for c in out.columns if c.startswith("units_p")]  # no range columns, as the fit's own forecast
    assert "12 history product(s) get no forecast range: ensemble was not scored on history products" in caplog.text


def _written(frame: pd.DataFrame) -> str:
    frame.to_csv("fitted.csv", index=False)
    return "fitted.csv"
