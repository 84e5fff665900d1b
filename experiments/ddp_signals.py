"""Signals to a 2-process DDP fit on CPU: does it stop promptly, say why, and leave no process behind?

Each try starts ``python -m forecast fit --devices 2 --strategy ddp`` on a small synthetic panel in a
session of its own (so every process it starts can be found by session id), waits until both ranks
train, then SIGTERMs the parent (rank 0), SIGKILLs the worker (rank 1) or sends SIGINT to both (what
a terminal's Ctrl-C does) at a random moment,
and records the exit code, the seconds to exit, the CLI's last line, whether a traceback or a gloo
message was printed, and the processes of the session still alive 5 s after rank 0 exited.

    python -m experiments.ddp_signals --tries 6 --action term --out /tmp/ddp_runs
    python -m experiments.ddp_signals --tries 3 --action kill-worker --out /tmp/ddp_runs
    python -m experiments.ddp_signals --tries 3 --action int-group --out /tmp/ddp_runs

Results: experiments/results/ddp_signals.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            found.append(int(entry.name))
    return found


def ranks(parent: int, sid: int) -> list[int]:
    """The worker ranks: the parent's children in its session that run ``-m forecast``."""
    out = []
    for pid in session_pids(sid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and b"-m\0forecast" in cmd:
            out.append(pid)
    return out


def dump_stacks(pids: list[int], out: Path) -> None:
    with open(out, "w") as f:
        for pid in pids:
            f.write(f"=== pid {pid}\n")
            f.flush()
            try:
                subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 25"], stdout=f,
                               stderr=subprocess.STDOUT, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as err:
                f.write(f"no stack: {err}\n")


def wait_for(log: Path, needle: str, count: int, timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and log.read_text(errors="replace").count(needle) >= count:
            return True
        time.sleep(0.2)
    return False


def one_try(n: int, args: argparse.Namespace, sales: str, products: str) -> dict:
    where = Path(args.out) / f"{args.action}-{n}"
    where.mkdir(parents=True, exist_ok=True)
    log = where / "stderr.log"
    env = {**os.environ, "PYTHONPATH": args.code}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "forecast", "fit", "--sales", sales, "--products", products,
               "--models", "fusion", "--horizon", "6", "--folds", "1", "--max-epochs", str(args.epochs),
               "--no-progress", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    with open(log, "w") as err:
        proc = subprocess.Popen(command, cwd=where, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    sid = proc.pid
    training = wait_for(log, "fusion: epoch 1/", 2, args.start_timeout, proc)  # both ranks logged an epoch
    delay = random.uniform(args.min_delay, max(args.min_delay, args.spread))
    time.sleep(delay)
    workers = ranks(proc.pid, sid)
    before = log.read_text(errors="replace")
    phase = {0: "in training 1", 1: "end of training 1"}.get(before.count("trained "), "after training 1")
    sent_at = time.time()
    if args.action == "term":
        proc.send_signal(signal.SIGTERM)
    elif args.action == "int-group":
        os.killpg(proc.pid, signal.SIGINT)
    elif workers:
        os.kill(workers[0], signal.SIGKILL)
    try:
        rc = proc.wait(timeout=args.timeout)
        seconds = round(time.time() - sent_at, 1)
    except subprocess.TimeoutExpired:
        rc, seconds = "hung", f">{args.timeout}"
    time.sleep(5)
    left = session_pids(sid)
    if left:  # what the processes left behind are doing (C stacks; gdb where installed)
        dump_stacks(left, where / "stacks.txt")
    for pid in left:  # clean up what the try left
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if rc == "hung":
        proc.wait()
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return {"try": n, "action": args.action, "training": training, "phase": phase,
            "at": time.strftime("%H:%M:%S", time.localtime(sent_at)), "delay_s": round(delay, 1),
            "workers": len(workers), "rc": rc, "exit_s": seconds, "last": lines[-1][:110] if lines else "",
            "traceback": "Traceback" in text, "gloo": "gloo" in text.lower(), "left": len(left)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=6)
    parser.add_argument("--action", choices=["term", "kill-worker", "int-group"], default="term",
                        help="SIGTERM to rank 0, SIGKILL to rank 1, or SIGINT to every process (a terminal's Ctrl-C)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--spread", type=float, default=8.0,
                        help="signal up to this many seconds after both ranks logged epoch 1")
    parser.add_argument("--min-delay", type=float, default=0.0, help="and at least this many (e.g. to land after "
                                                                      "the first training)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--start-timeout", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/ddp_signals")
    parser.add_argument("--code", default=str(ROOT), help="the forecast package's root to run (e.g. an older commit's "
                                                          "`git archive`)")
    args = parser.parse_args()
    random.seed(args.seed)
    from forecast.data import synthetic

    sales, products = synthetic.write(Path(args.out) / "data", n_items=60, n_periods=104, n_new=8, seed=1,
                                      launch_window=0.95)
    print("| try | action | signal at | phase | after epoch 1 (s) | rc | exit (s) | traceback | gloo | left | "
          "last line |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in range(1, args.tries + 1):
        r = one_try(n, args, sales, products)
        print(f"| {r['try']} | {r['action']} | {r['at']} | {r['phase']} | {r['delay_s']} | {r['rc']} | "
              f"{r['exit_s']} | {r['traceback']} | {r['gloo']} | {r['left']} | `{r['last']}` |", flush=True)


if __name__ == "__main__":
    main()
