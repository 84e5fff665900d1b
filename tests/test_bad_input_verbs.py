"""Issue 27: the verbs other than fit (predict, trends, tune, ui) check their inputs, outputs and
options before any work, and user-fixable faults (a full disk, a read-only folder, a busy port)
are said as such: exit 2, one ``error:`` line naming the file, option or URL, no traceback, no
temporary file left. Also: products the life cycle forgets, saved models keep their ranges,
device options are checked against the machine."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.data import synthetic
from tests.conftest import assert_refused, free_port, run_cli, run_cli_in, run_cli_process, write_csv

HORIZON = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """sales.csv (with price and a promo covariate) and products.csv: 16 weekly items, 2 launching later."""
    folder = tmp_path_factory.mktemp("verbs")
    sales, products = synthetic.generate(n_items=16, n_periods=36, n_new=2, seed=4)
    sales["promo"] = (np.arange(len(sales)) % 5 == 0).astype(int)
    sales.to_csv(folder / "sales.csv", index=False)
    products.to_csv(folder / "products.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory) -> Path:
    """The issue's example: fit --models moving_average,fusion --max-epochs 1 --folds 1; the saved fusion."""
    folder = tmp_path_factory.mktemp("saved")
    (folder / "small.yaml").write_text("train:\n  windows_per_epoch: 512\nneural:\n  hidden_size: 8\n")
    code = run_cli_in(folder, ["fit", *tables(data), "--models", "moving_average,fusion", "--max-epochs", "1",
                               "--folds", "1", "--horizon", str(HORIZON), "--config", "small.yaml", "--no-progress"])
    assert code == 0
    [model] = [p.parent for p in (folder / "checkpoints").rglob("model.safetensors") if "work" not in p.parts]
    return model


@pytest.fixture(scope="module")
def forecast_csv(data, tmp_path_factory) -> Path:
    """A forecast of the data by moving_average (fast), for trends."""
    folder = tmp_path_factory.mktemp("forecast")
    assert run_cli_in(folder, ["fit", *tables(data), "--models", "moving_average", "--folds", "1", "--horizon",
                               str(HORIZON), "--no-progress"]) == 0
    return folder / "forecast.csv"


def tables(data: Path) -> list[str]:
    return ["--sales", str(data / "sales.csv"), "--products", str(data / "products.csv")]


def sales_without(data: Path, workdir: Path, column: str, extra: dict | None = None) -> str:
    frame = pd.read_csv(data / "sales.csv").drop(columns=column)
    for name, value in (extra or {}).items():
        frame[name] = value
    frame.to_csv(workdir / "sales.csv", index=False)
    return str(workdir / "sales.csv")


# --- a verb reads the wrong kind of file -------------------------------------------------------------------

def trends(capsys, data: Path, forecast: Path | str, *extra: str) -> tuple[int, str]:
    return run_cli(capsys, ["trends", *tables(data), "--forecast", str(forecast), *extra])


def test_trends_refuses_a_sales_table_given_as_the_forecast(data, workdir, capsys):
    code, err = trends(capsys, data, data / "sales.csv")
    assert_refused(code, err, "sales.csv", "sales history", "not a forecast")
    assert not Path("trends.csv").exists()


def edited(forecast_csv: Path, workdir: Path, edit) -> Path:
    frame = pd.read_csv(forecast_csv, dtype={"item_id": str})
    edit(frame)
    frame.to_csv(workdir / "fc.csv", index=False)
    return workdir / "fc.csv"


def test_trends_refuses_a_forecast_edited_to_negative_units(data, forecast_csv, workdir, capsys):
    def negative(frame):
        frame.loc[1, "units"] = -50
    code, err = trends(capsys, data, edited(forecast_csv, workdir, negative))
    assert_refused(code, err, "fc.csv", "'units'", "negative", "line 3", "-50")


def test_trends_refuses_a_range_upside_down(data, forecast_csv, workdir, capsys):
    def upside_down(frame):
        frame.loc[0, ["units_p10", "units_p90"]] = [9.0, 2.0]
    code, err = trends(capsys, data, edited(forecast_csv, workdir, upside_down))
    assert_refused(code, err, "fc.csv", "'units_p10'", "above units_p90", "line 2")


def test_trends_refuses_a_forecast_with_repeated_rows(data, forecast_csv, workdir, capsys):
    code, err = trends(capsys, data, edited(forecast_csv, workdir, lambda f: f.loc.__setitem__(1, f.loc[0])))
    assert_refused(code, err, "fc.csv", "duplicate an (item_id, date)", "line 2", "line 3")


def test_trends_accepts_the_real_forecast(data, forecast_csv, workdir, capsys):
    code, err = trends(capsys, data, forecast_csv)
    assert code == 0, err
    assert Path("trends.csv").is_file()


def predict(capsys, model: Path, sales: str, products: str, *extra: str) -> tuple[int, str]:
    return run_cli(capsys, ["predict", "--model-dir", str(model), "--sales", sales, "--products", products,
                            "--export", "out.csv", *extra])


def test_predict_refuses_data_without_the_trained_price(data, saved, workdir, capsys):
    code, err = predict(capsys, saved, sales_without(data, workdir, "price"), str(data / "products.csv"))
    assert_refused(code, err, "sales.csv", "'price'", "trained with")
    assert not Path("out.csv").exists()


def test_predict_refuses_data_without_the_trained_covariate_naming_it(data, saved, workdir, capsys):
    code, err = predict(capsys, saved, sales_without(data, workdir, "promo"), str(data / "products.csv"))
    line = assert_refused(code, err, "sales.csv", "'promo'", "trained with")
    assert "{" not in line  # no internal feature-width dictionaries


def test_predict_ignores_a_covariate_the_model_never_saw_and_says_so(data, saved, workdir, capsys, caplog):
    sales = sales_without(data, workdir, "promo", {"promo": 0, "discount": 0.1})
    code, err = predict(capsys, saved, sales, str(data / "products.csv"))
    assert code == 0, err
    assert "'discount' are ignored" in caplog.text


# --- an output lands on a file the run reads or writes -------------------------------------------------------

def test_predict_export_onto_the_models_meta_json_is_refused(data, saved, workdir, capsys):
    before = (saved / "meta.json").read_bytes()
    code, err = run_cli(capsys, ["predict", "--model-dir", str(saved), *tables(data),
                                 "--export", str(saved / "meta.json")])
    assert_refused(code, err, "--export", "meta.json", "input file")
    assert (saved / "meta.json").read_bytes() == before


def test_tune_best_config_and_export_naming_one_file_are_refused(data, workdir, capsys):
    code, err = run_cli(capsys, ["tune", *tables(data), "--best-config", "x.yaml", "--export", "x.yaml",
                                 "--trials", "1"])
    assert_refused(code, err, "--best-config x.yaml", "--export x.yaml", "same file")
    assert not Path("mlruns").exists()  # refused before the study or the store was opened


def test_trends_output_whose_chart_is_the_output_is_refused(data, forecast_csv, workdir, capsys):
    code, err = trends(capsys, data, forecast_csv, "--output", "report.png")
    assert_refused(code, err, "--output report.png", "chart", "same file")


def test_export_onto_the_config_or_the_mlflow_store_is_refused(data, workdir, capsys):
    Path("c.yaml").write_text("seed: 1\n")
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "moving_average", "--config", "c.yaml",
                                 "--export", "c.yaml"])
    assert_refused(code, err, "--export c.yaml", "--config")
    assert Path("c.yaml").read_text() == "seed: 1\n"
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "moving_average", "--export", "mlruns/mlflow.db"])
    assert_refused(code, err, "mlflow.db", "MLflow store")


def test_tune_best_config_onto_the_search_space_is_refused(data, workdir, capsys):
    Path("space.yaml").write_text("neural.dropout: {type: float, low: 0.0, high: 0.3}\n")
    code, err = run_cli(capsys, ["tune", *tables(data), "--search-space", "space.yaml", "--best-config", "space.yaml"])
    assert_refused(code, err, "--best-config space.yaml", "--search-space")


# --- option values checked before the first trial or training --------------------------------------------------

SPACES = {
    "low_above_high": ("neural.dropout: {type: float, low: 0.3, high: 0.1}", ["'neural.dropout'", "low <= high"]),
    "log_from_zero": ("train.learning_rate: {type: float, low: 0.0, high: 0.01, log: true}",
                      ["'train.learning_rate'", "low > 0", "log"]),
    "int_step_zero": ("neural.context_length: {type: int, low: 8, high: 16, step: 0}",
                      ["'neural.context_length'", "step > 0"]),
    "categorical_string": ("neural.sequence_encoder: {type: categorical, choices: lstm}",
                           ["'neural.sequence_encoder'", "must be a non-empty list", "'lstm'"]),
    "float_range_on_int_key": ("neural.hidden_size: {type: float, low: 16, high: 64}",
                               ["'neural.hidden_size'", "not an integer"]),
    "misspelled_field": ("neural.dropout: {type: float, lo: 0.0, high: 0.3}", ["'neural.dropout'", "unknown field", "lo"]),
    "fractional_int_bound": ("neural.hidden_size: {type: int, low: 16.5, high: 64}",
                             ["'neural.hidden_size'", "low 16.5", "not an integer"]),
    "empty_choices": ("neural.fusion: {type: categorical, choices: []}", ["'neural.fusion'", "non-empty list"]),
}


@pytest.mark.parametrize("case", sorted(SPACES))
def test_bad_search_spaces_are_refused_before_any_trial(case, data, workdir, capsys):
    text, needles = SPACES[case]
    Path("space.yaml").write_text(text + "\n")
    code, err = run_cli(capsys, ["tune", *tables(data), "--search-space", "space.yaml", "--trials", "1"])
    assert_refused(code, err, "space.yaml", *needles)
    assert not Path("mlruns/optuna.db").exists() and not Path("best_config.yaml").exists()


@pytest.mark.parametrize("name", ["a/../b", "x:y", " ", "n" * 300])
def test_bad_register_names_are_refused_before_training(name, data, workdir, capsys):
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "moving_average,fusion", "--register", name])
    assert_refused(code, err, "--register")
    assert not Path("checkpoints").exists() and not Path("forecast.csv").exists()  # no training ran
    assert not Path("mlruns").exists()  # nor was a run opened


def test_an_export_name_too_long_for_the_file_system_is_refused_first(data, workdir, capsys):
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "moving_average", "--export", "f" * 300 + ".csv"])
    assert_refused(code, err, "file name is 304 bytes", "shorter name")
    assert not Path("mlruns").exists()
    code, err = run_cli(capsys, ["trends", *tables(data), "--output", "t" * 250 + ".csv"])
    assert_refused(code, err, "file name is 254 bytes", "shorter name")


# --- faults the user can fix ------------------------------------------------------------------------------

def test_a_full_disk_during_the_export_is_said_and_leaves_no_temporary_file(data, workdir, capsys, monkeypatch):
    real = pd.DataFrame.to_csv

    def full_disk(self, target=None, *args, **kwargs):
        fd = getattr(target, "name", None)  # write_atomic writes to an os.fdopen'd temporary file
        if isinstance(fd, int) and ".forecast.csv." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, target, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "moving_average", "--folds", "1"])
    assert_refused(code, err, "forecast.csv", "no space left")
    assert not list(workdir.glob(".forecast.csv.*")) and not Path("forecast.csv").exists()


def test_a_full_disk_while_saving_a_checkpoint_is_said(data, workdir, capsys, monkeypatch):
    import torch

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    Path("small.yaml").write_text("train:\n  windows_per_epoch: 256\nneural:\n  hidden_size: 8\n")
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "fusion", "--folds", "1", "--max-epochs", "1",
                                 "--config", "small.yaml", "--no-progress"])
    assert_refused(code, err, "training checkpoints", "no space left")


def test_a_stale_temporary_file_of_a_killed_export_is_cleared(data, workdir, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = [workdir / f".forecast.csv.{dead.stdout.strip()}.k3j2h1g0.tmp", workdir / ".forecast.csv.ab12cd34.tmp"]
    for path in left:
        path.write_text("item_id,da")
    os.utime(left[1], (time.time() - 3600, time.time() - 3600))  # an older name without a pid, an hour old
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "moving_average", "--folds", "1"])
    assert code == 0, err
    assert not any(path.exists() for path in left)
    assert Path("forecast.csv").is_file()


def test_a_read_only_folder_for_the_optuna_store_is_refused(data, workdir, capsys, monkeypatch):
    Path("ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p).name == "ro" else real(p, mode))  # root ignores chmod
    code, err = run_cli(capsys, ["tune", *tables(data), "--storage", "sqlite:///ro/optuna.db", "--trials", "1"])
    assert_refused(code, err, "--storage sqlite:///ro/optuna.db", "ro", "not writable")


@pytest.mark.parametrize("storage", ["foo://somewhere/db", "sqlite:///notdb.db"])
def test_a_storage_optuna_cannot_open_is_refused_naming_it(storage, data, workdir, capsys):
    Path("notdb.db").write_text("this is not a database\n" * 100)
    code, err = run_cli(capsys, ["tune", *tables(data), "--storage", storage, "--trials", "1"])
    assert_refused(code, err, f"--storage {storage}", "cannot open")


def test_a_non_database_file_as_the_ui_store_is_refused(workdir, capsys):
    Path("notdb.db").write_text("this is not a database\n" * 100)
    code, err = run_cli(capsys, ["ui", "--tracking-uri", "sqlite:///notdb.db", "--port", str(free_port())])
    assert_refused(code, err, "sqlite:///notdb.db", "not a database")
    code, err = run_cli(capsys, ["ui", "--tracking-uri", "nosuch://x", "--port", str(free_port())])
    assert_refused(code, err, "nosuch://x")


# --- ui exits non-zero when it failed -------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["-1", "99999", "0", "65536"])
def test_ui_refuses_a_port_out_of_range(port, workdir, capsys):
    code, err = run_cli(capsys, ["ui", f"--port={port}"])
    assert_refused(code, err, f"--port {port}", "1 to 65535")


def test_ui_refuses_a_busy_port_through_the_cli(workdir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli_process("ui", "--port", str(port), timeout=120, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert f"--port {port}" in proc.stderr and "another --port" in proc.stderr and "Traceback" not in proc.stderr


# --- products the life cycle forgets ---------------------------------------------------------------------------

LIFE_SALES = "item_id,date,units\n" + "".join(f"A,2024-{m:02d}-{d:02d},5\n" for m, d in
                                              [(1, 1), (1, 8), (1, 15), (1, 22), (1, 29), (2, 5), (2, 12), (2, 19)])


def life_fit(workdir: Path, products: str, capsys, *extra: str) -> tuple[int, str]:
    sales = write_csv(workdir, "sales.csv", LIFE_SALES)
    products = write_csv(workdir, "products.csv", products)
    return run_cli(capsys, ["fit", "--sales", sales, "--products", products, "--horizon", "2", "--folds", "1",
                            "--models", "moving_average", "--no-progress", *extra])


def test_a_past_launch_without_sales_rows_is_forecast_for_the_forecast_weeks(workdir, capsys, caplog):
    code, err = life_fit(workdir, "item_id,description,launch_date\nA,red coat,\nC,blue coat,2024-01-15\n"
                         "D,green coat,2023-06-05\nN,new coat,2024-03-04\n", capsys)
    assert code == 0, err
    export = pd.read_csv("forecast.csv", dtype={"item_id": str})
    for item in ("C", "D"):  # a launch inside the table, one before it: both forecast for the coming weeks
        assert export.loc[export["item_id"] == item, "date"].tolist() == ["2024-02-26", "2024-03-04"]
    assert export.loc[export["item_id"] == "N", "date"].tolist() == ["2024-03-04", "2024-03-11"]  # future launch
    [warning] = [r.getMessage() for r in caplog.records if "no sales rows" in r.getMessage()]
    assert "2 product(s)" in warning and "C, D" in warning and "missing, not zero" in warning


def test_a_past_launch_that_has_ended_gets_no_rows(workdir, capsys, caplog):
    code, err = life_fit(workdir, "item_id,description,launch_date,end_date\nA,red coat,,\n"
                         "E,old coat,2023-06-05,2023-09-04\n", capsys)
    assert code == 0, err
    assert "E" not in set(pd.read_csv("forecast.csv", dtype={"item_id": str})["item_id"])
    assert "no sales rows" not in caplog.text


def test_signals_that_end_before_the_sales_start_are_refused(workdir, capsys):
    signals = write_csv(workdir, "signals.csv", "date,red\n2019-01-07,3\n2019-01-14,4\n")
    code, err = life_fit(workdir, "item_id,description\nA,red coat\n", capsys, "--signals", signals)
    assert_refused(code, err, "signals.csv", "end on 2019-01-14", "before the sales start on 2024-01-01")


def test_signals_that_stop_long_before_the_table_ends_are_named(workdir, capsys, caplog):
    weeks = pd.date_range("2022-01-03", "2023-01-02", freq="W-MON")
    signals = write_csv(workdir, "signals.csv", "date,red\n" + "".join(f"{d.date()},1\n" for d in weeks))
    sales = "item_id,date,units\n" + "".join(f"A,{d.date()},5\n" for d in pd.date_range("2022-01-03", periods=120,
                                                                                            freq="W-MON"))
    write_csv(workdir, "sales.csv", sales)
    products = write_csv(workdir, "products.csv", "item_id,description\nA,red coat\n")
    code, err = run_cli(capsys, ["fit", "--sales", "sales.csv", "--products", products, "--horizon", "2",
                                 "--folds", "1", "--models", "moving_average", "--signals", signals, "--no-progress"])
    assert code == 0, err
    assert "the signals end on 2023-01-02, 67 periods before the sales end" in caplog.text


# --- a saved model keeps its ranges -------------------------------------------------------------------------------

def test_a_saved_model_carries_its_ranges_or_says_why_not(data, saved, workdir, capsys, caplog):
    saved_ranges = json.loads((saved / "intervals.json").read_text())
    assert "history" in saved_ranges["groups"]  # fusion was scored on products with history
    assert "no product launched after a backtest origin" in saved_ranges["missing"]["new"]
    code, err = predict(capsys, saved, str(data / "sales.csv"), str(data / "products.csv"))
    assert code == 0, err
    export = pd.read_csv("out.csv", dtype={"item_id": str})
    new = export["item_id"].isin(["P0016", "P0017"])
    assert export.loc[~new, ["units_p10", "units_p90"]].notna().all().all()
    assert export.loc[new, ["units_p10", "units_p90"]].isna().all().all()
    assert "older version" not in caplog.text and "before they were kept" not in caplog.text
    assert "2 new product(s) get no forecast range" in caplog.text


def test_a_model_saved_without_intervals_json_says_to_refit(data, saved, workdir, capsys, caplog):
    import shutil

    copy = Path(shutil.copytree(saved, workdir / "model"))
    (copy / "intervals.json").unlink()
    code, err = predict(capsys, copy, str(data / "sales.csv"), str(data / "products.csv"))
    # its ranges are checksummed with its weights (SHA256SUMS): a folder without them is incomplete
    assert_refused(code, err, "intervals.json is missing", "refit", outputs=())


# --- device options checked against the machine -----------------------------------------------------------------

def test_more_cpu_devices_than_cores_is_refused_before_training(data, workdir, capsys):
    from forecast.models.neural.devices import cpu_cores

    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "fusion", "--accelerator", "cpu", "--devices", "64"])
    assert_refused(code, err, "--devices 64", f"{cpu_cores()} core(s)")
    assert not Path("mlruns").exists()


@pytest.mark.parametrize("devices, needle", [("0", "positive number"), ("0,1", "not a list")])
def test_impossible_cpu_device_options_are_refused(devices, needle, data, workdir, capsys):
    code, err = run_cli(capsys, ["fit", *tables(data), "--models", "fusion", "--accelerator", "cpu",
                                 "--devices", devices])
    assert_refused(code, err, f"--devices {devices}", needle)


def test_a_gpu_asked_for_on_a_machine_without_one_is_refused(data, workdir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = run_cli(capsys, ["tune", *tables(data), "--accelerator", "gpu", "--trials", "1"])
    assert_refused(code, err, "--accelerator gpu", "no GPU")


def test_a_distributed_rank_dies_with_its_parent(tmp_path):
    """A rank other than 0 asks Linux to kill it when rank 0 dies (kill -9 leaves no orphan training)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("prctl is Linux only")
    child = ("from forecast.models.neural.devices import die_with_parent; import time; die_with_parent(); "
             "time.sleep(120)")
    parent = (f"import subprocess, sys, os, time; env = dict(os.environ, LOCAL_RANK='1'); "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}], env=env); print(p.pid, flush=True); "
              f"time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    time.sleep(3)  # the child has imported forecast and made its request
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and _running(pid):
        time.sleep(0.1)
    assert not _running(pid), "the rank outlived its parent"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


# --- a large catalogue shows progress ---------------------------------------------------------------------------

def test_long_loops_log_their_progress(caplog):
    from forecast.core.progress import Progress

    progress = Progress("embedding descriptions", 1000, every=0.0)
    with caplog.at_level(logging.INFO, logger="forecast"):
        progress.step(0)
        progress.step(250)
        progress.step(1000)  # done: the caller says so itself
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("embedding descriptions: 250/1000 (25%)")
