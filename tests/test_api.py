"""The Python API: Forecaster on DataFrames and files, the same forecast as the CLI, save/load, and a
library core that runs without MLflow or Optuna installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import forecast
from forecast.cli import main
from forecast.data import synthetic
from forecast.core.errors import ConfigError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

BASELINES = ["moving_average", "knn"]


@pytest.fixture(scope="module")
def sample() -> tuple[pd.DataFrame, pd.DataFrame]:
    return forecast.load_sample()


@pytest.fixture(scope="module")
def fitted(sample) -> forecast.Forecaster:
    return forecast.Forecaster(horizon=6, models=BASELINES, folds=2, progress=False).fit(*sample)


def test_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version

    assert forecast.__version__ == version("forecast")
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"forecast {forecast.__version__}"


def test_load_sample_gives_the_planners_two_tables(sample):
    sales, products = sample
    assert {"item_id", "date", "units"} <= set(sales.columns)
    assert {"item_id", "description"} <= set(products.columns)
    assert set(sales["item_id"]) <= set(products["item_id"])


def test_fit_chooses_per_group_and_predicts_the_export_columns(fitted, sample):
    assert fitted.chosen_ == {"history": "moving_average", "new": "knn"}
    frame = fitted.predict()
    assert {"item_id", "date", "model", "units", "units_p10", "units_p90"} <= set(frame.columns)
    assert frame.groupby("item_id").size().eq(6).all()
    assert frame["item_id"].nunique() == sample[1]["item_id"].nunique()


def test_backtest_holds_actual_and_forecast_per_item_origin_step_model(fitted):
    bt = fitted.backtest_
    assert list(bt.columns) == ["item_id", "group", "origin", "step", "model", "actual", "forecast"]
    assert bt["origin"].nunique() == 2 and set(bt["step"]) == set(range(1, 7))
    assert set(zip(bt["model"], bt["group"])) == {("moving_average", "history"), ("knn", "new")}
    # the long table is the one the scores come from: its pooled WAPE is the table's
    part = bt[(bt["model"] == "moving_average") & bt["actual"].notna()]
    wape = (part["actual"] - part["forecast"]).abs().sum() / part["actual"].abs().sum()
    scores = fitted.scores_
    row = scores[(scores["model"] == "moving_average") & (scores["group"] == "history") & (scores["step"] == 0)]
    assert wape == pytest.approx(float(row["wape"].iloc[0]))


def test_the_api_forecasts_as_the_cli_exports(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sales, products = sample
    sales.to_csv("s.csv", index=False)
    products.to_csv("p.csv", index=False)
    code = main(["fit", "--sales", "s.csv", "--products", "p.csv", "--models", ",".join(BASELINES),
                 "--folds", "2", "--horizon", "6", "--export", "cli.csv", "--no-progress"])
    assert code == 0
    api = forecast.Forecaster(horizon=6, models=BASELINES, folds=2, progress=False).fit("s.csv", "p.csv")
    api.predict().to_csv("api.csv", index=False)
    assert Path("api.csv").read_bytes() == Path("cli.csv").read_bytes()


def test_save_then_load_predicts_the_same(fitted, sample, tmp_path):
    fitted.save(tmp_path / "model")
    again = forecast.Forecaster.load(tmp_path / "model").predict(*sample)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), fitted.predict().reset_index(drop=True))


def test_a_saved_ensemble_forecasts_new_tables_as_fitted(sample, tmp_path):
    models = ["moving_average", "seasonal_naive", "tsb", "ensemble"]
    fc = forecast.Forecaster(horizon=6, models=models, folds=2, progress=False, model="ensemble").fit(*sample)
    assert fc.chosen_["history"] == "ensemble" and set(fc.ensemble_["history"].members) == set(models[:3])
    frame = fc.predict()
    assert set(frame.loc[frame["units_p10"].notna(), "model"]) == {"ensemble"}
    fc.save(tmp_path / "model")
    again = forecast.Forecaster.load(tmp_path / "model").predict(*sample)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), frame.reset_index(drop=True))


def test_save_refuses_a_folder_that_holds_files(fitted, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        fitted.save(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_settings_are_config_keys_by_name(tmp_path):
    fc = forecast.Forecaster(horizon=4, models=["ets", "fusion"], max_epochs=2, train__batch_size=64, interval=0.9)
    cfg = fc.config
    assert (cfg.evaluation.horizon, cfg.train.max_epochs, cfg.train.batch_size) == (4, 2, 64)
    assert cfg.models == ["ets", "fusion"]
    assert cfg.evaluation.interval == 0.9
    with pytest.raises(ConfigError, match="unknown setting 'max_epoch'"):
        forecast.Forecaster(max_epoch=2)
    with pytest.raises(ConfigError, match="unknown model"):
        forecast.Forecaster(models=["prophet"])


def test_dataframe_errors_name_the_table_column_and_rows(sample):
    sales, products = sample
    broken = sales.astype({"units": object})
    broken.loc[3, "units"] = "many"
    with pytest.raises(forecast.api.ForecastError, match=r"sales \(DataFrame\).*units"):
        forecast.Forecaster(models=BASELINES).fit(broken, products)


def test_typed_dataframes_read_as_their_text(sample):
    """A DataFrame with real dates and numbers (not the strings a file gives) is read the same way."""
    sales, products = sample
    typed = sales.assign(date=pd.to_datetime(sales["date"]), units=sales["units"].astype(float))
    fc = forecast.Forecaster(horizon=6, models=BASELINES, folds=2, progress=False)
    pd.testing.assert_frame_equal(fc.fit(typed, products).predict(), fc.fit(sales, products).predict())


@pytest.mark.skipif(not (SHARED / "online_retail").is_dir(), reason="../shared is not beside the checkout")
def test_fit_on_shared_online_retail_files():
    folder = SHARED / "online_retail"
    fc = forecast.Forecaster(horizon=4, models=["moving_average"], folds=1, progress=False)
    fc.fit(folder / "sales.csv", folder / "products.csv")
    frame = fc.predict()
    assert frame["units"].ge(0).all() and frame["item_id"].nunique() > 1000


def test_core_fits_a_neural_model_without_mlflow_or_optuna(tmp_path):
    sales, products = synthetic.write(tmp_path, n_items=12, n_periods=30, n_new=2, seed=3)
    script = f"""
import sys
sys.modules["mlflow"] = None  # an import of either now fails, as in an environment without them
sys.modules["optuna"] = None
import forecast
fc = forecast.Forecaster(horizon=3, models=["fusion", "moving_average"], folds=1, max_epochs=1,
                         windows_per_epoch=256, progress=False).fit({sales!r}, {products!r})
fc.save({str(tmp_path / 'saved')!r})
print(len(forecast.Forecaster.load({str(tmp_path / 'saved')!r}).predict({sales!r}, {products!r})))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().splitlines()[-1]) == pd.read_csv(products)["item_id"].nunique() * 3
    assert not (tmp_path / "mlruns").exists()
