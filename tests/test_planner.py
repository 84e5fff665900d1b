"""Issue 25, what a planner and an ML engineer meet: the ui's address, run names, the closing
summary, the export's columns and directions, the console table, README's commands in order."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from forecast.cli import main
from forecast.core.config import RunConfig
from forecast.data import synthetic
from forecast.evaluation.metrics import INTERVAL_METRICS, METRICS
from tests.conftest import mlflow_runs, run_cli_in, runs_by_name, store_uri

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["--horizon", "4", "--folds", "1", "--step", "4", "--no-progress", "--seed", "0"]


def _store(folder: Path):
    from mlflow.tracking import MlflowClient

    (folder / "mlruns").mkdir(exist_ok=True)
    return MlflowClient(store_uri(folder))


def test_ui_address_opens_the_runs_table_in_the_training_view_with_the_headline_columns(workdir):
    from forecast.tracking import runs_view
    from forecast.tracking.runs import ui_address

    client = _store(workdir)
    experiment = client.create_experiment("forecast")
    url = ui_address(store_uri(workdir), "forecast", 5123)
    parsed = urlparse(url)
    assert parsed.netloc == "127.0.0.1:5123"
    path, _, query = parsed.fragment.partition("?")
    assert path == f"/experiments/{experiment}/runs"
    assert parse_qs(query) == {"workflowType": ["machine_learning"], "viewStateShareKey": [runs_view.SHARE_KEY]}
    view = json.loads(client.get_experiment(experiment).tags[runs_view.SHARED_VIEW_TAG + runs_view.SHARE_KEY])
    assert {"metrics.`history/wape`", "metrics.`history/bias`", "metrics.`history/coverage`",
            "metrics.`new/wape`"} <= set(view["selectedColumns"])
    # the UI would sort metric columns by key (bias first): the view puts them after name and date, WAPE first
    assert view["columnOrder"][:5] == [runs_view.RUN_NAME, runs_view.CREATED, "metrics.`history/wape`",
                                       "metrics.`history/bias`", "metrics.`history/coverage`"]
    assert set(view["columnOrder"]) >= {runs_view.DURATION, runs_view.MODELS, runs_view.DATASET}


def test_model_runs_are_evaluation_runs_so_the_ui_shows_them_under_their_fit(workdir):
    import mlflow

    from forecast.tracking.runs import log_model_runs

    table = pd.DataFrame({"model": ["tsb", "tsb"], "group": ["history", "history"], "step": [0, 1],
                          "fit_seconds": [1.5, 1.5]} | {name: [0.5, 0.4] for name in (*METRICS, *INTERVAL_METRICS)})
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = mlflow.create_experiment("runs")  # not the process's active one: an earlier test's store
    with mlflow.start_run(experiment_id=experiment) as parent:
        runs = log_model_runs(table, 0.8)
    child = mlflow.get_run(runs["tsb"])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["mlflow.runType"] == "evaluation"  # the UI expands the parent of such runs
    assert child.data.metrics["history/wape"] == 0.5


def test_ui_open_opens_the_address_once_the_server_listens(monkeypatch):
    import socket
    import webbrowser

    from forecast.tracking.runs import _open_when_listening

    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    with socket.socket() as server_socket:
        server_socket.bind(("127.0.0.1", 0))
        server_socket.listen()
        port = server_socket.getsockname()[1]
        _open_when_listening("http://127.0.0.1/x", port, SimpleNamespace(poll=lambda: None), wait_s=5)
    assert opened == ["http://127.0.0.1/x"]
    _open_when_listening("http://127.0.0.1/y", port, SimpleNamespace(poll=lambda: 1), wait_s=5)  # server exited
    assert opened == ["http://127.0.0.1/x"]


def test_ui_in_a_folder_without_a_store_says_so_and_creates_none(workdir, capsys):
    assert main(["ui", "--port", "5999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no MLflow store here") and "python -m forecast fit" in err
    assert not (workdir / "mlruns").exists()


def test_run_names_tell_two_data_sets_under_the_same_file_name_apart_and_mark_tuned_configs():
    from forecast.tracking.runs import run_name

    cfg = RunConfig().updated({"evaluation.horizon": 8})
    first = run_name(cfg, "fit", "/data/retail/sales.csv", 300)
    second = run_name(cfg, "fit", "/data/fashion/sales.csv", 5000)
    assert first == "fit retail/sales.csv 300 items h8"
    assert second == "fit fashion/sales.csv 5000 items h8"
    tuned = cfg.updated({"tracking.tuned_from": "study forecast-fusion trial 3"})
    assert run_name(tuned, "fit", "/data/retail/sales.csv", 300) == "fit retail/sales.csv 300 items h8 tuned"
    assert run_name(cfg.updated({"tracking.run_name": "mine"}), "fit", "/data/retail/sales.csv", 3) == "mine"


def _scores() -> pd.DataFrame:
    rows = [("ets", "history", 0.41, -0.05), ("fusion", "history", 0.38, 0.02), ("knn", "new", 0.7, 0.1)]
    frame = pd.DataFrame(rows, columns=["model", "group", "wape", "bias"])
    for name in ("mase", "mae", "rmse", "smape", "coverage", "interval_width", "fit_seconds"):
        frame[name] = 1.0
    return frame


def test_a_fit_ends_on_its_chosen_models_run_model_folder_export_and_ui_command(tmp_path):
    from forecast.pipeline import FitResult
    from forecast.outputs.summary import fit_summary

    backtest = SimpleNamespace(summary=_scores)
    result = FitResult("abc123", backtest, {"history": "fusion", "new": "knn"}, pd.DataFrame(),
                       tmp_path / "forecast.csv", {"fusion": tmp_path / "checkpoints" / "abc123" / "fusion"})
    cfg = RunConfig().updated({"tracking.uri": "sqlite:////tmp/x/mlflow.db", "tracking.experiment": "shop"})
    lines = fit_summary(result, cfg)
    assert lines[0] == "fit done: MLflow run abc123"
    assert lines[1].split() == ["history:", "fusion", "backtest", "WAPE", "0.380,", "bias", "+0.020"]
    assert lines[2].split() == ["new:", "knn", "backtest", "WAPE", "0.700,", "bias", "+0.100"]
    assert lines[3].endswith(str(tmp_path / "checkpoints" / "abc123" / "fusion"))
    assert lines[4].endswith(str(tmp_path / "forecast.csv"))
    assert lines[5].split(None, 2)[2] == ("python -m forecast ui --tracking-uri sqlite:////tmp/x/mlflow.db "
                                          "--experiment shop")


def test_the_backtest_table_fits_100_columns_with_the_longest_model_name():
    from forecast.pipeline import format_summary

    scores = _scores().assign(model=["fusion:average_text_new", "seasonal_naive", "knn"])
    scores[["coverage", "interval_width", "fit_seconds"]] = [[0.812, 123.456, 1234.5]] * 3
    lines = format_summary(scores).splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[0].split()[:3] == ["group", "model", "wape"]


def test_a_product_gets_one_direction_and_tiny_volumes_are_flat():
    from forecast.outputs.trends import horizon_direction

    assert horizon_direction(np.full(12, 0.3), np.full(12, 0.1), 0.1) == "flat"  # 3.6 vs 1.2 units: noise
    assert horizon_direction(np.full(12, 30.0), np.full(12, 10.0), 0.1) == "rising"
    assert horizon_direction(np.full(12, 10.0), np.full(12, 30.0), 0.1) == "falling"
    assert horizon_direction(np.full(12, 105.0), np.full(12, 100.0), 0.1) == "flat"  # under the threshold


def test_excel_export_has_a_byte_order_mark_and_reads_back(tmp_path):
    from forecast.data.contract import read_table
    from forecast.outputs.export import write_csv_atomic

    frame = pd.DataFrame({"item_id": ["a"], "description": ["£5 mug"]})
    write_csv_atomic(frame, tmp_path / "x.csv", bom=True)
    assert (tmp_path / "x.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert list(read_table(tmp_path / "x.csv")["description"]) == ["£5 mug"]
    write_csv_atomic(frame, tmp_path / "y.csv")
    assert not (tmp_path / "y.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_output_signature_types_numbers_as_doubles_and_dates_as_datetimes():
    from forecast.tracking.serving import typed_output
    from forecast.tracking.runs import output_schema

    example = pd.DataFrame({"item_id": ["a"], "date": ["2024-01-01"], "step": [1], "units": [np.nan],
                            "model": ["fusion"]})
    types = {c.name: str(c.type) for c in output_schema(typed_output(example)).inputs}
    assert types == {"item_id": "DataType.string", "date": "DataType.datetime", "step": "DataType.double",
                     "units": "DataType.double", "model": "DataType.string"}


@pytest.fixture(scope="module")
def baseline_fit(tmp_path_factory):
    """A fast fit (baselines only) of tiny data kept in a folder named retail."""
    folder = tmp_path_factory.mktemp("planner")
    sales, products = synthetic.write(folder / "retail", n_items=10, n_periods=40, n_new=2, seed=3)
    code = run_cli_in(folder, ["fit", "--sales", sales, "--products", products, "--models", "moving_average,knn",
                               "--excel", *TINY])
    assert code == 0
    return folder


def test_the_export_has_step_group_origin_and_one_direction_per_product(baseline_fit):
    export = pd.read_csv(baseline_fit / "forecast.csv", dtype={"item_id": str}, encoding="utf-8-sig")
    assert list(export.columns[:6]) == ["item_id", "date", "step", "group", "origin", "model"]
    steps = export.groupby("item_id")["step"].apply(list)
    assert all(found == list(range(1, len(found) + 1)) for found in steps) and steps.map(len).max() == 4
    assert set(export["group"]) == {"history", "new"}
    assert (export.loc[export["group"] == "new", "model"] == "knn").all()
    assert export["origin"].nunique() == 1 and export["origin"].iloc[0] < export["date"].min()
    assert (export.groupby("item_id")["trend_direction"].nunique() == 1).all()


def test_the_fit_run_is_named_after_its_data_and_holds_its_input_tables(baseline_fit):
    _, [parent], children = mlflow_runs(store_uri(baseline_fit))
    assert parent.info.run_name == "fit retail/sales.csv 12 items h4"
    inputs = {d.dataset.name: json.loads(d.dataset.profile) for d in parent.inputs.dataset_inputs}
    assert set(inputs) == {"sales", "products"} and inputs["products"]["num_rows"] == 12
    for child in children:  # each lasts its model's backtest fit time
        seconds = child.data.metrics["fit_seconds"]
        assert abs((child.info.end_time - child.info.start_time) / 1000 - seconds) < 0.01


def _run_the_pyfunc_snippet(run_id: str, folder: Path) -> None:
    """docs/mlflow.md's Python snippet as written (the run id filled in): it loads the logged model from
    the fit's store, forecasts every product, and leaves no stray ./mlflow.db."""
    text = (README.parent / "docs" / "mlflow.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0].replace("<run id>", run_id)
    scope: dict = {}
    exec(compile(snippet, "docs/mlflow.md", "exec"), scope)  # noqa: S102 -- the documented snippet itself
    assert set(scope["export"]["item_id"]) == set(pd.read_csv(folder / "products.csv", dtype=str)["item_id"])
    assert not (folder / "mlflow.db").exists()


README_SKIPPED = ("ui", "--help")  # a server that runs until stopped; the help text


def readme_then_commands() -> list[list[str]]:
    """The commands of README's "Then:" block, as argument lists after ``python -m forecast``."""
    block = README.read_text().split("\nThen:\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line.replace("<run id>", "RUN_ID"), comments=True)  # a placeholder, one word
        assert words[:3] == ["python", "-m", "forecast"], line
        commands.append(words[3:])
    return commands


def test_readmes_then_commands_run_in_order_on_tiny_data(tmp_path, monkeypatch):
    """Each command as written (data, placeholders filled in), with tiny training settings added."""
    monkeypatch.chdir(tmp_path)
    synthetic.write(tmp_path, n_items=10, n_periods=40, n_new=2, seed=4)
    tiny = {"fit": [*TINY, "--max-epochs", "1", "--models", "moving_average,knn,fusion"],
            "tune": [*TINY, "--max-epochs", "1", "--trials", "1"]}
    ran = []
    for words in readme_then_commands():
        verb = words[0]
        if verb in README_SKIPPED or words == ["--help"]:
            continue
        if verb == "predict":
            fusion = runs_by_name(mlflow_runs(store_uri(tmp_path))[2])["fusion"]
            words = [w.replace("RUN_ID", fusion.info.run_id) for w in words]
            _run_the_pyfunc_snippet(fusion.info.run_id, tmp_path)
        if verb == "fit" and "--config" not in words:
            assert main(words + tiny["fit"]) == 0, words
        else:
            assert main(words + tiny.get(verb, [])) == 0, words
        ran.append(verb)
        if verb == "fit" and len(ran) == 1:
            fitted = (tmp_path / "forecast.csv").read_bytes()
        if verb == "tune":  # tune wrote its own export, not over the fit's
            assert (tmp_path / "forecast_tuned.csv").is_file()
            assert (tmp_path / "forecast.csv").read_bytes() == fitted
    assert ran == ["fit", "trends", "predict", "tune", "fit"]
    assert (tmp_path / "trends.csv").read_text().startswith("dimension,value,products")
    last = [run for run in mlflow_runs(store_uri(tmp_path))[1] if run.data.tags.get("forecast.verb") == "fit"][-1]
    assert last.info.run_name.endswith(" tuned")  # the fit of tune's best config says so


def test_a_model_whose_every_series_fell_back_says_so_once(caplog):
    import logging

    from forecast.models.baselines import statistical

    records = [statistical.FallbackRecord(i, "seasonal_naive", "naive", "history shorter than two seasons")
               for i in range(3)]
    with caplog.at_level(logging.DEBUG, logger=statistical.logger.name):
        for _ in range(3):  # three backtest folds
            statistical._log_fallbacks("seasonal_naive_once_test", 3, records)
    said = [r for r in caplog.records if "every series fell back to naive" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def _rising_panel(folder: Path, n_weeks: int = 30):
    """Six products selling 10, 11, 12, ... a week: less than a season (52 weeks) of history, and the
    last week (naive) forecasts the next ones better than a moving average does."""
    from forecast.data.contract import load_tables
    from forecast.data.panel import build_panel

    weeks = pd.date_range("2024-01-01", periods=n_weeks, freq="W-MON")
    pd.DataFrame([(f"p{k}", week.date(), 10 + t) for k in range(6) for t, week in enumerate(weeks)],
                 columns=["item_id", "date", "units"]).to_csv(folder / "sales.csv", index=False)
    pd.DataFrame({"item_id": [f"p{k}" for k in range(6)], "description": [f"mug {k}" for k in range(6)]}
                 ).to_csv(folder / "products.csv", index=False)
    return build_panel(load_tables(folder / "sales.csv", folder / "products.csv"))


def test_a_model_whose_every_series_fell_back_is_reported_as_its_fallback_and_not_chosen(tmp_path):
    from functools import partial

    from forecast.core.config import EvalConfig
    from forecast.evaluation.backtest import run_backtest
    from forecast.models import registry
    from forecast.pipeline import format_summary

    panel = _rising_panel(tmp_path)
    cfg = RunConfig().updated({"baselines.n_jobs": 1, "train.progress": False})
    models = {m: partial(registry.build, m, cfg) for m in ("seasonal_naive", "moving_average")}
    result = run_backtest(panel, models, EvalConfig(horizon=4, folds=2, step=4))
    assert result.stand_ins == {"seasonal_naive": "naive"}
    wape = result.reported().set_index("model")["wape"]
    assert wape["seasonal_naive→naive"] < wape["moving_average"]  # naive's score, the better one here
    assert "seasonal_naive→naive" in format_summary(result.reported())
    assert result.best_models() == {"history": "moving_average"}  # the score is not seasonal_naive's own
    assert result.summary()["model"].tolist() == ["seasonal_naive", "moving_average"]  # keys stay registry names
    alone = run_backtest(panel, {"seasonal_naive": models["seasonal_naive"]}, EvalConfig(horizon=4, folds=2, step=4))
    assert alone.best_models() == {"history": "seasonal_naive"}  # nothing else scored: still a forecast


def test_the_training_bar_shows_no_logger_version():
    from forecast.models.neural.progress import EpochBar

    trainer = SimpleNamespace(progress_bar_metrics={"train/loss": 1.5},
                              loggers=[SimpleNamespace(version="0123456789abcdef")])
    assert EpochBar("fusion").get_metrics(trainer, None) == {"train/loss": 1.5}
