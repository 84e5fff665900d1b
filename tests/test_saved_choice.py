"""Every model `fit` chooses is saved in a folder `predict --model-dir` serves: a statistical model
(refitted on the history it is given), a launch model with its chosen variant, a neural model that is
also an ensemble member (stored once). Every file of such a folder is checksummed: an edit is refused."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import assert_refused, run_in_folder
from forecast import pipeline
from forecast.cli import main
from forecast.data import synthetic

HORIZON = 3


def fit_in(folder: Path, argv: list[str], choose: Callable | None = None) -> tuple[str, str, list[str]]:
    """(sales, products, log lines) of a fit in ``folder`` on 16 weekly items and 3 new products;
    ``choose`` replaces the backtest's choice (pipeline.choose_models) to force one per group."""
    sales, products = synthetic.write(folder / "data", n_items=16, n_periods=30, n_new=3, seed=0, launch_window=0.95)
    real = pipeline.choose_models
    pipeline.choose_models = choose or real
    try:
        code, lines = run_in_folder(folder, ["fit", "--sales", sales, "--products", products, *argv, "--folds", "2",
                                             "--horizon", str(HORIZON), "--no-progress"])
    finally:
        pipeline.choose_models = real
    assert code == 0
    return sales, products, lines


@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> tuple[Path, str, str, list[str]]:
    """(fit folder, sales, products, log lines): moving_average, tsb and knn; the backtest chooses."""
    folder = tmp_path_factory.mktemp("baselines")
    return folder, *fit_in(folder, ["--models", "moving_average,tsb,knn"])


def saved(folder: Path, model: str) -> Path:
    [found] = (folder / "checkpoints").glob(f"*/{model}")
    return found


def predicted(folder: Path, sales: str, products: str, model_dir: Path) -> pd.DataFrame:
    """``predict --model-dir`` of the fit's own tables, as text."""
    assert main(["predict", "--model-dir", str(model_dir), "--sales", sales, "--products", products,
                 "--export", "again.csv"]) == 0
    return pd.read_csv("again.csv", dtype=str, keep_default_na=False)


def exported(folder: Path, group: str, columns: pd.Index) -> pd.DataFrame:
    """The fit's export rows of one item group, as text, in ``columns``."""
    export = pd.read_csv(folder / "forecast.csv", dtype=str, keep_default_na=False)
    assert set(columns) <= set(export.columns)
    return export[export["group"] == group][list(columns)].reset_index(drop=True)


def test_fit_saves_each_chosen_baseline_and_its_folder_reproduces_the_export(baselines, workdir):
    folder, sales, products, lines = baselines
    chosen = json.loads((saved(folder, "knn") / "forecaster.json").read_text())
    history = next(m for m in ("moving_average", "tsb") if any((folder / "checkpoints").glob(f"*/{m}")))
    assert chosen["chosen"] == {"new": "knn"} and "launch curves" in chosen["how"]["knn"]
    [summary] = [line for line in lines if line.startswith("fit done")]
    for model, group in ((history, "history"), ("knn", "new")):
        model_dir = saved(folder, model)
        assert f"saved model ({model}): {model_dir.relative_to(folder)}" in summary
        again = predicted(folder, sales, products, model_dir)
        assert set(again["group"]) == {group} and set(again["model"]) == {model}
        pd.testing.assert_frame_equal(again, exported(folder, group, again.columns))
    meta = json.loads((saved(folder, history) / "forecaster.json").read_text())
    assert "refits it on the history" in meta["how"][history]  # local per series, and the folder says so


@pytest.mark.parametrize("edited", ["forecaster.json", "config.yaml", "intervals.json", "knn/intervals.json"])
def test_predict_refuses_an_edited_file_of_a_saved_choice(baselines, workdir, capsys, edited):
    folder, sales, products, _ = baselines
    copy = Path(shutil.copytree(saved(folder, "knn"), workdir / "model"))
    with open(copy / edited, "a") as handle:
        handle.write("\n")  # a harmless-looking edit still changes the file's sum
    code = main(["predict", "--model-dir", str(copy), "--sales", sales, "--products", products, "--export", "o.csv"])
    assert_refused(code, capsys.readouterr().err, edited, "modified", "SHA256SUMS", "refit", outputs=("o.csv",))


def test_predict_refuses_a_saved_choice_without_its_checksums(baselines, workdir, capsys):
    folder, sales, products, _ = baselines
    copy = Path(shutil.copytree(saved(folder, "knn"), workdir / "model"))
    (copy / "SHA256SUMS").unlink()
    code = main(["predict", "--model-dir", str(copy), "--sales", sales, "--products", products, "--export", "o.csv"])
    assert_refused(code, capsys.readouterr().err, "SHA256SUMS is missing", "refit", outputs=("o.csv",))


def test_a_chosen_launch_variant_is_saved_and_served_as_chosen(tmp_path_factory, workdir):
    """launch_curve:attributes (per-attribute launch curves) forced for new products: the saved folder
    forecasts the variant, not the plain mean curve, exactly as the export."""
    folder = tmp_path_factory.mktemp("variant")
    choose = lambda cfg, backtest, panel: {"history": "moving_average", "new": "launch_curve:attributes"}  # noqa: E731
    sales, products, _ = fit_in(folder, ["--models", "moving_average,launch_curve"], choose)
    model_dir = saved(folder, "launch_curve")
    assert json.loads((model_dir / "forecaster.json").read_text())["chosen"] == {"new": "launch_curve:attributes"}
    again = predicted(folder, sales, products, model_dir)
    assert set(again["model"]) == {"launch_curve:attributes"}
    pd.testing.assert_frame_equal(again, exported(folder, "new", again.columns))


def test_a_neural_model_chosen_and_in_the_ensemble_is_stored_once(tmp_path_factory, workdir):
    """fusion chosen for new products and a member of the ensemble chosen for products with history: its
    files are written once (the ensemble's folder links them) and each folder serves its groups."""
    folder = tmp_path_factory.mktemp("shared")
    choose = lambda cfg, backtest, panel: {"history": "ensemble", "new": "fusion"}  # noqa: E731
    sales, products, _ = fit_in(folder, ["--models", "moving_average,tsb,fusion,ensemble", "--max-epochs", "1"],
                                choose)
    fusion, ensemble = saved(folder, "fusion"), saved(folder, "ensemble")
    assert "fusion" in json.loads((ensemble / "forecaster.json").read_text())["ensemble"]["history"]["members"]
    for path in fusion.iterdir():
        assert os.path.samefile(path, ensemble / "fusion" / path.name), path.name
    again = predicted(folder, sales, products, ensemble)
    pd.testing.assert_frame_equal(again, exported(folder, "history", again.columns))
    again = predicted(folder, sales, products, fusion)
    new = again[again["group"] == "new"].reset_index(drop=True)
    pd.testing.assert_frame_equal(new, exported(folder, "new", again.columns))
