"""Errors a user can act on.

Anything raised as a :class:`ForecastError` is printed by the CLI as one clear
message and a non-zero exit, never as a traceback: it is the contract between the
library's internals and the person at the terminal.
"""


class ForecastError(Exception):
    """A problem the user can fix (bad input, bad option, missing file)."""

    exit_code = 2


class DataError(ForecastError):
    """An input table breaks the data contract (see README, "Data contract")."""


class ConfigError(ForecastError):
    """An option or configuration value is invalid."""
