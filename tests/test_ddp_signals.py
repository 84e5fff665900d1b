"""A 2-process DDP fit on CPU that is interrupted, or loses a training process, stops cleanly.

Before forecast.models.neural.ranks, a SIGTERM during training hung both processes in 1 of 3 tries and
otherwise ended with gloo's "Connection closed by peer" printed by the other rank; a killed worker took
rank 0 down with SIGKILL or as an internal error (experiments/results/ddp_signals.md).

Each test runs the CLI in a session of its own, so every process it starts (rank 0 and the rank
Lightning launches by rerunning the command) can be found afterwards by session id. Starting the second
rank costs tens of seconds on a busy 2-core machine, so the timeouts are generous; nothing is timed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forecast.data import synthetic

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 420  # both ranks training (the second one imports torch and Lightning on a loaded machine)
STOP_TIMEOUT = 120  # a bound, not a measure: a stopped fit exits in seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes found through /proc")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[str, str]:
    """A small panel: 12 items over 40 weeks, so an epoch takes a fraction of a second."""
    return synthetic.write(tmp_path_factory.mktemp("tiny"), n_items=12, n_periods=40, n_new=2, seed=3)


def start_fit(tiny: tuple[str, str], cwd: Path, epochs: int) -> tuple[subprocess.Popen, Path]:
    """A 2-process DDP fit of fusion in a new session, its stderr going to a file."""
    sales, products = tiny
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = cwd / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "forecast", "fit", "--sales", sales, "--products", products, "--models", "fusion",
             "--horizon", "4", "--folds", "1", "--max-epochs", str(epochs), "--no-progress",
             "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    return proc, log


def wait_until_both_ranks_train(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if log.read_text(errors="replace").count("fusion: epoch 1/") >= 2:
            return
        time.sleep(0.2)
    end(proc)
    pytest.fail(f"the fit did not start training on 2 ranks:\n{log.read_text(errors='replace')[-3000:]}")


def session_processes(sid: int) -> dict[int, int]:
    """{pid: parent pid} of the live (not zombie) processes of session ``sid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid, _group, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if int(session) == sid and state != "Z":
            found[int(entry.name)] = int(ppid)
    return found


def end(proc: subprocess.Popen) -> None:
    """Kill whatever of the session is left (a failed test must not leave training processes running)."""
    for pid in session_processes(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def finished(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    """(exit code, stderr) of the fit, once it ended (failing the test if it does not within STOP_TIMEOUT)."""
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        end(proc)
        pytest.fail(f"the fit did not stop within {STOP_TIMEOUT}s:\n{log.read_text(errors='replace')[-3000:]}")
    return code, log.read_text(errors="replace")


def assert_no_process_left(sid: int) -> None:
    deadline = time.monotonic() + 10  # a rank killed as rank 0 exited may take a moment to be gone
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not session_processes(sid), f"processes left running: {session_processes(sid)}"


def test_sigterm_stops_every_process_of_a_distributed_fit(tiny, tmp_path):
    proc, log = start_fit(tiny, tmp_path, epochs=400)
    wait_until_both_ranks_train(proc, log)
    proc.send_signal(signal.SIGTERM)
    code, err = finished(proc, log)
    assert code == 130, err[-3000:]
    assert err.rstrip().splitlines()[-1] == "interrupted"
    assert err.count("interrupted") == 1  # rank 0 says it; the other rank was stopped, not interrupted
    assert "Traceback" not in err and "gloo" not in err and "internal error" not in err, err[-3000:]
    assert_no_process_left(proc.pid)


def test_a_killed_training_process_is_reported_by_rank_and_signal(tiny, tmp_path):
    proc, log = start_fit(tiny, tmp_path, epochs=400)
    wait_until_both_ranks_train(proc, log)
    workers = [pid for pid, parent in session_processes(proc.pid).items() if parent == proc.pid]
    assert len(workers) == 1, workers  # the rank Lightning launched
    os.kill(workers[0], signal.SIGKILL)
    code, err = finished(proc, log)
    assert code == 1, err[-3000:]
    last = err.rstrip().splitlines()[-1]
    assert re.fullmatch(rf"error: training process 1 \(pid {workers[0]}\) died \(killed by signal 9 \(SIGKILL\)\); "
                        r"the distributed training stopped; .*--resume.*", last), last
    assert "Traceback" not in err and "gloo" not in err and "internal error" not in err, err[-3000:]
    assert_no_process_left(proc.pid)


# --- the pieces, without a distributed training (fast) ------------------------------------------------------------

@pytest.fixture
def no_workers(monkeypatch):
    """forecast.models.neural.ranks with an empty list of launched ranks, restored afterwards."""
    from forecast.models.neural import ranks

    monkeypatch.setattr(ranks, "_workers", [])
    yield ranks
    for proc in ranks.workers():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_process_end_is_put_in_words():
    from forecast.models.neural.ranks import how_it_ended

    assert how_it_ended(-9) == "killed by signal 9 (SIGKILL)"
    assert how_it_ended(-15) == "killed by signal 15 (SIGTERM)"
    assert how_it_ended(1) == "exit code 1"


def test_adopting_empties_lightnings_list_so_its_watcher_stops(no_workers):
    launched = [sleeper(), sleeper()]
    held = launched  # Lightning's watcher thread holds this very list
    no_workers.adopt(launched)
    assert held == [] and len(no_workers.workers()) == 2
    no_workers.stop_workers()
    assert all(proc.returncode == -signal.SIGKILL for proc in no_workers.workers())


def test_a_training_failing_because_a_rank_died_names_the_rank_and_stops_the_others(no_workers):
    first, second = sleeper(), sleeper()
    no_workers.adopt([first, second])
    second.kill()
    with pytest.raises(no_workers.WorkerDied) as caught:
        with no_workers.reporting_dead_workers(resumable=True):
            raise RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer")
    message = str(caught.value)
    assert f"training process 2 (pid {second.pid}) died (killed by signal 9 (SIGKILL))" in message
    assert "--resume" in message and caught.value.exit_code == 1
    assert first.poll() is not None  # the surviving rank was stopped too


def test_a_failure_with_every_rank_alive_passes_unchanged(no_workers, monkeypatch):
    monkeypatch.setattr(no_workers, "DEATH_SECONDS", 0.2)  # how long it looks for a death before passing it on
    no_workers.adopt([sleeper()])
    with pytest.raises(ValueError, match="a bug"):
        with no_workers.reporting_dead_workers(resumable=False):
            raise ValueError("a bug")


def test_a_failed_collective_ends_another_rank_quietly(no_workers, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SystemExit) as caught:
        with no_workers.reporting_dead_workers(resumable=True):
            raise RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer")
    assert caught.value.code == 1 and caught.value.__suppress_context__  # no gloo message chained to it
    with pytest.raises(ValueError):  # a rank's own bug is not hidden
        with no_workers.reporting_dead_workers(resumable=True):
            raise ValueError("a bug")


INTERRUPTED = """
import subprocess, sys, time
from forecast.models.neural import ranks
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
ranks.adopt([child])
ranks.handle_interrupts()
try:
    print(child.pid, flush=True)
    time.sleep(120)
except KeyboardInterrupt:
    print("interrupted", child.poll(), flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_rank_zero_stops_its_ranks_before_it_is_interrupted(sig):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED], stdout=subprocess.PIPE, text=True, env=env)
    child = int(proc.stdout.readline())
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert out.split() == ["interrupted", str(-signal.SIGKILL)]  # the rank was already killed and reaped
    assert not Path(f"/proc/{child}").exists()


def test_another_rank_leaves_ctrl_c_to_rank_zero_and_dies_of_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCAL_RANK": "1"}
    code = ("from forecast.models.neural import ranks; import time; ranks.handle_interrupts(); "
            "print('ready', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # ignored
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
