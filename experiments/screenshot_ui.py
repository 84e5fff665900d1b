"""Regenerate docs/mlflow_runs.png: the runs table at the address ``python -m forecast ui`` prints.

    python experiments/screenshot_ui.py            # about a minute on 2 cores

Fits three light models on the embedded sample in a temporary folder, starts ``python -m forecast
ui`` on a free port of 127.0.0.1, opens the address it printed in headless Chromium (a fresh
profile, as a new user's browser), waits until the table has drawn the fit's model runs and the
headline metric columns, closes MLflow's assistant panel (it opens itself on a browser's first
visit), checks that the page shows one row per model and each group's WAPE, bias and coverage, and
saves the top of the page. Needs ``chromium`` on PATH (Debian: ``apt-get install chromium``).

The browser is driven over the DevTools protocol through ``--remote-debugging-pipe`` (JSON messages
separated by NUL bytes on file descriptors 3 and 4): no websocket library, no debugging port.
Chromium's own ``--screenshot`` takes its picture when a time budget ends, before MLflow's React
runs table has necessarily drawn its rows and columns; here the script waits until the page shows them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from forecast.tracking import runs_view  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "mlflow_runs.png"
MODELS = ("moving_average", "tsb", "knn")  # two for products with history, one for new ones: light on CPU
WIDTH, HEIGHT = 1600, 1000

# the grid places its cells by position, not in document order: both read left to right, top to bottom
HEADERS = ("Array.from(document.querySelectorAll('.ag-header-cell')).sort((a, b) => a.getBoundingClientRect().x"
           " - b.getBoundingClientRect().x).map(c => c.getAttribute('col-id'))")
RUN_NAMES = ("Array.from(document.querySelectorAll('[role=gridcell][col-id=\"attributes.`Run Name`\"]')).sort((a, b)"
             " => a.getBoundingClientRect().y - b.getBoundingClientRect().y).map(c => c.innerText.trim().split('\\n')"
             ".pop())")  # the cell starts with its run's colour picker
TABLE_BOTTOM = ("Math.max(...Array.from(document.querySelectorAll('.ag-row')).map(r => r.getBoundingClientRect()"
                ".bottom))")
CLOSE_ASSISTANT = "document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click()"
ADDRESS = re.compile(r"runs of experiment .*?: (http://\S+)")  # the line `forecast ui` prints


def chromium() -> str:
    """The Chromium executable, or exit with how to install it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("chromium not found (Debian: apt-get install chromium)")
    return browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{url} did not answer in {seconds:.0f}s")


def fit(folder: Path, *args: str) -> None:
    """``python -m forecast fit ARGS`` on the embedded sample, in ``folder``."""
    subprocess.run([sys.executable, "-m", "forecast", "fit", "--no-progress", *args], cwd=folder, check=True)


@contextmanager
def forecast_ui(folder: Path) -> Iterator[tuple[int, str]]:
    """``python -m forecast ui`` on a free port of 127.0.0.1 in ``folder``: (port, the address it printed),
    stopped (its whole process group) on exit."""
    port = free_port()
    log = folder / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen([sys.executable, "-m", "forecast", "ui", "--port", str(port)], cwd=folder,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        found = ADDRESS.search(log.read_text())
        if found is None:
            raise RuntimeError(f"forecast ui printed no runs address:\n{log.read_text()}")
        yield port, found.group(1)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


class Browser:
    """One headless Chromium page driven over the DevTools protocol on a pipe."""

    def __init__(self, width: int, height: int):
        to_chrome, self._write = os.pipe()  # Chromium reads commands on fd 3 ...
        self._read, from_chrome = os.pipe()  # ... and writes answers and events on fd 4

        def wire_pipes() -> None:  # in the child: the pipes onto fds 3 and 4 (via copies, as either may be 3 or 4)
            reads, writes = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(reads, 3)
            os.dup2(writes, 4)

        self._process = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire_pipes,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._next_id, self.width = b"", 0, width
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def send(self, method: str, **params) -> dict:
        """A DevTools command to the page."""
        return self._call(method, self._session, **params)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_until(self, expression: str, seconds: float = 60) -> None:
        """Poll until ``expression`` is truthy in the page."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the page never showed: {expression}")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screenshot(self, path: Path, height: int | None = None) -> None:
        """The page as a PNG; with ``height``, only its top ``height`` pixels."""
        clip = {"clip": {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}} if height else {}
        data = self.send("Page.captureScreenshot", format="png", **clip)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self._call("Browser.close")
        except RuntimeError:
            pass
        self._process.wait(timeout=30)
        os.close(self._write)
        os.close(self._read)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check(headers: list[str], names: list[str]) -> None:
    """One row per model under the fit's row, and the headline metric columns in the view's order."""
    metrics = [h for h in headers if h and h.startswith("metrics.")]
    missing = [m for m in MODELS if m not in names]
    if missing or metrics != runs_view.headline_metrics():
        raise SystemExit(f"the runs table does not show what it should: rows {names}, metric columns {metrics}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fit(folder, "--models", ",".join(MODELS))
        with forecast_ui(folder) as (_, address), Browser(WIDTH, HEIGHT) as page:
            print(f"opening {address}")
            page.open(address)
            page.wait_until(f"{RUN_NAMES}.length > {len(MODELS)}", 120)  # the fit and its model runs
            page.wait_until(f"{HEADERS}.some(h => h && h.startsWith('metrics.'))", 60)
            page.evaluate(CLOSE_ASSISTANT)
            time.sleep(2)  # the table widens into the panel's room
            headers, names = page.evaluate(HEADERS), page.evaluate(RUN_NAMES)
            print(f"rows: {names}\ncolumns: {[h for h in headers if h]}")
            check(headers, names)
            page.screenshot(OUTPUT, height=min(HEIGHT, int(page.evaluate(TABLE_BOTTOM)) + 40))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
