"""`python -m forecast VERB`: argument parsing into one RunConfig, exit codes, user-facing errors.

Exit codes: 0 success, 2 bad input or option (a message, never a traceback),
1 an unexpected internal error (a one-line summary; --debug shows the traceback), or a
  process of a distributed training died (named: which one, how it ended),
130 interrupted (Ctrl-C or SIGTERM; the MLflow run is marked KILLED).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

from forecast.api import package_version
from forecast.core.config import RANGES, RunConfig, choices, ranges_text
from forecast.core.errors import ConfigError, ForecastError
from forecast.models.registry import MODELS, NEURAL, check_models

log = logging.getLogger("forecast")

DESCRIPTION = "Forecast product demand from sales history and product descriptions."

EPILOG = """Data contract: sales (item_id, date, units[, price, numeric covariates]) and
products (item_id, description[, attributes, launch_date, end_date]), CSV or Parquet.
Without --sales/--products the embedded sample (300 products of the UCI Online
Retail data) is used. See README.md for details."""


CONFIG_EPILOG = EPILOG + "\n\nValid values of the numeric config keys (--config YAML, or the options setting them):\n" + \
    "\n".join(textwrap.fill(line, 100, subsequent_indent="      ") for line in ranges_text().splitlines())


def _within(key: str) -> str:
    """An option's valid values, as declared in RANGES (forecast.core.config)."""
    return str(RANGES[key])


class Parser(argparse.ArgumentParser):
    """argparse whose refusals are ConfigErrors: one ``error:`` line and exit 2, like a bad config value."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _data_options(parser: argparse.ArgumentParser) -> None:
    """The tables and how to read them, --config and --debug: what every verb but ui needs."""
    data = parser.add_argument_group("data")
    data.add_argument("--sales", help="sales table: item_id, date, units[, price, covariates] (CSV or Parquet)")
    data.add_argument("--products", help="products table: item_id, description[, attributes, launch_date, end_date]")
    data.add_argument("--freq", help="pandas frequency alias (e.g. W-MON); inferred when omitted")
    data.add_argument("--date-format", help="format of non-ISO dates in every input file, e.g. %%d/%%m/%%y "
                      "(ambiguous dates are refused, not guessed)")
    data.add_argument("--covariates", help="comma-separated sales columns to use as covariates "
                      "(promo, discount, holiday, event... are recognised without it)")
    data.add_argument("--gaps", choices=choices("data.gaps"), help="missing periods: zero sales (default) or refuse")
    data.add_argument("--negative-units", choices=choices("data.negative_units"),
                      help="negative units (returns): refuse (default) or count as zero")
    data.add_argument("--series-end", choices=choices("data.series_end"),
                      help="where a series without end_date ends: the table's end (default) or its last sale")
    data.add_argument("--signals", help="exogenous signals: date + one numeric column per signal name (CSV or Parquet)")
    run = parser.add_argument_group("run")
    run.add_argument("--config", help="YAML config (e.g. the best config a sweep wrote); options override it")
    run.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")


def _training_options(parser: argparse.ArgumentParser) -> None:
    """The backtest, the seed and the MLflow run: for the verbs that fit (fit, tune)."""
    task = parser.add_argument_group("task")
    task.add_argument("--horizon", type=int, help=f"periods to forecast (default 12; {_within('evaluation.horizon')})")
    task.add_argument("--folds", type=int, help=f"rolling-origin backtest folds (default 3; {_within('evaluation.folds')})")
    task.add_argument("--step", type=int, help=f"periods between backtest origins (default 4; {_within('evaluation.step')})")
    task.add_argument("--seed", type=int, help=f"random seed (default 0; {_within('seed')})")
    task.add_argument("--interval", type=_levels, help="coverage of the forecast range, or several comma-separated: "
                      "0.8 (the default) exports units_p10 and units_p90; 0.8,0.9 also units_p5 and units_p95 "
                      f"({_within('evaluation.interval')})")
    run = parser.add_argument_group("tracking")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite under ./mlruns)")
    run.add_argument("--experiment", help="MLflow experiment name (default 'forecast')")
    run.add_argument("--run-name", help="MLflow run name")
    run.add_argument("--no-progress", action="store_true",
                     help="one log line per step instead of progress bars (the default when stderr is not a terminal)")


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--models", help=f"comma-separated models to fit and compare, from: {', '.join(MODELS)}")
    group.add_argument("--text-mode", choices=choices("neural.text_mode"), help="text encoder fine-tuning")
    group.add_argument("--text-encoder", help="local HuggingFace model directory (default: packaged MiniLM)")
    group.add_argument("--max-epochs", type=int, help="neural training epochs (default 8; all of them "
                       "are trained unless train.val_periods in --config holds periods out for early stopping; "
                       f"{_within('train.max_epochs')})")
    devices = parser.add_argument_group("scaling out (devices: Lightning's Trainer; see docs/scaling.md)")
    devices.add_argument("--accelerator", choices=choices("train.accelerator"), help="default auto (a GPU if there is one)")
    devices.add_argument("--devices", type=_devices, help="how many devices (e.g. 2; -1 or auto: all) or which (0,1)")
    devices.add_argument("--strategy", choices=choices("train.strategy"), help="ddp: one process per device")
    devices.add_argument("--precision", choices=choices("train.precision"), help="default 32-true")
    devices.add_argument("--engine", choices=choices("baselines.engine"),
                         help="where per-series baselines run: local processes (default) or a Dask cluster")
    devices.add_argument("--scheduler", help="the Dask scheduler's address for --engine dask, e.g. tcp://HOST:8786")


def _excel_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--excel", action="store_true", default=None,
                        help="write the export as UTF-8 with a byte order mark, so Excel shows £ and accents right")


def _devices(text: str) -> int | list[int] | str:
    """--devices: a count (2, -1), the word auto, or a comma-separated list of device indices (0,1)."""
    try:
        if text == "auto":
            return text
        return [int(d) for d in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count, auto or a list like 0,1") from None


def _levels(text: str) -> float | list[float]:
    """--interval: one level (0.8) or a comma-separated list of them (0.8,0.9)."""
    try:
        return [float(v) for v in text.split(",")] if "," in text else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a level such as 0.8, or a list like 0.8,0.9") from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m forecast", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"forecast {package_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    fit = verbs.add_parser("fit", help="backtest all models, refit the best, export the forecast, log to MLflow",
                           epilog=CONFIG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_options(fit)
    _training_options(fit)
    _model_options(fit)
    fit.add_argument("--model", help="model whose forecast is exported (default: best on the backtest per group)")
    fit.add_argument("--export", help="forecast CSV to write (default forecast.csv)")
    _excel_option(fit)
    fit.add_argument("--checkpoint-dir", help="where neural models are saved (default checkpoints/)")
    fit.add_argument("--register", help="register the refit neural model in the MLflow model registry under this name")
    fit.add_argument("--resume", action="store_true",
                     help="continue a killed fit of the same config and data from its last checkpoints")

    predict = verbs.add_parser("predict", help="forecast with a saved neural model, without retraining",
                               epilog=CONFIG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_options(predict)
    saved = predict.add_mutually_exclusive_group(required=True)
    saved.add_argument("--model-dir", help="folder written by fit (printed at its end)")
    saved.add_argument("--model", dest="model_uri", help="MLflow model logged by fit: runs:/<run id>/model or "
                       "models:/<registered name>/<version> (from $MLFLOW_TRACKING_URI or ./mlruns)")
    predict.add_argument("--horizon", type=int, help="periods to forecast, at most the model's (default: the model's; "
                         f"{_within('evaluation.horizon')})")
    predict.add_argument("--export", help="forecast CSV to write (default forecast.csv)")
    _excel_option(predict)

    tune = verbs.add_parser("tune", help="Optuna sweep of the fusion model's hyperparameters, then refit the best",
                            epilog=CONFIG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_options(tune)
    _training_options(tune)
    _model_options(tune)
    tune.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials the study should hold: rerunning resumes "
                           "a killed sweep, a larger number extends it (default 20)")
    tune.add_argument("--search-space", help="YAML search space (default: the packaged one)")
    tune.add_argument("--study-name", default="forecast-fusion", help="Optuna study; rerun the same to resume")
    tune.add_argument("--storage", help="Optuna RDB storage (default sqlite:///mlruns/optuna.db)")
    tune.add_argument("--best-config", default="best_config.yaml", help="YAML written with the best configuration")
    tune.add_argument("--export", help=f"forecast CSV of the refit best model (default {TUNE_EXPORT}: "
                      "a fit's forecast.csv is never overwritten unasked)")
    _excel_option(tune)

    trends = verbs.add_parser("trends", help="trend report by attribute and description word from a forecast CSV")
    _data_options(trends)
    trends.add_argument("--forecast", default="forecast.csv", help="the CSV written by fit (default forecast.csv)")
    trends.add_argument("--output", default="trends.csv", help="report CSV to write (default trends.csv)")
    trends.add_argument("--min-products", type=int, default=3, help="ignore words/values with fewer products")
    trends.add_argument("--model-dir", help="a saved fusion or text model (printed by fit): adds each word's "
                        "model_effect, how much its forecast moves when the word is removed")
    trends.add_argument("--item", help="with --model-dir: print which words of this product's description "
                        "raise or lower its forecast, instead of the report")
    trends.add_argument("--tracking-uri", help="MLflow store to log the report and its chart to (default: none, "
                    "or $MLFLOW_TRACKING_URI)")

    ui = verbs.add_parser("ui", help="start the MLflow UI on the tracking store (127.0.0.1)")
    ui.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite under ./mlruns)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--experiment", default="forecast", help="experiment whose runs table it prints (default forecast)")
    ui.add_argument("--open", action="store_true", help="also open that address in the default browser")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then --config, then explicit options: later wins."""
    cfg = RunConfig.from_yaml(args.config) if getattr(args, "config", None) else RunConfig()
    overrides: dict[str, Any] = {}
    mapping = {
        "sales": "data.sales", "products": "data.products", "freq": "data.freq", "gaps": "data.gaps",
        "negative_units": "data.negative_units", "series_end": "data.series_end", "signals": "data.signals",
        "date_format": "data.date_format",
        "horizon": "evaluation.horizon", "folds": "evaluation.folds",
        "step": "evaluation.step", "seed": "seed", "tracking_uri": "tracking.uri",
        "interval": "evaluation.interval", "register": "tracking.register",
        "experiment": "tracking.experiment", "run_name": "tracking.run_name", "model": "output.model",
        "export": "output.export", "excel": "output.excel", "checkpoint_dir": "output.checkpoint_dir",
        "text_mode": "neural.text_mode",
        "text_encoder": "neural.text_encoder", "max_epochs": "train.max_epochs",
        "accelerator": "train.accelerator", "devices": "train.devices", "strategy": "train.strategy",
        "precision": "train.precision", "engine": "baselines.engine", "scheduler": "baselines.scheduler",
    }
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "covariates", None):
        overrides["data.covariates"] = [c.strip() for c in args.covariates.split(",") if c.strip()]
    if getattr(args, "no_progress", False) or not sys.stderr.isatty():
        overrides["train.progress"] = False
    if getattr(args, "models", None):
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        overrides["baselines.models"] = [m for m in names if m not in NEURAL]
        overrides["neural.models"] = [m for m in names if m in NEURAL]
    return check_models(cfg.updated(overrides).validate())


TRAINING_VERBS = ("fit", "tune", "predict")
TUNE_EXPORT = "forecast_tuned.csv"  # tune's own export, beside (not over) the fit's forecast.csv


def tune_export(cfg: RunConfig, given: str | None) -> RunConfig:
    """``tune`` writes TUNE_EXPORT unless --export or the config names another file."""
    from forecast.core.config import OutputConfig

    if given is None and cfg.output.export == OutputConfig.export:
        return cfg.updated({"output.export": TUNE_EXPORT})
    return cfg  # the verbs that import Lightning


def _setup_logging(debug: bool, verb: str) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "mlflow", "urllib3", "httpx", "filelock", "matplotlib", "transformers", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if verb in TRAINING_VERBS:
        _one_handler_for_lightning()
    if not debug:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _one_handler_for_lightning() -> None:
    """Lightning gives its ``lightning`` logger a console handler of its own when it is imported and
    lets it propagate to ours too: every line came out twice. Import it now, drop its handler and
    keep only its warnings (its INFO lines are device banners, tips and "max_epochs reached")."""
    import lightning.pytorch  # noqa: F401  -- adds the handler removed here

    root = logging.getLogger("lightning")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _sigterm_as_interrupt() -> None:
    """SIGTERM behaves like Ctrl-C, so runs are closed as KILLED and checkpoints kept; in a distributed fit
    either one first stops the other training processes, which leave interrupts to rank 0
    (forecast.models.neural.ranks)."""
    from forecast.models.neural.ranks import handle_interrupts

    handle_interrupts()


def run(args: argparse.Namespace) -> int:
    if args.verb == "ui":
        from forecast.tracking.runs import launch_ui

        return launch_ui(args.tracking_uri, args.port, args.experiment, args.open)
    cfg = config_from_args(args)
    from forecast.outputs.paths import check_verb_paths

    check_verb_paths(args.verb, args, cfg)  # every output against every input and other output, before work
    if not cfg.train.progress:  # also the text encoder's "Loading weights" and MLflow's download bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if args.verb == "fit":
        from forecast.pipeline import fit

        fit(cfg, resume=args.resume)
    elif args.verb == "predict":
        from forecast.pipeline import predict

        if args.model_dir:
            predict(cfg, args.model_dir, args.horizon)
        else:
            from tempfile import TemporaryDirectory

            from forecast.tracking import serving
            from forecast.tracking.runs import download_model

            with TemporaryDirectory() as tmp:
                predict(cfg, download_model(args.model_uri, Path(tmp), serving.__name__), args.horizon)
    elif args.verb == "tune":
        from forecast.tuning import tune

        tune(tune_export(cfg, args.export), trials=args.trials, study_name=args.study_name, storage=args.storage,
             search_space=args.search_space, best_config=args.best_config)
    elif args.verb == "trends":
        from forecast.pipeline import trends

        trends(cfg, Path(args.forecast), Path(args.output), args.min_products, args.model_dir, args.item)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if args.verb is None:
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    from forecast.models.neural.devices import die_with_parent

    die_with_parent()  # a distributed training's other ranks stop when rank 0 does
    _setup_logging(debug, args.verb)
    _sigterm_as_interrupt()
    try:
        return run(args)
    except ForecastError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not a user error: say so briefly
        from forecast.core.files import disk_problem

        if (problem := disk_problem(err)) and not debug:  # a disk fault somewhere not wrapped by name
            where = getattr(err, "filename", None)
            print(f"error: cannot write {where or 'a file'}: {problem}", file=sys.stderr)
            return 2
        if debug:
            raise
        print(f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
