"""One configuration tree for a run, as data.

Every verb (`fit`, `predict`, `tune`, `trends`) receives a single
:class:`RunConfig`. It round-trips through YAML so that a sweep's winner, or any
past run logged to MLflow, can be rerun with ``python -m forecast fit --config``.
A key set from the command line declares its option here too (``option``: flag, verbs,
help), so ``forecast.cli`` builds each option, its type, choices and shown default from the key.
This module knows nothing of torch or MLflow.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from forecast.core.errors import ConfigError

# The verbs of ``python -m forecast`` an option belongs to (forecast.cli builds every option from the
# ``option`` metadata below: its flag, type, choices, help and default come from the key itself).
READING = ("fit", "predict", "tune", "trends")  # every verb that reads the two tables
FITTING = ("fit", "tune")
EXPORTING = ("fit", "predict", "tune")


@dataclass(frozen=True)
class Option:
    """A config key's command-line option. ``help`` says what the key means, never its default or
    range (--help adds both, from the field and RANGES); ``verb_defaults``: a verb whose default differs
    from the field's (None: no default, the help says what happens then)."""

    flag: str
    help: str
    verbs: tuple[str, ...]
    group: str
    verb_defaults: dict[str, Any] = field(default_factory=dict)


def option(default: Any = MISSING, *, flag: str, help: str, verbs: tuple[str, ...], group: str,
           factory: Any = MISSING, verb_defaults: dict[str, Any] | None = None) -> Any:
    """A dataclass field that is also the command-line option ``flag`` of ``verbs`` (see Option)."""
    return field(default=default, default_factory=factory,
                 metadata={"option": Option(flag, help, verbs, group, verb_defaults or {})})


@dataclass
class DataConfig:
    """Where the two tables are and how to read them (None: the embedded sample)."""

    sales: str | None = option(None, flag="--sales", verbs=READING, group="data",
                               help="sales table: item_id, date, units[, price, covariates] (CSV or Parquet)")
    products: str | None = option(None, flag="--products", verbs=READING, group="data",
                                  help="products table: item_id, description[, attributes, launch_date, end_date]")
    freq: str | None = option(None, flag="--freq", verbs=READING, group="data",
                              help="pandas frequency alias (e.g. W-MON); inferred when omitted")
    date_format: str | None = option(None, flag="--date-format", verbs=READING, group="data",
                                     help="format of non-ISO dates in every input file, e.g. %d/%m/%y "
                                          "(ambiguous dates are refused, not guessed)")
    covariates: list[str] = option(flag="--covariates", verbs=READING, group="data", factory=list,
                                   help="comma-separated sales columns to use as covariates "
                                        "(promo, discount, holiday, event... are recognised without it)")
    gaps: Literal["zero", "error"] = option("zero", flag="--gaps", verbs=READING, group="data",
                                            help="missing periods: zero sales or refuse")
    negative_units: Literal["error", "zero"] = option("error", flag="--negative-units", verbs=READING, group="data",
                                                      help="negative units (returns): refuse or count as zero")
    max_description_chars: int = 500  # longer descriptions are truncated with a warning
    series_end: Literal["table", "last-sale"] = option(
        "table", flag="--series-end", verbs=READING, group="data",
        help="where a series without end_date ends: the table's end or its last sale")
    signals: str | None = option(None, flag="--signals", verbs=READING, group="data",
                                 help="exogenous signals: date + one numeric column per signal name (CSV or Parquet)")


@dataclass
class EvalConfig:
    """The forecast task and how it is scored: holdout + rolling origins."""

    horizon: int = option(12, flag="--horizon", verbs=("fit", "predict", "tune"), group="task",
                          verb_defaults={"predict": None},
                          help="periods to forecast; predict: at most the saved model's, by default its own")
    folds: int = option(3, flag="--folds", verbs=FITTING, group="task",  # the last: the holdout of the final H periods
                        help="rolling-origin backtest folds")
    step: int = option(4, flag="--step", verbs=FITTING, group="task", help="periods between backtest origins")
    season_length: int | None = None  # inferred from the frequency (52 for weekly)
    interval: float | list[float] = option(  # the first level is the headline one
        0.8, flag="--interval", verbs=FITTING, group="task",
        help="coverage of the forecast range, or several comma-separated: 0.8 exports units_p10 and units_p90; "
             "0.8,0.9 also units_p5 and units_p95")
    interval_method: Literal["auto", "absolute", "sqrt", "scaled", "absolute+bands", "sqrt+bands",
                             "scaled+bands"] = "auto"  # how ranges are calibrated (forecast.evaluation.intervals); auto: backtest

    @property
    def levels(self) -> tuple[float, ...]:
        """The range levels asked for, the headline one first (``interval`` as a tuple)."""
        return tuple(self.interval) if isinstance(self.interval, list) else (self.interval,)


@dataclass
class BaselineConfig:
    """Statistical baselines fitted per series, and the description-kNN baseline."""

    moving_average_window: int = 4
    knn_neighbours: int = 10
    ensemble_shrinkage: float = 0.0  # ensemble: weights = (1 - this) x fitted + this x equal (forecast.evaluation.combination);
                                     # 0: any shrinkage raised the ensemble's WAPE (experiments/results/combination.md)
    n_jobs: int = -1  # processes for per-series fitting; -1: all cores
    engine: Literal["local", "dask"] = option("local", flag="--engine", verbs=FITTING, group="scaling",
                                             help="where per-series baselines run: local processes or a Dask cluster")
    scheduler: str | None = option(None, flag="--scheduler", verbs=FITTING, group="scaling",
                                   help="the Dask scheduler's address for --engine dask, e.g. tcp://HOST:8786")


@dataclass
class NeuralConfig:
    """The fusion network and its ablations (see forecast.models)."""

    text_encoder: str | None = option(None, flag="--text-encoder", verbs=FITTING, group="models",
                                      help="local HuggingFace model directory (none: the packaged MiniLM)")
    text_mode: Literal["auto", "frozen", "last-k", "full"] = option(
        "auto", flag="--text-mode", verbs=FITTING, group="models",
        help="text encoder fine-tuning; auto: last-k on CUDA, frozen on CPU")
    finetune_layers: int = 1  # for text_mode "last-k"
    max_tokens: int = 32
    sequence_encoder: Literal["lstm", "attention"] = "lstm"
    fusion: Literal["gated", "init"] = "gated"
    context_length: int = 16
    hidden_size: int = 64
    dropout: float = 0.1
    demand_weight: float = 1.0
    price_weight: float = 0.2
    trend_weight: float = 0.5
    transform: Literal["log1p", "sqrt", "none"] = "sqrt"  # transform of units (forecast.models.neural.features)
    scaling: Literal["global", "window"] = "global"  # one global standardisation, or per-window level
    level_weight: float = 0.0  # "window": loss weight of a window = (level / launch level) ** this
    trend_window: int = 9  # periods of the centred moving average that defines the trend (forecast.outputs.trends)
    text_dropout: float = 0.5  # fusion, training: share of windows that read the average description
    text_mix: float = 0.0  # fusion, items with history: forecast = w x (with its description) + (1 - w) x
                           # (with the average description); < 1 is meant for a model trained with text_dropout
    text_mix_new: float = 1.0  # the same for new products (launch forecasts)
    age_curve: bool = True  # horizon feature: the training items' mean scaled units at each age since launch
    knn_feature: int = 10  # k > 0, text models: horizon feature, the mean launch curve of the k products most
                          # similar by description (never the product itself); 0: off
    attribute_curves: bool = False  # text models: horizon feature per attribute column (category, colour, ...),
                                   # the mean launch curve of the other products with the same value
    recent_launches: int = 0  # horizon feature: the mean launch curve of the products launched in the last
                               # this many periods before the origin, as far as observed then; 0: off
    signals: bool = False  # read data.signals as context and static blocks; off by default: on VISUELLE's Google
                           # Trends they made fusion worse (ablations rounds 3 and 9b), while launch_boosting,
                           # which reads them whenever given, gained from them
    launch_weight: float = 1.0  # training: loss weight of a launch window (empty context) against other windows
    censored_launches: int = 0  # training: a first sale in the table's first this many periods (no launch_date)
                                # is not taken for a launch: its empty-context window is not trained on
    bias_correction: Literal["none", "variance", "binned"] = "none"  # add back what squaring the sqrt-space
                                                                     # forecast loses (forecast.models.calibration)
    members: int = 3  # networks averaged in the forecast fit exports (seeds seed .. seed + members - 1, each the
                      # full budget); the backtest trains one per fold, so its scores are one network's


@dataclass
class TrainConfig:
    """The Lightning training loop."""

    max_epochs: int = option(8, flag="--max-epochs", verbs=FITTING, group="models",
                             help="neural training epochs, all of them trained unless train.val_periods in "
                                  "--config holds periods out for early stopping")
    # x windows_per_epoch: ~35 s per fit on 2 quiet CPU cores (online_retail), whatever the panel's
    # size; where validation WAPE flattened (experiments/results/ablations.md, round 4)
    batch_size: int = 512  # the global batch: with DDP each of W processes takes batch_size // W
    learning_rate: float = 3e-3
    lr_schedule: Literal["constant", "onecycle"] = "onecycle"  # onecycle: warm-up, then cosine decay per step
    text_learning_rate: float = 3e-5
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better val/loss before early stopping (with val_periods > 0)
    gradient_clip_val: float = 1.0  # Lightning clips the gradient norm at this
    log_every_n_steps: int = 20  # training-curve resolution in MLflow
    val_periods: int | None = 0  # periods held out for early stopping (None: the horizon); 0: none, train on
                                 # every window up to the end (the recent periods matter most; see datamodule)
    windows_per_epoch: int | None = 48_000  # random training windows per epoch (EpochShuffle); None: all
    limit_train_batches: int | float | None = None
    num_workers: int = 0
    progress: bool = option(True, flag="--no-progress", verbs=FITTING, group="tracking",
                            help="one log line per step instead of progress bars (the default when stderr is not "
                                 "a terminal)")
    num_threads: int | None = 1  # torch CPU threads while training; small LSTMs gain nothing from more, and
                                 # lose badly when cores are shared (spin-waiting); None: torch's setting
    # Lightning's Trainer device settings, passed as they are (forecast.models.neural.devices)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"] = option(
        "auto", flag="--accelerator", verbs=FITTING, group="scaling", help="auto: a GPU if there is one")
    devices: int | list[int] | Literal["auto"] = option(
        1, flag="--devices", verbs=FITTING, group="scaling", help="how many devices (e.g. 2; -1 or auto: all) or which (0,1)")
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true", "fsdp", "deepspeed"] = option(
        "auto", flag="--strategy", verbs=FITTING, group="scaling", help="ddp: one process per device")
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"] = option(
        "32-true", flag="--precision", verbs=FITTING, group="scaling", help="numeric precision of training")


@dataclass
class TrackingConfig:
    """MLflow store (default: sqlite under ./mlruns, or $MLFLOW_TRACKING_URI)."""

    uri: str | None = option(None, flag="--tracking-uri", verbs=(*FITTING, "trends", "ui"), group="tracking",
                             help="MLflow tracking URI (none: $MLFLOW_TRACKING_URI, else sqlite under ./mlruns; "
                                  "trends logs its report only to a store named by one of these two)")
    experiment: str = option("forecast", flag="--experiment", verbs=(*FITTING, "ui"), group="tracking",
                             help="MLflow experiment; ui: the one whose runs table it prints")
    run_name: str | None = option(None, flag="--run-name", verbs=FITTING, group="tracking",
                                  help="MLflow run name (none: what ran on what, e.g. 'fit retail/sales.csv "
                                       "300 items h12')")
    plot_items: int = 12
    register: str | None = option(None, flag="--register", verbs=("fit",), group="tracking",
                                  help="register the refit neural model in the MLflow model registry under this name")
    tuned_from: str | None = None  # set by tune in the best config it writes ("study forecast-fusion trial 7")


@dataclass
class OutputConfig:
    """What the planner gets."""

    export: str | None = option("forecast.csv", flag="--export", verbs=EXPORTING, group="output",
                                verb_defaults={"tune": "forecast_tuned.csv"},
                                help="forecast CSV to write; tune writes a file of its own, so that a fit's "
                                     "forecast is never overwritten unasked")
    model: str | None = option(None, flag="--model", verbs=("fit",), group="output",
                               help="model whose forecast is exported (none: the best on the backtest, per group)")
    checkpoint_dir: str = option("checkpoints", flag="--checkpoint-dir", verbs=("fit",), group="output",
                                 help="where the chosen models are saved, and the work folder a --resume continues from")
    trend_threshold: float = 0.1  # |change| below this is "flat" (see forecast.outputs.trends)
    excel: bool = option(False, flag="--excel", verbs=EXPORTING, group="output",
                         help="write the export as UTF-8 with a byte order mark, so Excel shows £ and accents right")


@dataclass
class TuneConfig:
    """The Optuna sweep of ``tune`` (forecast.tuning)."""

    trials: int = option(20, flag="--trials", verbs=("tune",), group="tune",
                         help="finished (complete or pruned) trials the study should hold: rerunning resumes "
                              "a killed sweep, a larger number extends it")
    search_space: str | None = option(None, flag="--search-space", verbs=("tune",), group="tune",
                                      help="YAML search space (none: the packaged one)")
    study_name: str = option("forecast-fusion", flag="--study-name", verbs=("tune",), group="tune",
                             help="Optuna study; rerun the same to resume")
    storage: str = option("sqlite:///mlruns/optuna.db", flag="--storage", verbs=("tune",), group="tune",
                          help="Optuna RDB storage")
    best_config: str = option("best_config.yaml", flag="--best-config", verbs=("tune",), group="tune",
                              help="YAML written with the best configuration")


@dataclass
class TrendsConfig:
    """The trend report of ``trends`` (forecast.outputs.trends)."""

    forecast: str = option("forecast.csv", flag="--forecast", verbs=("trends",), group="trends",
                           help="the CSV written by fit")
    output: str = option("trends.csv", flag="--output", verbs=("trends",), group="trends",
                         help="report CSV to write; its chart: the same name with .png")
    min_products: int = option(3, flag="--min-products", verbs=("trends",), group="trends",
                               help="ignore words and attribute values shared by fewer products")


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric key: ``lo``/``hi`` bounds (None: unbounded), open or closed, plus
    ``also``, single values allowed outside them (``-1``: all cores). ``None`` is allowed where the
    key's type allows it; NaN and infinity never are."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    also: tuple = ()

    def __contains__(self, value: float) -> bool:
        if value in self.also:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def __str__(self) -> str:
        lo, hi = _number(self.lo), _number(self.hi)
        if self.lo is not None and self.hi is not None:
            ends = {(False, False): "", (True, True): ", both excluded", (True, False): f", {lo} excluded",
                    (False, True): f", {hi} excluded"}[(self.lo_open, self.hi_open)]
            text = f"between {lo} and {hi}{ends}"
        elif self.lo is not None:
            text = f"{'greater than' if self.lo_open else 'at least'} {lo}"
        elif self.hi is not None:
            text = f"{'less than' if self.hi_open else 'at most'} {hi}"
        else:
            text = "a finite number"
        return text + "".join(f", or {v}" for v in self.also)


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


POSITIVE, COUNT, SHARE, WEIGHT = Range(1), Range(0), Range(0.0, 1.0), Range(0.0)
# The one place every numeric key's valid values are declared: checked whenever a config is built (YAML,
# options, search space: ConfigError naming key, value and range), shown in --help and README "Configuration".
# tests/test_bad_input_round3.py fails when a numeric key lacks its range here.
RANGES: dict[str, Range] = {
    "data.max_description_chars": POSITIVE,
    "evaluation.horizon": POSITIVE, "evaluation.folds": POSITIVE, "evaluation.step": POSITIVE,
    "evaluation.season_length": POSITIVE, "evaluation.interval": Range(0.0, 1.0, lo_open=True, hi_open=True),
    "baselines.moving_average_window": POSITIVE, "baselines.knn_neighbours": POSITIVE,
    "baselines.n_jobs": Range(1, also=(-1,)), "baselines.ensemble_shrinkage": SHARE,
    "neural.finetune_layers": POSITIVE, "neural.max_tokens": Range(1, 512), "neural.context_length": POSITIVE,
    "neural.hidden_size": POSITIVE, "neural.dropout": Range(0.0, 1.0, hi_open=True),
    "neural.demand_weight": WEIGHT, "neural.price_weight": WEIGHT, "neural.trend_weight": WEIGHT,
    "neural.level_weight": Range(-10.0, 10.0), "neural.trend_window": POSITIVE, "neural.text_dropout": SHARE,
    "neural.text_mix": SHARE, "neural.text_mix_new": SHARE, "neural.knn_feature": COUNT,
    "neural.recent_launches": COUNT, "neural.launch_weight": Range(0.0, lo_open=True),
    "neural.censored_launches": COUNT, "neural.members": POSITIVE,
    "train.max_epochs": POSITIVE, "train.batch_size": POSITIVE, "train.learning_rate": Range(0.0, 1.0, lo_open=True),
    "train.text_learning_rate": Range(0.0, 1.0), "train.weight_decay": WEIGHT, "train.patience": COUNT,
    "train.gradient_clip_val": WEIGHT, "train.log_every_n_steps": POSITIVE, "train.val_periods": COUNT,
    "train.windows_per_epoch": POSITIVE, "train.limit_train_batches": Range(0.0, lo_open=True),
    "train.num_workers": COUNT, "train.num_threads": POSITIVE, "train.devices": Range(0, also=(-1,)),
    "tracking.plot_items": COUNT, "output.trend_threshold": WEIGHT, "tune.trials": POSITIVE,
    "trends.min_products": POSITIVE, "seed": Range(0, 2**32 - 1),
}
NON_EMPTY_LISTS = ("train.devices", "evaluation.interval")  # a list given for these must hold at least one value


def check_range(key: str, value: Any) -> None:
    """ConfigError unless a numeric ``value`` of ``key`` (a list: each element) lies in RANGES[key]."""
    valid = RANGES.get(key)
    if isinstance(value, list):
        if not value and key in NON_EMPTY_LISTS:
            raise ConfigError(f"{key}: an empty list; give at least one value")
        for item in value:
            check_range(key, item)
        return
    if valid is None or isinstance(value, (bool, str)) or value is None:
        return
    if value not in valid:
        raise ConfigError(f"{key}: {value!r} is out of range; it must be {valid}")
    if key == "train.limit_train_batches" and isinstance(value, float) and value > 1:
        raise ConfigError(f"{key}: {value!r} is out of range; a share of the batches is at most 1.0 "
                          "(an integer counts batches)")


def ranges_text() -> str:
    """Every numeric key and its range, one line per config section, for --help."""
    sections: dict[str, list[str]] = {}
    for key, valid in RANGES.items():
        section, _, leaf = key.rpartition(".")
        sections.setdefault(section or "(top level)", []).append(f"{leaf} {valid}")
    return "\n".join(f"  {section}: {'; '.join(items)}" for section, items in sections.items())


@dataclass
class RunConfig:
    models: list[str] = option(  # the references (croston, tsb, imapa, launch_curve, launch_boosting) add ~10% to a baselines-only
        flag="--models", verbs=FITTING, group="models",  # fit of the sample
        factory=lambda: ["seasonal_naive", "moving_average", "ets", "theta", "croston", "tsb", "imapa", "knn",
                         "launch_curve", "launch_boosting", "ensemble", "fusion"],
        help="comma-separated models to fit and compare, from: {models}")
    data: DataConfig = field(default_factory=DataConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    neural: NeuralConfig = field(default_factory=NeuralConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    trends: TrendsConfig = field(default_factory=TrendsConfig)
    seed: int = option(0, flag="--seed", verbs=FITTING, group="task", help="random seed")

    def validate(self) -> "RunConfig":
        """Refuse impossible combinations before any data is read or model fitted (each value's range:
        RANGES, checked when the config is built, and again here for one built in code; model names:
        forecast.models.registry.check_models)."""
        for key, value in _leaves(self.to_dict()):
            check_range(key, value)
        if not self.models:
            raise ConfigError("models is empty; name at least one model (e.g. --models ets,fusion)")
        levels = self.evaluation.levels
        if len(set(levels)) < len(levels):
            raise ConfigError(f"evaluation.interval: {self.evaluation.interval} repeats a level; give different "
                              f"levels (e.g. [0.8, 0.9])")
        if self.output.model is not None and self.output.model not in self.models:
            raise ConfigError(
                f"--model {self.output.model!r} is not among the fitted models ({', '.join(self.models)})"
            )
        self._validate_neural_options()
        if (self.baselines.engine == "dask") != (self.baselines.scheduler is not None):
            raise ConfigError("baselines.engine dask and baselines.scheduler (--engine dask --scheduler "
                              "tcp://HOST:PORT) go together: the engine needs its scheduler's address")
        return self

    def _validate_neural_options(self) -> None:
        nt = self.neural
        if nt.bias_correction != "none" and (nt.transform != "sqrt" or nt.scaling != "global"):
            raise ConfigError(f"neural.bias_correction {nt.bias_correction!r} needs neural.transform 'sqrt' and "
                              f"neural.scaling 'global' (got {nt.transform!r}, {nt.scaling!r})")

    # --- YAML round trip -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return _build(cls, _one_model_list(data or {}), "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
        return cls.from_dict(data or {})

    def one_network(self) -> "RunConfig":
        """The settings a backtest fold or a tuning trial trains with: one network. ``neural.members`` are
        averaged only in the forecast fit exports, so a backtest costs the same whatever their number, and its
        score is one network's (the average of several is no worse in expectation)."""
        return self.updated({"neural.members": 1}) if self.neural.members != 1 else self

    def updated(self, overrides: dict[str, Any]) -> "RunConfig":
        """A copy with dotted-key overrides applied, e.g. {"evaluation.horizon": 8}."""
        data = self.to_dict()
        for key, value in overrides.items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                if part not in node or not isinstance(node[part], dict):
                    raise ConfigError(f"unknown configuration key {key!r}")
                node = node[part]
            if leaf not in node:
                hint = "; models is one list of every model to fit" if key in TWO_MODEL_LISTS else ""
                raise ConfigError(f"unknown configuration key {key!r}{hint}")
            node[leaf] = value
        return RunConfig.from_dict(data)


TWO_MODEL_LISTS = ("baselines.models", "neural.models")  # before the one ``models`` list


def _one_model_list(data: Any) -> Any:
    """A config written before ``models`` was one list (a saved model's config.yaml, a best config, an
    MLflow run's config) named the statistical models in baselines.models and the neural ones in
    neural.models: read as ``models``, those two lists in that order (the order they were fitted in)."""
    if not isinstance(data, dict):
        return data
    old = [key for key in TWO_MODEL_LISTS
           if isinstance(data.get(key.split(".")[0]), dict) and "models" in data[key.split(".")[0]]]
    if not old:
        return data
    if "models" in data:
        raise ConfigError(f"models and {' and '.join(old)} are both given; keep only models, the one list of "
                          "every model to fit")
    data, models = dict(data), []
    for key in old:
        section = data[key.split(".")[0]] = dict(data[key.split(".")[0]])
        names = section.pop("models")
        if not isinstance(names, list):
            raise ConfigError(f"{key}: {names!r} is not a list of model names (models, the one list of every "
                              "model to fit, replaces it)")
        models += names
    return data | {"models": models}


def _leaves(data: dict[str, Any], prefix: str = ""):
    """(dotted key, value) of every leaf of a nested config dict."""
    for name, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Instantiate a (nested) dataclass from a dict, refusing unknown keys and ill-typed values by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'} must be a mapping")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown configuration key(s): {', '.join(prefix + k for k in unknown)}")
    hints = get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if isinstance(hint, type) and is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = checked(prefix + name, value, hint)
            check_range(prefix + name, kwargs[name])
    return cls(**kwargs)


def checked(key: str, value: Any, hint: Any) -> Any:
    """``value`` if it is of the declared type ``hint`` (an int given for a float becomes a float),
    else a ConfigError naming the key, the value and what it accepts."""
    ok, converted = _conforms(value, hint)
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not {_describe(hint)}")
    return converted


def _conforms(value: Any, hint: Any) -> tuple[bool, Any]:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return value in args and not isinstance(value, bool), value
    if origin in (Union, UnionType):
        for arg in args:
            ok, converted = _conforms(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        items = [_conforms(v, args[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    return isinstance(value, hint), value


def _describe(hint: Any) -> str:
    """What a type accepts, in words: "one of zero, error", "an integer or null", "a list of text"."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return f"one of {', '.join(map(str, args))}"
    if origin in (Union, UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a text"}.get(
        hint, getattr(hint, "__name__", str(hint)))


@dataclass(frozen=True)
class KeyOption:
    """A config key with a command-line option: the key, its Option, its declared type and its default."""

    key: str
    option: Option
    hint: Any
    default: Any


def key_options() -> list[KeyOption]:
    """Every config key that has a command-line option, in the order the config declares them."""
    found = []
    for section in fields(RunConfig):
        hint = get_type_hints(RunConfig)[section.name]
        leaves = [(f"{section.name}.", f, get_type_hints(hint)[f.name]) for f in fields(hint)] \
            if is_dataclass(hint) else [("", section, hint)]
        for prefix, leaf, leaf_hint in leaves:
            if "option" in leaf.metadata:
                default = leaf.default_factory() if leaf.default is MISSING else leaf.default
                found.append(KeyOption(prefix + leaf.name, leaf.metadata["option"], leaf_hint, default))
    return found


def choices(key: str) -> tuple[str, ...]:
    """The allowed values of a ``Literal`` key, e.g. choices("data.gaps") -> ("zero", "error")."""
    section, leaf = key.split(".")
    hint = get_type_hints(get_type_hints(RunConfig)[section])[leaf]
    return get_args(hint)
