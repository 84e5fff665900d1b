"""`python -m forecast ui`: stopping it (SIGTERM, Ctrl-C) stops the MLflow server and its workers, quietly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import cli_env, free_port, store_uri


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def make_store(folder) -> None:
    """An (empty) MLflow store in ``folder``'s ./mlruns: ``ui`` refuses a folder without one."""
    from mlflow.tracking import MlflowClient

    (folder / "mlruns").mkdir()
    MlflowClient(store_uri(folder)).search_experiments()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_the_ui_frees_its_port(tmp_path, sig):
    port = free_port()
    make_store(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "forecast", "ui", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not listening(port):
            time.sleep(0.2)
        assert listening(port), f"the UI never listened on {port}: {proc.stderr.read() if proc.poll() else ''}"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 5
    while time.time() < deadline and not bindable(port):
        time.sleep(0.1)
    assert bindable(port), "the MLflow server (or a worker) still holds the port"
    assert "Traceback" not in err, err[-3000:]
    assert proc.returncode == 130 and err.rstrip().endswith("interrupted"), (proc.returncode, err[-2000:])
