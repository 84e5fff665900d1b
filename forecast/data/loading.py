"""From a run's data settings to a Panel: which tables (the configured ones, or the embedded
sample), read and validated by the contract, put on one grid with signals attached."""

from __future__ import annotations

import logging
from importlib import resources

from forecast.core.config import RunConfig
from forecast.data.contract import Tables, load_tables
from forecast.data.panel import Panel, build_panel
from forecast.core.errors import ConfigError

log = logging.getLogger("forecast.pipeline")  # the lines a fit prints keep their logger's name


def sample_paths() -> tuple[str, str]:
    """The embedded sample: 300 products of the UCI Online Retail data (CC0)."""
    root = resources.files("forecast.data") / "sample"
    return str(root / "sales.csv"), str(root / "products.csv")


def data_paths(cfg: RunConfig) -> tuple[str, str]:
    """(sales, products): the configured tables, or the embedded sample when neither is given."""
    data = cfg.data
    if (data.sales is None) != (data.products is None):
        raise ConfigError("give both --sales and --products, or neither (to run on the embedded sample)")
    return (data.sales, data.products) if data.sales else sample_paths()


def load_panel(cfg: RunConfig) -> Panel:
    """The configured tables (or the embedded sample) read, validated and put on one grid."""
    sales, products = data_paths(cfg)
    return panel_from_tables(load_tables(sales, products, cfg.data), cfg)


def panel_from_tables(tables: Tables, cfg: RunConfig) -> Panel:
    """Validated tables on one regular grid, with the configured signals and season length."""
    data = cfg.data
    panel = build_panel(tables, freq=data.freq, gaps=data.gaps, series_end=data.series_end)
    if data.signals:
        from forecast.data.signals import attach_signals

        panel = attach_signals(panel, data.signals, data.date_format)
    if cfg.evaluation.season_length:
        panel.season_length = cfg.evaluation.season_length
    log.info("data: %d products (%d new), %d periods of %s from %s to %s",
             panel.n_items, int((~panel.has_history).sum()), panel.n_periods, panel.freq,
             panel.dates[0].date(), panel.dates[-1].date())
    return panel
