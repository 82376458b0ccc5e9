"""Per-key token buckets counted in events (keyed by a digest prefix of the API key).

A request is admitted when its bucket holds a token per event (a full bucket
for a batch larger than the burst). It then pays for all of its events, which
may drive the balance negative ("debt"): a batch larger than the burst is
still possible, and the debt delays that key's next requests, so the
long-run rate stays at the configured one.
"""

from __future__ import annotations

import math
import time


class RateLimiter:
    def __init__(self, events_per_s: float, burst: int) -> None:
        self.rate = events_per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key_id: str, events: int, now: float | None = None) -> float:
        """Charge ``events`` tokens; returns 0 when admitted, else seconds to wait (Retry-After)."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        need = min(float(events), self.burst)
        if tokens < need:
            self._buckets[key_id] = (tokens, now)
            return max(1.0, math.ceil((need - tokens) / self.rate))
        self._buckets[key_id] = (tokens - events, now)
        return 0.0
