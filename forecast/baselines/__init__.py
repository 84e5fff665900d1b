"""Baselines: per-series statistical models and the description-kNN launch forecast."""

from forecast.baselines.knn import knn_launch_forecast
from forecast.baselines.statistical import (
    SERIES_MODELS,
    BatchForecast,
    FallbackRecord,
    InsufficientHistory,
    SeriesModel,
    forecast_many,
)

__all__ = [
    "SERIES_MODELS",
    "BatchForecast",
    "FallbackRecord",
    "InsufficientHistory",
    "SeriesModel",
    "forecast_many",
    "knn_launch_forecast",
]
