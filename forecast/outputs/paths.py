"""Every file a verb writes, checked against every file it reads and every other file it writes,
before any work starts.

One place for every verb (``fit``, ``predict``, ``tune``, ``trends``): an output may not be an
input (the tables, ``--config``, ``--search-space``, the forecast ``trends`` reads, a file of the
saved model or of a local text encoder, the MLflow or Optuna sqlite database), also through a link, and two outputs may not
be one file (``tune --best-config x --export x``; ``trends --output r.png``, whose chart is
``r.png`` too). Each output must also be writable (:func:`forecast.core.files.check_writable`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from forecast.core.config import RunConfig
from forecast.core.errors import ConfigError
from forecast.core.files import check_name_length, check_writable

MODEL_FILES_SHOWN = 200  # a saved model folder holds a handful of files; never walk a huge folder


def verb_outputs(verb: str, args: argparse.Namespace, cfg: RunConfig) -> dict[str, str]:
    """The files ``verb`` will write, by the option that names them."""
    outputs: dict[str, str | None] = {}
    if verb in ("fit", "predict", "tune"):
        outputs["--export"] = cfg.output.export
    if verb == "tune":
        outputs["--best-config"] = cfg.tune.best_config
    if verb == "trends" and not getattr(args, "item", None):
        report = Path(cfg.trends.output)
        outputs["--output"] = str(report)
        outputs[f"the chart of --output ({report.with_suffix('.png').name})"] = str(report.with_suffix(".png"))
    return {name: str(path) for name, path in outputs.items() if path}


def verb_inputs(verb: str, args: argparse.Namespace, cfg: RunConfig) -> dict[str, str]:
    """The files ``verb`` reads (or keeps its state in), by the option that names them."""
    inputs: dict[str, str | None] = {"--sales": cfg.data.sales, "--products": cfg.data.products,
                                     "--signals": cfg.data.signals, "--config": getattr(args, "config", None)}
    if verb == "tune":
        inputs["--search-space"] = cfg.tune.search_space
        inputs["--storage"] = sqlite_file(cfg.tune.storage)
    if verb == "trends":
        inputs["--forecast"] = cfg.trends.forecast
    if verb in ("fit", "tune") or (verb == "trends" and (cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI"))):
        inputs["the MLflow store"] = sqlite_file(cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
                                                 or "sqlite:///mlruns/mlflow.db")
    for option, folder in (("--model-dir", getattr(args, "model_dir", None)),
                           ("neural.text_encoder", cfg.neural.text_encoder)):
        if folder and Path(folder).is_dir():
            files = sorted(p for p in Path(folder).rglob("*") if p.is_file())[:MODEL_FILES_SHOWN]
            inputs |= {f"{option}'s {p.relative_to(folder)}": str(p) for p in files}
    return {name: str(path) for name, path in inputs.items() if path}


def sqlite_file(uri: str) -> str | None:
    """The database file of a ``sqlite:///`` URI (None for any other store)."""
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None


def check_outputs(outputs: dict[str, str], inputs: dict[str, str]) -> dict[str, Path]:
    """Refuse, naming both options, an output that is one of the inputs or another output; then
    check each is writable. Returns the paths written to (a symlink's target)."""
    written: dict[str, Path] = {}
    for path in outputs.values():
        check_name_length(Path(path))  # first: a name too long makes every other look at the file fail
    for name, path in outputs.items():
        target = Path(os.path.realpath(path))
        for source, given in inputs.items():
            if _same_file(target, Path(given)):
                raise ConfigError(f"{name} {path} is the input file {given} ({source}), which this run reads; "
                                  f"write the output to another file")
        for other, other_target in written.items():
            if target == other_target:
                raise ConfigError(f"{other} {outputs[other]} and {name} {path} are the same file; "
                                  f"give them different names")
        written[name] = target
    return {name: check_writable(path, inputs.values()) for name, path in outputs.items()}


def _same_file(output: Path, given: Path) -> bool:
    if output.exists() and given.exists():
        return os.path.samefile(output, given)
    return output == Path(os.path.realpath(given))


def check_verb_paths(verb: str, args: argparse.Namespace, cfg: RunConfig) -> dict[str, Path]:
    """:func:`check_outputs` for a verb's command line: called by the CLI before any work."""
    return check_outputs(verb_outputs(verb, args, cfg), verb_inputs(verb, args, cfg))
