"""forecast: demand forecasts for merchandise planners from descriptions and sales histories.

The Python API (``Forecaster``, ``load_sample``) is what the CLI verbs are built on; see
``forecast.api``. Importing the package imports neither torch, MLflow nor Optuna.
"""

from forecast.api import Forecaster, load_sample, package_version

__version__ = package_version()

__all__ = ["Forecaster", "load_sample", "__version__"]
