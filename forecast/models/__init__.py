"""Neural forecasters: text + sequence fusion and its ablations.

- :mod:`forecast.models.network`: the ``nn.Module`` (encoders, fusion, heads, loss)
- :mod:`forecast.models.lightning_module`: the training system (steps, logging, optimiser)
- :mod:`forecast.models.forecaster`: :class:`NeuralForecaster`, the Forecaster protocol
"""

from forecast.models.network import VARIANTS, ForecastNetwork, NetworkSpec

__all__ = ["VARIANTS", "ForecastNetwork", "NetworkSpec", "NeuralForecaster"]


def __getattr__(name: str):
    # Lightning is imported only when the forecaster is asked for.
    if name == "NeuralForecaster":
        from forecast.models.forecaster import NeuralForecaster

        return NeuralForecaster
    raise AttributeError(name)
