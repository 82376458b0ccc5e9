"""Refusals of unauthenticated requests, logged in aggregate: one line per kind and minute.

A key-guessing client sends thousands of requests a second; a line each would
flood the log, and none at all hides the attack. So each kind of refusal is
counted per client address for a minute, then logged as one line with the
busiest addresses. Memory is bounded: past ``max_addresses`` distinct
addresses in a minute the rest are counted under "other addresses".
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("evpipe.gateway.auth")

OTHER = "other addresses"


class FailureLog:
    def __init__(self, window_s: float = 60.0, max_addresses: int = 1000, top: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.top = top
        self.clock = clock
        self._started = clock()
        self._counts: dict[str, Counter[str]] = {}

    def record(self, kind: str, address: str | None) -> None:
        """Count one refusal of ``kind`` (e.g. '401 unknown API key') from ``address``."""
        if self.clock() - self._started >= self.window_s:
            self.flush()
        counts = self._counts.setdefault(kind, Counter())
        where = address or "unknown"
        if where not in counts and len(counts) >= self.max_addresses:
            where = OTHER
        counts[where] += 1

    def flush(self) -> None:
        """Log what was counted since the last flush, one line per kind, and start a new window."""
        seconds = self.clock() - self._started
        for kind, counts in self._counts.items():
            busiest = ", ".join(f"{address} x{n}" for address, n in counts.most_common(self.top))
            log.warning("%s: %d requests in the last %.0fs from %d addresses (busiest: %s)",
                        kind, sum(counts.values()), seconds, len(counts), busiest)
        self._counts = {}
        self._started = self.clock()

    def pending(self) -> int:
        return sum(sum(counts.values()) for counts in self._counts.values())
