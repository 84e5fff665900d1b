"""Training on more devices: a 2-process DDP fit on CPU (gloo) through the CLI.

Lightning starts rank 1 by rerunning the command, so the fit runs in a subprocess
(in-process, rank 1 would rerun pytest). Every rank runs the whole fit; only rank 0
may open the MLflow run, save models and write the export.
"""

from __future__ import annotations


import pandas as pd

from tests.conftest import mlflow_runs, refused, run_cli_process, store_uri


def test_ddp_fit_on_two_cpu_processes_writes_one_run_one_model_one_export(tmp_path, synthetic_csv):
    sales, products = synthetic_csv
    done = run_cli_process(
        "fit", "--sales", sales, "--products", products,
        "--models", "moving_average,fusion", "--model", "fusion", "--horizon", "6", "--folds", "1",
        "--max-epochs", "2", "--no-progress", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
        cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # each rank trains and logs its own line per epoch (with its own shard's loss): two processes trained
    # the backtest fold's one network and the refit's neural.members (3), on 2 ranks
    assert done.stderr.count("fusion: epoch 1/2") == 2 * (1 + 3)

    export = pd.read_csv(tmp_path / "forecast.csv", dtype={"item_id": str})
    catalogue = pd.read_csv(products, dtype={"item_id": str})
    assert set(export["item_id"]) == set(catalogue["item_id"]) and set(export["model"]) == {"fusion"}
    assert export["units"].notna().all() and (export["units"] >= 0).all()

    _, parents, children = mlflow_runs(store_uri(tmp_path))
    metrics = {(run.info.run_name, key) for run in parents + children for key in run.data.metrics}
    assert [run.info.status for run in parents] == ["FINISHED"]  # rank 1 opened no run of its own
    assert {("fusion", "history/wape"), ("moving_average", "history/wape")} <= metrics
    assert any(run == "fusion" and "train/loss" in k for run, k in metrics)  # rank 0's Lightning curves
    saved = list((tmp_path / "checkpoints").rglob("meta.json"))
    assert len(saved) == 1 and saved[0].parent.name == "fusion"


def test_text_mode_auto_fine_tunes_on_cuda_and_stays_frozen_on_cpu():
    from forecast.core.config import RunConfig
    from forecast.models.neural.devices import resolve_text_mode

    cfg = RunConfig()
    assert cfg.neural.text_mode == "auto"
    assert resolve_text_mode(cfg.updated({"train.accelerator": "cpu"})).neural.text_mode == "frozen"
    assert resolve_text_mode(cfg.updated({"train.accelerator": "gpu"})).neural.text_mode == "last-k"
    assert resolve_text_mode(cfg.updated({"neural.text_mode": "full"})).neural.text_mode == "full"


def test_device_options_are_checked_before_anything_runs(workdir, capsys):
    refused(capsys, ["fit", "--strategy", "ddp_spawn"], "invalid choice: 'ddp_spawn'")
    refused(capsys, ["fit", "--devices", "two"], "'two' is not an integer, auto or integers separated by commas")
