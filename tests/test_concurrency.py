"""Two fit jobs writing to the same ./mlruns at once both finish, with intact runs."""

import sqlite3
import subprocess
import sys
from pathlib import Path


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
    with sqlite3.connect(Path("mlruns/mlflow.db"), timeout=60) as con:
        runs = con.execute("select run_uuid, name, status from runs where run_uuid not in "
                           "(select run_uuid from tags where key = 'mlflow.parentRunId')").fetchall()
        assert sorted((name, status) for _, name, status in runs) == [("job1", "FINISHED"), ("job2", "FINISHED")]
        for run_id, _, _ in runs:
            children = con.execute("select r.name, m.key from runs r join tags t on t.run_uuid = r.run_uuid "
                                   "join latest_metrics m on m.run_uuid = r.run_uuid "
                                   "where t.key = 'mlflow.parentRunId' and t.value = ?", (run_id,)).fetchall()
            assert {("moving_average", "history/wape"), ("seasonal_naive", "history/wape")} <= set(children)
    assert Path("out1.csv").stat().st_size > 0 and Path("out2.csv").stat().st_size > 0
