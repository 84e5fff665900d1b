"""The installed package's version: ``forecast --version``, ``forecast.__version__`` and the version a
saved model folder records."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    """The installed distribution's version (``forecast.__version__``)."""
    try:
        return metadata.version("forecast")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
