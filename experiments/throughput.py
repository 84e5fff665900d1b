"""Training throughput of the default fusion fit: where an epoch's time goes, and before/after a change.

    python experiments/throughput.py --baseline e6400ed --rounds 3      # writes experiments/results/throughput.md

Each measurement is one child process running a default ``NeuralEstimator("fusion").fit`` on
online_retail (8 epochs x 48,000 windows, frozen text encoder, ``num_threads: 1``) and a
``predict``, with the package imported from a given source tree: this worktree ("after") or
the ``--baseline`` commit's ``forecast/`` unpacked by ``git archive`` ("before"). The two
run in alternation, ``--rounds`` times each, so both see the same (shared, noisy) machine;
the speed-ups are the per-round ratios, and the forecasts of the two are compared exactly.

The phases are timed by wrapping the package's and Lightning's own functions in the child
(exclusive wall time: a phase's time less the phases nested inside it), so the same
instrumentation measures both source trees:

- window sampling: the per-epoch draw (``EpochShuffle.__iter__``) and the DataLoader's
  per-batch fetch, less the gather;
- feature gathering: ``PanelFeatures.gather`` (wherever it runs: in the DataLoader, or after
  the batch reached the device);
- host-to-device copy: Lightning's batch transfer (``_apply_batch_transfer_handler``), less a
  gather run inside it;
- forward: ``ForecastNetwork.forward`` in training; loss and logging: the rest of
  ``training_step``; backward: ``LightningModule.backward``;
- optimiser: ``optimizer_step`` less the closure's forward and backward (zero_grad, gradient
  clipping, AdamW, the one-cycle schedule's step);
- Lightning loop and other: the epoch's wall time less all of the above.

The fit phases: the text embeddings (``embed_texts``, memoised per process: the child fits
once to warm it, as a fit after the first one would find it), the rest of the data module's
setup (windows, scaler, feature arrays, kNN curves), training (``Trainer.fit``) and prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
DATA = ROOT.parent / "shared" / "data"
STEP_PHASES = ("window sampling", "feature gathering", "host-to-device copy", "forward", "loss and logging",
               "backward", "optimiser", "Lightning loop and other")
FIT_PHASES = ("text embeddings", "data module setup (other)", "training", "prediction")


# --- the child: one timed fit ----------------------------------------------------------------------
class PhaseClock:
    """Exclusive time per phase: a phase's time less that of the timed phases nested in it, on two
    clocks: wall (``perf_counter``) and this process's CPU time (``process_time``), which the other
    processes of a shared machine do not inflate."""

    CLOCKS = (time.perf_counter, time.process_time)

    def __init__(self) -> None:
        self.seconds: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(2))  # [wall, cpu]
        self.inclusive: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(2))  # with the nested phases
        self._stack: list[list] = []  # [start [wall, cpu], nested [wall, cpu]]
        self.enabled = True

    @staticmethod
    def now() -> np.ndarray:
        return np.array([clock() for clock in PhaseClock.CLOCKS])

    @contextmanager
    def phase(self, name: str):
        if not self.enabled:
            yield
            return
        frame = [self.now(), np.zeros(2)]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            total = self.now() - frame[0]
            self.seconds[name] += total - frame[1]
            self.inclusive[name] += total
            if self._stack:
                self._stack[-1][1] += total

    def wrap(self, owner, attribute: str, name: str, when=None) -> None:
        """Time ``owner.attribute`` (a function on a class or module) as phase ``name``;
        ``when(*args)`` false: not timed (e.g. the network's forward at prediction)."""
        original = getattr(owner, attribute)
        clock = self

        def timed(*args, **kwargs):
            if when is not None and not when(*args):
                return original(*args, **kwargs)
            with clock.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def instrument(clock: PhaseClock) -> None:
    """Wrap the functions each phase runs in (see the module docstring)."""
    import lightning.pytorch as pl
    import torch.utils.data.dataloader as torch_loader

    import forecast.models.encoders.text as text
    from forecast.models.neural import features
    from forecast.models.neural.network import ForecastNetwork
    from forecast.models.neural.system import ForecastSystem

    clock.wrap(features.EpochShuffle, "__iter__", "window sampling")
    clock.wrap(torch_loader._BaseDataLoaderIter, "__next__", "window sampling")
    clock.wrap(features.PanelFeatures, "gather", "feature gathering")
    clock.wrap(pl.LightningModule, "_apply_batch_transfer_handler", "host-to-device copy")
    clock.wrap(ForecastNetwork, "forward", "forward", when=lambda module, *_: module.training)
    clock.wrap(ForecastSystem, "training_step", "loss and logging")
    clock.wrap(pl.LightningModule, "backward", "backward")
    clock.wrap(pl.LightningModule, "optimizer_step", "optimiser")
    clock.wrap(text, "embed_texts", "text embeddings")
    clock.wrap(features.PanelDataModule, "setup", "data module setup (other)")
    clock.wrap(pl.Trainer, "fit", "training")


def epoch_timer():
    """A Lightning callback that records each training epoch's [wall, cpu] seconds and its windows."""
    import lightning.pytorch as pl

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.epochs: list[np.ndarray] = []
            self.windows = 0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start = PhaseClock.now()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.windows += int(batch["y"].shape[0])

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.epochs.append(PhaseClock.now() - self._start)

    return EpochTimer()


def load_online_retail():
    from forecast.core.config import DataConfig
    from forecast.data.contract import load_tables
    from forecast.data.panel import build_panel

    base = DATA / "online_retail"
    return build_panel(load_tables(base / "sales.csv", base / "products.csv", DataConfig(negative_units="zero")))


def child(out: Path, seed: int) -> None:
    """The descriptions embedded once (what the first fit of a process pays; memoised after), then the
    timed fit and prediction. Every time is a [wall, cpu] pair of seconds."""
    import torch

    from forecast.core.config import RunConfig
    from forecast.models.neural.estimator import NeuralEstimator
    from forecast.models.neural.features import text_inputs

    panel = load_online_retail()
    cfg = RunConfig(seed=seed)
    cfg.train.progress = False
    clock = PhaseClock()
    instrument(clock)
    clock.enabled = False
    tic = PhaseClock.now()
    text_inputs(panel.descriptions, cfg)
    first = PhaseClock.now() - tic
    clock.enabled = True
    timer = epoch_timer()
    model = NeuralEstimator("fusion", cfg, callbacks=[timer])
    tic = PhaseClock.now()
    model.fit(panel, cfg.evaluation.horizon)
    fit = PhaseClock.now() - tic
    with clock.phase("prediction"):
        prediction = model.predict(panel, cfg.evaluation.horizon)
    epochs = np.array(timer.epochs)
    steps = {p: clock.seconds[p] for p in STEP_PHASES[:-1]}
    steps["Lightning loop and other"] = epochs.sum(0) - sum(steps.values())
    phases = {"text embeddings": clock.seconds["text embeddings"],
              "data module setup (other)": clock.seconds["data module setup (other)"],
              "training": clock.inclusive["training"], "prediction": clock.seconds["prediction"]}
    np.save(out.with_suffix(".npy"), np.stack([prediction.units, prediction.trend, prediction.price]))
    listed = lambda a: [round(float(x), 4) for x in a]  # noqa: E731
    out.write_text(json.dumps({
        "first_embedding": listed(first), "fit": listed(fit), "epochs": [listed(e) for e in epochs],
        "windows": timer.windows, "steps": {k: listed(v) for k, v in steps.items()},
        "phases": {k: listed(v) for k, v in phases.items()},
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }))


# --- the parent: alternate the source trees, compare ------------------------------------------------
def unpack_baseline(commit: str, folder: Path) -> Path:
    """The baseline commit's ``forecast`` package under ``folder`` (git archive)."""
    data = subprocess.run(["git", "archive", "--format=tar", commit, "forecast"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run_child(code: Path, out: Path, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, __file__, "--child", str(out), "--seed", str(seed)], env=env, check=True,
                   cwd=code)
    result = json.loads(out.read_text())
    result["load"] = os.getloadavg()[0]
    return result


def compare(baseline: str, rounds: int, seed: int, write=None) -> dict:
    """Both trees ``rounds`` times; ``write(result)`` after each round (a long run leaves its rounds so far)."""
    runs = {"before": [], "after": []}
    forecasts = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": unpack_baseline(baseline, Path(tmp) / "before"), "after": ROOT}
        for r in range(rounds):
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                out = Path(tmp) / f"{name}-{r}.json"
                runs[name].append(run_child(trees[name], out, seed))
                forecasts.setdefault(name, np.load(out.with_suffix(".npy")))
                print(name, r, f"{windows_per_second(runs[name][-1], CPU):.0f} windows per CPU-second", flush=True)
            if write is not None:
                write(summary(baseline, r + 1, seed, runs, forecasts))
    return summary(baseline, rounds, seed, runs, forecasts)


def summary(baseline: str, rounds: int, seed: int, runs: dict, forecasts: dict) -> dict:
    before, after = forecasts["before"], forecasts["after"]
    return {"baseline": baseline, "rounds": rounds, "seed": seed, "runs": runs,
            "forecasts_identical": bool(np.array_equal(before, after, equal_nan=True)),
            "forecast_max_abs_diff": float(np.nanmax(np.abs(after - before))),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)"}


WALL, CPU = 0, 1  # the two clocks of every [wall, cpu] pair


def windows_per_second(run: dict, clock: int) -> float:
    return run["windows"] / sum(e[clock] for e in run["epochs"])


def per_epoch(run: dict, seconds: list[float], clock: int) -> float:
    return seconds[clock] / len(run["epochs"])


def median(values) -> float:
    return statistics.median(list(values))


def report(result: dict, command: str) -> str:
    """throughput.md: windows per second, the per-round speed-ups, the epoch's phases, the fit's phases."""
    before, after = result["runs"]["before"], result["runs"]["after"]
    pairs = list(zip(before, after))

    def speedups(clock: int) -> list[float]:
        return [windows_per_second(a, clock) / windows_per_second(b, clock) for b, a in pairs]

    def row(code: str, runs: list[dict], clock: int, label: str) -> str:
        ups = "" if code == "before" else (", ".join(f"{x:.2f}x" for x in speedups(clock))
                                           + f" (median {median(speedups(clock)):.2f}x)")
        return (f"| CPU | {label} | {code} | {median(windows_per_second(r, clock) for r in runs):,.0f} | {ups} | "
                f"{median(r['phases']['training'][clock] for r in runs):.1f} | "
                f"{median(r['fit'][clock] for r in runs):.1f} |")

    lines = [
        "# Training throughput of the default fusion fit",
        "",
        f"Command: `{command}` (about {len(pairs) * 2} x 2-4 minutes). Machine: {result['machine']}, torch "
        f"{after[0]['torch']}, CPU only; one torch thread while training (`train.num_threads: 1`). Default fusion on "
        "online_retail (3,571 products, 41 weeks, 128,263 training windows): 8 epochs x 48,000 windows, batch 512, "
        f"frozen text encoder, seed {result['seed']}. *Before* is commit `{result['baseline']}`, *after* this tree; "
        f"each of the {result['rounds']} rounds runs both in fresh processes, alternating which goes first, and the "
        "speed-up is after / before within a round. CPU seconds (`process_time`) are the figure to read: the "
        "machine was shared with other jobs (the 1-minute load average is in the last table), which inflates wall "
        "time several-fold and unevenly.",
        "",
        "| device | clock | code | training windows / s (median) | speed-up per round | training s | fit s |",
        "|---|---|---|---|---|---|---|",
        row("before", before, CPU, "CPU time"), row("after", after, CPU, "CPU time"),
        row("before", before, WALL, "wall"), row("after", after, WALL, "wall"),
        "| GPU | | | not measured: no GPU lent to this session | | | |",
        "",
        "## Where a training epoch's time goes (CPU seconds per epoch, median over rounds)",
        "",
        "| phase | before | share | after | share | after / before |",
        "|---|---|---|---|---|---|",
    ]
    epoch = {code: median(sum(e[CPU] for e in r["epochs"]) / len(r["epochs"]) for r in runs)
             for code, runs in (("before", before), ("after", after))}
    for phase in STEP_PHASES:
        b = median(per_epoch(r, r["steps"][phase], CPU) for r in before)
        a = median(per_epoch(r, r["steps"][phase], CPU) for r in after)
        lines.append(f"| {phase} | {b:.3f} | {b / epoch['before']:.0%} | {a:.3f} | {a / epoch['after']:.0%} | "
                     f"{a / b:.2f} |")
    lines += [f"| **epoch** | **{epoch['before']:.3f}** | | **{epoch['after']:.3f}** | | "
              f"**{epoch['after'] / epoch['before']:.2f}** |", "",
              "## The fit's phases (seconds, median over rounds: CPU / wall)", "",
              "| fit phase | before | after |", "|---|---|---|"]
    for phase in FIT_PHASES:
        cells = [f"{median(r['phases'][phase][CPU] for r in runs):.2f} / "
                 f"{median(r['phases'][phase][WALL] for r in runs):.2f}" for runs in (before, after)]
        lines.append(f"| {phase} | {cells[0]} | {cells[1]} |")
    cells = [f"{median(r['first_embedding'][CPU] for r in runs):.1f} / "
             f"{median(r['first_embedding'][WALL] for r in runs):.1f}"
             for runs in (before, after)]
    lines += [f"| (not in the fit: the first embedding of the descriptions in a process) | {cells[0]} | {cells[1]} |",
              "", "| round | before: load avg after its run | after: load avg after its run |", "|---|---|---|"]
    lines += [f"| {k + 1} | {b['load']:.1f} | {a['load']:.1f} |" for k, (b, a) in enumerate(pairs)]
    same = ("**identical**: every forecast value (units, trend and price, all items) is equal before and after"
            if result["forecasts_identical"] else
            f"not identical: the largest absolute difference is {result['forecast_max_abs_diff']:.3g}")
    lines += ["", f"Forecasts of the fitted models (`predict` on the panel, first round of each): {same}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="e6400ed", help="the commit measured as 'before'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child), args.seed)
    command = f"python experiments/throughput.py --baseline {args.baseline} --rounds {args.rounds}"

    def write(result: dict) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "throughput.json").write_text(json.dumps(result, indent=1))
        (RESULTS / "throughput.md").write_text(report(result, command))

    print(report(compare(args.baseline, args.rounds, args.seed, write), command))


if __name__ == "__main__":
    main()
