"""Every model the package can fit, in one table: its name, the item groups it forecasts,
how it is built from a RunConfig and, for a neural model, which inputs it reads.

Adding a model is one entry here (plus its class and its test). The table's order is
the preference order used when the backtest has no evidence for a group (see
``forecast.pipeline.choose_models``). Builders import their classes lazily, so reading
the table costs no torch or statsmodels import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from forecast.core.config import RunConfig
from forecast.core.errors import ConfigError, DataError
from forecast.models.base import BOTH_GROUPS, HISTORY, NEW, Model, Prediction, variant_name
from forecast.models.neural.variants import READS


@dataclass(frozen=True)
class ModelEntry:
    name: str
    groups: frozenset[str]  # which items it forecasts
    build: Callable[..., Model]  # (name, config, **neural_options) -> an unfitted model
    reads: frozenset[str] = frozenset()  # neural models: which inputs of "text", "history" the network reads


def _neural(name: str, cfg: RunConfig, logger=None, workdir: Path | None = None, resume: bool = False,
            **_: Any) -> Model:
    """A neural estimator; with ``workdir`` its trainings checkpoint there and ``resume`` continues them."""
    from forecast.models.neural.estimator import NeuralEstimator, ResumableNeural

    if workdir is not None:
        return ResumableNeural(name, cfg, workdir, resume, logger)
    return NeuralEstimator(name, cfg, logger=logger)


def _knn(name: str, cfg: RunConfig, groups: frozenset[str], **_: Any) -> Model:
    from forecast.models.baselines.baseline import KnnBaseline

    return KnnBaseline(name, groups, cfg.baselines.knn_neighbours, cfg.neural.text_encoder, cfg.neural.max_tokens)


def _series(make: Callable[[RunConfig], Any]) -> Callable[..., Model]:
    """A builder for a per-series statistical model configured by ``make(cfg)``."""
    def build(name: str, cfg: RunConfig, groups: frozenset[str], **_: Any) -> Model:
        from forecast.models.baselines.baseline import StatisticalBaseline

        bc = cfg.baselines
        return StatisticalBaseline(name, groups, make(cfg), bc.n_jobs, cfg.train.progress, bc.engine, bc.scheduler)
    return build


def moving_average(cfg: RunConfig):
    from forecast.models.baselines.statistical import Mean, MovingAverage

    return MovingAverage(window=cfg.baselines.moving_average_window, fallback=Mean())


def ets(cfg: RunConfig):
    from forecast.models.baselines.statistical import ETS

    return ETS(fallback=moving_average(cfg))


def theta(cfg: RunConfig):
    from forecast.models.baselines.statistical import Theta

    return Theta(fallback=ets(cfg))


def _launch_curve(name: str, cfg: RunConfig, groups: frozenset[str], **_: Any) -> Model:
    from forecast.models.baselines.baseline import LaunchCurveBaseline

    return LaunchCurveBaseline(name, groups)


def _launch_boosting(name: str, cfg: RunConfig, groups: frozenset[str], **_: Any) -> Model:
    from forecast.models.baselines.boosting import LaunchBoosting

    return LaunchBoosting(name, groups)


def croston(cfg: RunConfig):
    from forecast.models.baselines.statistical import Croston

    return Croston(fallback=moving_average(cfg))


def tsb(cfg: RunConfig):
    from forecast.models.baselines.statistical import TSB

    return TSB(fallback=moving_average(cfg))


def imapa(cfg: RunConfig):
    from forecast.models.baselines.statistical import IMAPA

    return IMAPA(fallback=moving_average(cfg))


def seasonal_naive(cfg: RunConfig):
    from forecast.models.baselines.statistical import Mean, Naive, SeasonalNaive

    return SeasonalNaive(fallback=Naive(fallback=Mean()))


def sarimax(cfg: RunConfig):
    from forecast.models.baselines.statistical import SARIMAX

    return SARIMAX(fallback=ets(cfg))


def _combination(name: str, cfg: RunConfig, **_: Any) -> Model:
    raise ValueError(f"{name} is not fitted on its own: forecast.evaluation.combination combines the other models' forecasts")


MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in (  # preference order
    ModelEntry("fusion", BOTH_GROUPS, _neural, READS["fusion"]),
    ModelEntry("text", BOTH_GROUPS, _neural, READS["text"]),
    ModelEntry("sequence", BOTH_GROUPS, _neural, READS["sequence"]),
    ModelEntry("knn", frozenset({NEW}), _knn),
    ModelEntry("launch_curve", frozenset({NEW}), _launch_curve),
    ModelEntry("launch_boosting", frozenset({NEW}), _launch_boosting),
    ModelEntry("ets", frozenset({HISTORY}), _series(ets)),
    ModelEntry("theta", frozenset({HISTORY}), _series(theta)),
    ModelEntry("moving_average", frozenset({HISTORY}), _series(moving_average)),
    ModelEntry("seasonal_naive", frozenset({HISTORY}), _series(seasonal_naive)),
    ModelEntry("sarimax", frozenset({HISTORY}), _series(sarimax)),
    ModelEntry("croston", frozenset({HISTORY}), _series(croston)),
    ModelEntry("tsb", frozenset({HISTORY}), _series(tsb)),
    ModelEntry("imapa", frozenset({HISTORY}), _series(imapa)),
    ModelEntry("ensemble", BOTH_GROUPS, _combination),  # weighted average of the others (forecast.evaluation.combination)
)}

# What fit uses for products that no model of --models forecasts (see pipeline.choose_models).
FALLBACK = {NEW: "knn"}

NEURAL = tuple(name for name, entry in MODELS.items() if entry.reads)  # the network-based ones
COMBINATIONS = ("ensemble",)  # built from the other models' backtest forecasts, never fitted on their own


def fitted(models: list[str]) -> list[str]:
    """The models of a list that are fitted on their own (all but the combinations): the statistical
    ones, then the neural ones, each as listed (the backtest's order, as when they were two config lists)."""
    alone = [m for m in models if m not in COMBINATIONS]
    return [m for m in alone if m not in NEURAL] + [m for m in alone if m in NEURAL]


def entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]


def build(name: str, cfg: RunConfig, logger=None, workdir: Path | None = None, resume: bool = False) -> Model:
    """The model called ``name``, configured by ``cfg`` (neural ones checkpoint into ``workdir`` when given)."""
    found = entry(name)
    return found.build(name, cfg, groups=found.groups, logger=logger, workdir=workdir, resume=resume)


def forecast_as(prediction: Prediction, name: str) -> Prediction:
    """The forecast of ``name`` (a model, or a variant such as ``launch_curve:attributes``) from its model's
    prediction, as fit exported it: a baseline offers a variant beside its own forecast; a saved neural model
    that fit chose as a variant forecasts as the variant already. One rule for a chosen model and for an
    ensemble member; a baseline's missing variant is refused by name."""
    stem, label = variant_name(name)
    if label is None:
        return prediction
    if label in prediction.variants:
        return prediction.variant(label)
    if stem in NEURAL or not len(prediction.item_index):
        return replace(prediction, model=name, variants={})
    raise DataError(f"{name}: {stem} did not forecast its {label} variant: the products table lacks the columns "
                    f"it forecasts from (launch_curve:attributes: the attribute columns, e.g. category, colour); "
                    f"give the products table with the fitted data's columns, or fit on this data")


def check_models(cfg: RunConfig) -> RunConfig:
    """Refuse unknown model names."""
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model {', '.join(map(repr, unknown))}; choose from {', '.join(MODELS)}")
    return cfg
