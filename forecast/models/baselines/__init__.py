"""Baselines: per-series statistical models (configured instances with fallbacks) and the
description-kNN launch forecast; :mod:`forecast.models.registry` says which are fitted under which name."""
