"""A saved neural model through `predict`: every file is checksummed, the frequency must be the
model's, and --horizon is honoured up to the trained horizon."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import assert_refused, run_cli_in
from forecast.cli import main
from forecast.data import synthetic

HORIZON = 4
OUT = ("out.csv",)  # what predict exports here: a refused predict writes none of it


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, str, str]:
    """(model folder, sales, products): fusion fitted for 1 epoch on 20 weekly items."""
    folder = tmp_path_factory.mktemp("saved")
    sales, products = synthetic.write(folder / "data", n_items=20, n_periods=40, n_new=2, seed=2)
    code = run_cli_in(folder, ["fit", "--sales", sales, "--products", products, "--models", "fusion", "--folds", "1",
                               "--horizon", str(HORIZON), "--max-epochs", "1", "--no-progress"])
    assert code == 0
    [model] = [p.parent for p in (folder / "checkpoints").rglob("model.safetensors")]
    return model, sales, products


@pytest.fixture
def model_copy(saved, workdir) -> Path:
    """A copy of the saved model this test may edit."""
    return Path(shutil.copytree(saved[0], workdir / "model"))


def predict(saved, model: Path, *extra: str, sales: str | None = None) -> int:
    return main(["predict", "--model-dir", str(model), "--sales", sales or saved[1], "--products", saved[2],
                 "--export", "out.csv", *extra])


def test_predict_refuses_an_edited_meta_json(saved, model_copy, capsys):
    assert predict(saved, model_copy) == 0  # the untouched copy is accepted
    Path("out.csv").unlink()
    meta = json.loads((model_copy / "meta.json").read_text())
    meta["scaler"]["units_std"] *= 16  # forecasts 16x larger, were it accepted
    (model_copy / "meta.json").write_text(json.dumps(meta, indent=2))
    capsys.readouterr()
    assert_refused(predict(saved, model_copy), capsys.readouterr().err, "meta.json", "modified", "SHA256SUMS",
                   outputs=OUT)


def test_predict_refuses_an_edited_config(saved, model_copy, capsys):
    config = model_copy / "config.yaml"
    config.write_text(config.read_text().replace("hidden_size:", "hidden_size: 8\n  old_hidden_size:", 1))
    assert_refused(predict(saved, model_copy), capsys.readouterr().err, "config.yaml", "modified", outputs=OUT)


def test_predict_refuses_edited_forecast_ranges(saved, model_copy, capsys):
    """The ranges saved beside the weights are checksummed with them: a widened range is refused."""
    ranges = model_copy / "intervals.json"
    ranges.write_text(ranges.read_text().replace("[", "[9", 1))
    assert_refused(predict(saved, model_copy), capsys.readouterr().err, "intervals.json", "modified", "refit",
                   outputs=OUT)


def test_predict_refuses_a_model_without_checksums(saved, model_copy, capsys):
    (model_copy / "SHA256SUMS").unlink()
    assert_refused(predict(saved, model_copy), capsys.readouterr().err, "SHA256SUMS is missing", outputs=OUT)


def test_predict_refuses_data_of_another_frequency(saved, workdir, capsys):
    """A weekly model given daily data would forecast daily dates: refused."""
    weekly = pd.read_csv(saved[1])
    day = pd.to_datetime(weekly["date"]).rank(method="dense").astype(int)  # week k -> day k
    daily = weekly.assign(date=(pd.Timestamp("2023-01-01") + pd.to_timedelta(day, unit="D")).dt.strftime("%Y-%m-%d"))
    daily.to_csv("daily.csv", index=False)
    code = predict(saved, saved[0], sales="daily.csv")
    assert_refused(code, capsys.readouterr().err, "daily.csv", "periods are D", "trained on W-", "--freq W-",
                   outputs=OUT)


def test_predict_honours_a_shorter_horizon_and_refuses_a_longer_one(saved, workdir, capsys):
    assert predict(saved, saved[0], "--horizon", "2") == 0
    out = pd.read_csv("out.csv", dtype={"item_id": str})
    assert out.groupby("item_id").size().max() == 2
    assert out["item_id"].nunique() == len(pd.read_csv(saved[2]))  # every product, new ones too
    Path("out.csv").unlink()
    assert predict(saved, saved[0]) == 0  # default: the trained horizon
    assert pd.read_csv("out.csv").groupby("item_id").size().max() == HORIZON
    Path("out.csv").unlink()
    capsys.readouterr()
    assert_refused(predict(saved, saved[0], "--horizon", str(HORIZON + 1)), capsys.readouterr().err,
                   f"--horizon {HORIZON + 1}", f"trained for {HORIZON} periods", f"at most {HORIZON}", outputs=OUT)
