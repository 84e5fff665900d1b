"""The neural package's own catalogue: which inputs each of its network variants reads. The
registry builds its entries from this table, and the estimator and network read it, so neither
needs the registry (which imports them)."""

from __future__ import annotations

READS: dict[str, frozenset[str]] = {
    "fusion": frozenset({"text", "history"}),  # description + sales/price history
    "text": frozenset({"text"}),  # description, calendar and price plan only
    "sequence": frozenset({"history"}),  # no description
}
