"""forecast: demand forecasts for merchandise planners from descriptions and sales histories.

The Python API (``Forecaster``, ``load_sample``) is what the CLI verbs are built on; see
``forecast.api``. Its names load on first use, so importing any module of the package (every
CLI call, every benchmark child process) does not import the API's layer as well; importing the
package imports neither torch, MLflow nor Optuna.
"""

from __future__ import annotations

__all__ = ["Forecaster", "load_sample", "__version__"]


def __getattr__(name: str):
    """``forecast.Forecaster``, ``forecast.load_sample`` and ``forecast.__version__``, loaded on first use."""
    if name not in __all__:
        raise AttributeError(f"module 'forecast' has no attribute {name!r}")
    from forecast import api

    return api.package_version() if name == "__version__" else getattr(api, name)
