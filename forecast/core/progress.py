"""A log line every few seconds through a long loop (embedding or forecasting 100,000 products), so
a large catalogue never runs without a word; silent for loops that finish sooner."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("forecast")

EVERY_SECONDS = 15.0


class Progress:
    """``step(done)`` logs ``label: done/total (pct), elapsed`` at most every ``every`` seconds."""

    def __init__(self, label: str, total: int, every: float | None = None):
        self.label, self.total = label, total
        self.every = EVERY_SECONDS if every is None else every  # read here, so a test can set it
        self.start = self.last = time.monotonic()

    def step(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every or not 0 < done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed * (self.total - done) / done if done else float("nan")
        log.info("%s: %d/%d (%.0f%%) in %.0fs, about %.0fs left", self.label, done, self.total,
                 100 * done / self.total, elapsed, left)
