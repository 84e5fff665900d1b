"""The other training processes of a distributed (DDP) fit: they stop with rank 0, and a dead one is
reported by name. (No Lightning import here: the CLI installs these handlers for every verb.)

With ``strategy: ddp`` Lightning (``_SubprocessScriptLauncher``) starts ranks 1..N-1 by rerunning the
command; rank 0 is the process the user started. Left to Lightning 2.6, on this 2-core machine
(experiments/results/ddp_signals.md):

- its SIGTERM handler forwards the signal to the ranks, then broadcasts a flag from inside the handler:
  a collective the other ranks are not in at that moment (Lightning issue #20806), so a SIGTERM during
  training could hang both processes for good;
- a killed worker ended the fit with gloo's "Connection closed by peer" (or "Read error") as an
  internal error, and Lightning's watcher thread SIGKILLs every process, rank 0 included, within 5 s
  of a rank exiting with an error, whatever rank 0 was doing (``_ChildProcessObserver``);
- a rank left running while rank 0 was still closing its run printed that gloo error too.

Here rank 0 owns the ranks instead:

- :class:`~forecast.models.neural.rank_watch.RankWatch`, a callback of every distributed training,
  takes the launched ranks over from Lightning's watcher and, for the training, puts back the
  process's own interrupt handlers in place of Lightning's.
- :func:`handle_interrupts` (the CLI's): in rank 0 Ctrl-C and SIGTERM first stop the other ranks
  (:func:`stop_workers`), then interrupt as a KeyboardInterrupt (exit 130, "interrupted"); in the other
  ranks Ctrl-C is ignored (a terminal sends it to every process of the job; rank 0 does the stopping)
  and SIGTERM ends the rank at once, which rank 0 then reports.
- :func:`reporting_dead_workers` around a training: in rank 0, a training that fails because a rank
  died becomes :class:`WorkerDied` ("training process 1 (pid N) died (killed by signal 9)"); in another
  rank, a collective that fails because a peer went away ends the rank quietly (rank 0 reports).
- :func:`stop_workers` also runs when rank 0 exits, however it exits; a rank 0 killed outright (SIGKILL)
  takes its ranks with it through :func:`~forecast.models.neural.devices.die_with_parent`.

Stopping is SIGKILL, as Lightning itself does on Ctrl-C: a rank blocked in a collective ignores SIGTERM,
and the ranks hold nothing to save (rank 0 writes every checkpoint, the MLflow run and the outputs, so
``fit --resume`` continues from rank 0's last checkpoint).
"""

from __future__ import annotations

import atexit
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from forecast.core.errors import ForecastError
from forecast.models.neural.devices import is_rank_zero

REAP_SECONDS = 10.0  # how long rank 0 waits for a killed rank to be gone before it goes on
DEATH_SECONDS = 3.0  # after a failed training, how long a rank's death may take to show (it is already dead)

_workers: list[subprocess.Popen] = []  # the ranks this process launched (rank 0 of a distributed fit)


class WorkerDied(ForecastError):
    """Another process of a distributed training died, so the training cannot go on."""

    exit_code = 1


def workers() -> list[subprocess.Popen]:
    """The other ranks this process launched and took over (empty outside rank 0 of a distributed fit)."""
    return list(_workers)


def adopt(procs: list[subprocess.Popen]) -> None:
    """Take ``procs`` (Lightning's launcher list of the ranks it started) over from Lightning.

    The list is emptied in place: Lightning's watcher thread holds that same list, finds no process left to
    watch and ends, so it no longer SIGKILLs rank 0 when a rank dies; this module reports it instead. And
    Lightning's own ``launcher.kill`` (on Ctrl-C) then has nothing to kill: :func:`stop_workers` does it."""
    if not procs:
        return
    if not _workers:
        atexit.register(stop_workers)
    _workers.extend(procs)
    procs.clear()


def stop_workers() -> None:
    """SIGKILL the ranks this process launched and reap them (waiting at most REAP_SECONDS)."""
    for proc in _workers:
        if proc.poll() is None:
            try:
                proc.kill()
            except OSError:  # gone meanwhile
                pass
    deadline = time.monotonic() + REAP_SECONDS
    while any(proc.poll() is None for proc in _workers) and time.monotonic() < deadline:
        time.sleep(0.05)


def dead_worker(wait: float = 0.0) -> tuple[int, subprocess.Popen] | None:
    """(rank, process) of the first launched rank that ended with an error, waiting up to ``wait`` seconds
    for one to show; None when every rank is running (or ended well)."""
    deadline = time.monotonic() + wait
    while True:
        for rank, proc in enumerate(_workers, start=1):
            if proc.poll() not in (None, 0):
                return rank, proc
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def how_it_ended(returncode: int) -> str:
    """A process's end in words: ``killed by signal 9 (SIGKILL)`` or ``exit code 1``."""
    if returncode < 0:
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        return f"killed by signal {-returncode}{name}"
    return f"exit code {returncode}"


def is_collective_failure(err: BaseException) -> bool:
    """Whether ``err`` is a distributed collective failing because a peer process went away."""
    import torch.distributed as dist

    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        needle in text for needle in ("gloo", "NCCL", "Connection closed by peer", "Connection reset by peer"))


@contextmanager
def reporting_dead_workers(resumable: bool) -> Iterator[None]:
    """A training (or a barrier) of a distributed fit that fails because a rank died: in rank 0, a
    WorkerDied naming the rank and how it ended (the other ranks stopped first); in another rank, a
    quiet exit 1 when a collective failed (rank 0 is gone or reports). Anything else passes unchanged."""
    try:
        yield
    except Exception as err:
        if not is_rank_zero():
            if is_collective_failure(err):
                raise SystemExit(1) from None
            raise
        dead = dead_worker(wait=DEATH_SECONDS if _workers else 0.0)
        if dead is None:
            raise
        rank, proc = dead
        stop_workers()
        then = ("its checkpoints are kept: rerun the same command with --resume to continue from the last "
                "finished epoch" if resumable else "rerun the command")
        raise WorkerDied(f"training process {rank} (pid {proc.pid}) died ({how_it_ended(proc.returncode)}); "
                         f"the distributed training stopped; {then}") from None


def _interrupt(signum: int, frame) -> None:
    """Rank 0's Ctrl-C and SIGTERM: stop the other ranks first, then interrupt like Ctrl-C."""
    stop_workers()
    raise KeyboardInterrupt(f"signal {signum}")


def handle_interrupts() -> None:
    """Install the process's interrupt handlers: rank 0 (or a single process) turns Ctrl-C and SIGTERM
    into a KeyboardInterrupt after stopping the ranks it launched; another rank ignores Ctrl-C and dies
    of SIGTERM at once (rank 0 does the stopping and the reporting)."""
    if is_rank_zero():
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
