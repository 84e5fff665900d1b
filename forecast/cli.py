"""`python -m forecast VERB`: argument parsing into one RunConfig, exit codes, user-facing errors.

Every option that sets a config key is generated from that key's ``option`` metadata
(forecast.core.config): flag, verbs, help, type, choices (the key's ``Literal``), default and
range are declared once, on the key. Only the options that are no config key (which saved model,
--config, --debug, --resume, ui's --port) are written here.

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
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from forecast.api import package_version
from forecast.core.config import RANGES, READING, KeyOption, RunConfig, key_options, ranges_text
from forecast.core.errors import ConfigError, ForecastError
from forecast.models.registry import MODELS, check_models

log = logging.getLogger("forecast")

DESCRIPTION = "Forecast product demand from sales history and product descriptions."

EPILOG = """Data contract: sales (item_id, date, units[, price, numeric covariates]) and
products (item_id, description[, attributes, launch_date, end_date]), CSV or Parquet.
Without --sales/--products the embedded sample (300 products of the UCI Online
Retail data) is used. See README.md for details."""


CONFIG_EPILOG = EPILOG + "\n\nValid values of the numeric config keys (--config YAML, or the options setting them):\n" + \
    "\n".join(textwrap.fill(line, 100, subsequent_indent="      ") for line in ranges_text().splitlines())


class Parser(argparse.ArgumentParser):
    """argparse whose refusals are ConfigErrors: one ``error:`` line and exit 2, like a bad config value."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


# --help groups, in the order shown; each config key's Option names its group (forecast.core.config)
GROUPS = {"data": "data", "run": "run", "task": "task", "models": "models",
          "scaling": "scaling out (devices: Lightning's Trainer; see docs/scaling.md)", "output": "output",
          "tracking": "tracking", "tune": "tune", "trends": "trends"}
VERBS = {  # verb: its one-line help, and whether --help lists the config ranges
    "fit": ("backtest all models, refit the best, export the forecast, log to MLflow", True),
    "predict": ("forecast with a model fit saved (one model or the chosen ensemble), without retraining", True),
    "tune": ("Optuna sweep of the fusion model's hyperparameters, then refit the best", True),
    "trends": ("trend report by attribute and description word from a forecast CSV", False),
    "ui": ("start the MLflow UI on the tracking store (127.0.0.1)", False),
}
HELP_VALUES = {"models": ", ".join(MODELS)}  # what a key's help names in braces: {models}, the model names


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m forecast", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"forecast {package_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (summary, ranges) in VERBS.items():
        sub = verbs.add_parser(verb, help=summary, epilog=CONFIG_EPILOG if ranges else None,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        groups = {name: sub.add_argument_group(title) for name, title in GROUPS.items()}
        for key_option in key_options():
            if verb in key_option.option.verbs:
                _add_config_option(groups[key_option.option.group], verb, key_option)
        _verb_options(verb, sub, groups)
    return parser


def _verb_options(verb: str, parser: argparse.ArgumentParser, groups: dict[str, Any]) -> None:
    """The options that are not config keys: which file or model a verb works on, and how it runs."""
    if verb in READING:
        groups["run"].add_argument("--config", help="YAML config (e.g. the best config a sweep wrote); options override it")
        groups["run"].add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    if verb == "fit":
        groups["run"].add_argument("--resume", action="store_true",
                                   help="continue a killed fit of the same config and data from its last checkpoints")
    if verb == "predict":
        saved = parser.add_mutually_exclusive_group(required=True)
        saved.add_argument("--model-dir", help="folder written by fit (printed at its end)")
        saved.add_argument("--model-uri", help="MLflow model logged by fit: runs:/<run id>/model or "
                           "models:/<registered name>/<version> (from $MLFLOW_TRACKING_URI or ./mlruns)")
        parser.add_argument("--model", action=Renamed, new="--model-uri", help=argparse.SUPPRESS)
    if verb == "trends":
        groups["trends"].add_argument("--model-dir", help="a saved fusion or text model (printed by fit): adds "
                                      "each word's model_effect, how much its forecast moves when the word is removed")
        groups["trends"].add_argument("--item", help="with --model-dir: print which words of this product's "
                                      "description raise or lower its forecast, instead of the report")
    if verb == "ui":
        parser.add_argument("--port", type=int, default=5000, help="port of the UI on 127.0.0.1 (default 5000)")
        parser.add_argument("--open", action="store_true", help="also open that address in the default browser")


class Renamed(argparse.Action):
    """An option spelling this verb no longer takes, because the name means something else elsewhere:
    refused with the name to use instead (predict's --model became --model-uri; --model names a model on fit)."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs="?", **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{parser.prog.split()[-1]} takes {self.new}, not {option_string} ({option_string} names the "
                     f"model to export on fit): e.g. {self.new} {values or 'runs:/<run id>/model'}")


def _add_config_option(group: Any, verb: str, key_option: KeyOption) -> None:
    """The option of one config key: flag, type, choices and help from the key; its default shown once."""
    option, hint = key_option.option, key_option.hint
    default = option.verb_defaults.get(verb, key_option.default)
    shown = [f"default {_shown(default)}"] if _shown(default) is not None else []
    if key_option.key in RANGES:
        shown.append(str(RANGES[key_option.key]))
    text = (option.help.format_map(HELP_VALUES) + (f" ({'; '.join(shown)})" if shown else "")).replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": key_option.key, "default": argparse.SUPPRESS, "help": text}
    if hint is bool:  # a switch: gives the opposite of the default (--excel, --no-progress)
        kwargs |= {"action": "store_const", "const": not key_option.default}
    elif get_origin(hint) is Literal:
        kwargs["choices"] = get_args(hint)
    else:
        kwargs |= {"type": _text_parser(hint), "metavar": option.flag.lstrip("-").upper().replace("-", "_")}
    group.add_argument(option.flag, **kwargs)


def _shown(default: Any) -> str | None:
    """A default as --help shows it; None for one not worth showing (none, a switch)."""
    if default is None or isinstance(default, bool) or default == []:
        return None
    return ", ".join(map(str, default)) if isinstance(default, list) else str(default)


def _text_parser(hint: Any) -> Callable[[str], Any]:
    """argparse's ``type`` for a key declared ``hint``: the text as the first of its types that takes it,
    a single value before a comma-separated list (--devices 2, auto or 0,1; --interval 0.8 or 0.8,0.9)."""
    arms = sorted(get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,),
                  key=lambda arm: get_origin(arm) is list)

    def parse(text: str) -> Any:
        for arm in arms:
            ok, value = _from_text(text, arm)
            if ok:
                return value
        words = [_in_words(arm) for arm in arms if arm is not type(None)]
        raise argparse.ArgumentTypeError(f"{text!r} is not {', '.join(words[:-1]) + ' or ' if words[1:] else ''}{words[-1]}")
    return parse


def _from_text(text: str, arm: Any) -> tuple[bool, Any]:
    """(whether ``text`` is a value of the type ``arm``, that value)."""
    if get_origin(arm) is list:
        items = [_from_text(item.strip(), get_args(arm)[0]) for item in text.split(",") if item.strip()]
        return all(ok for ok, _ in items), [value for _, value in items]
    if get_origin(arm) is Literal:
        return text in get_args(arm), text
    if arm in (int, float):
        try:
            return True, arm(text)
        except ValueError:
            return False, None
    return arm is str, text


def _in_words(arm: Any) -> str:
    if get_origin(arm) is list:
        return {int: "integers", float: "numbers"}.get(get_args(arm)[0], "texts") + " separated by commas"
    if get_origin(arm) is Literal:
        return " or ".join(map(str, get_args(arm)))
    return {int: "an integer", float: "a number"}.get(arm, "a text")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then --config, then the verb's own defaults where the config keeps the general one
    (tune's export), then explicit options: later wins."""
    cfg = RunConfig.from_yaml(args.config) if getattr(args, "config", None) else RunConfig()
    given = vars(args)
    overrides: dict[str, Any] = {}
    for key_option in key_options():
        verb_default = key_option.option.verb_defaults.get(args.verb)
        if key_option.key in given:
            overrides[key_option.key] = given[key_option.key]
        elif verb_default is not None and _value(cfg, key_option.key) == key_option.default:
            overrides[key_option.key] = verb_default
    if not sys.stderr.isatty():
        overrides["train.progress"] = False
    return check_models(cfg.updated(overrides).validate())


def _value(cfg: RunConfig, key: str) -> Any:
    """The value of a dotted key, e.g. _value(cfg, "output.export")."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


TRAINING_VERBS = ("fit", "tune", "predict")  # the verbs that import Lightning


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
    cfg = config_from_args(args)
    if args.verb == "ui":
        from forecast.tracking.runs import launch_ui

        return launch_ui(cfg.tracking.uri, args.port, cfg.tracking.experiment, args.open)
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

        horizon = vars(args).get("evaluation.horizon")  # none given: the saved model's
        if args.model_dir:
            predict(cfg, args.model_dir, horizon)
        else:
            from tempfile import TemporaryDirectory

            from forecast.tracking import serving
            from forecast.tracking.runs import download_model

            with TemporaryDirectory() as tmp:
                predict(cfg, download_model(args.model_uri, Path(tmp), serving.__name__), horizon)
    elif args.verb == "tune":
        from forecast.tuning import tune

        tune(cfg)
    elif args.verb == "trends":
        from forecast.pipeline import trends

        trends(cfg, args.model_dir, args.item)
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
