"""Regenerate docs/mlflow_compare.png: the MLflow compare view of one sample fit's model runs.

    python experiments/screenshot_compare.py            # about 2 minutes on 2 cores

Fits the default models on the embedded sample in a temporary folder, starts
``python -m forecast ui`` on a free port of 127.0.0.1, opens the compare view of the
fit's child runs (one per model) in headless Chromium and saves the screenshot. Needs
``chromium`` on PATH (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "mlflow_compare.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_runs(folder: Path) -> tuple[str, list[str]]:
    """(experiment id, the latest fit's child run ids)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("forecast").experiment_id
    runs = client.search_runs([experiment], order_by=["attributes.start_time DESC"])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    return experiment, [r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{url} did not answer in {seconds:.0f}s")


def main() -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-m", "forecast", "fit", "--no-progress"], cwd=folder, check=True)
        experiment, runs = child_runs(folder)
        port = free_port()
        ui = subprocess.Popen([sys.executable, "-m", "forecast", "ui", "--port", str(port)], cwd=folder,
                              start_new_session=True)  # its own process group: the server's workers stop with it
        try:
            wait_for(f"http://127.0.0.1:{port}/health")
            query = urllib.parse.urlencode({"runs": json.dumps(runs), "experiments": json.dumps([experiment])})
            url = f"http://127.0.0.1:{port}/#/compare-runs?{query}"
            OUTPUT.parent.mkdir(exist_ok=True)
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1600,2300", "--virtual-time-budget=20000",
                            f"--screenshot={OUTPUT}", url], check=True, capture_output=True)
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=30)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
