"""Judging models on the past: rolling-origin backtests, the metrics, the per-item forecast ranges
and the ``ensemble`` that combines the backtested models. Reads data and models; writes nothing."""
