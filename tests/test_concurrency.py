"""Two fit jobs writing to the same ./mlruns at once both finish, with intact runs."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import mlflow_runs, store_uri


def test_two_fits_share_one_store(workdir, synthetic_csv):
    sales, products = synthetic_csv
    args = ["fit", "--sales", sales, "--products", products, "--horizon", "4", "--folds", "2",
            "--models", "moving_average,seasonal_naive", "--no-progress"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "forecast", *args, "--export", f"out{k}.csv", "--run-name", f"job{k}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in (1, 2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err
    _, parents, children = mlflow_runs(store_uri())
    assert sorted((run.info.run_name, run.info.status) for run in parents) == [("job1", "FINISHED"),
                                                                                ("job2", "FINISHED")]
    for parent in parents:
        metrics = {(run.info.run_name, key) for run in children
                   if run.data.tags["mlflow.parentRunId"] == parent.info.run_id for key in run.data.metrics}
        assert {("moving_average", "history/wape"), ("seasonal_naive", "history/wape")} <= metrics
    assert Path("out1.csv").stat().st_size > 0 and Path("out2.csv").stat().st_size > 0
