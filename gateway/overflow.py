"""The hot-key overflow lane: a key's events over its rate leave the key's partition.

The partition key is ``source_id:user_id``, so one runaway user (or a load test
with one user id) puts everything on one partition: one consumer lags while the
others idle, and every user on that partition waits. Each key gets a token
bucket counted in events; what a key sends beyond it goes to the overflow topic,
keyed by event id. That spreads a hot key over the overflow topic's partitions,
and a resent event (same id) still lands on the partition whose consumer
remembers it, so the archiver's per-partition dedup keeps catching resends.

Keys under the rate never leave their partition, so their order holds. A hot
key's events are split between the lanes and lose their order: that is the
price of not sinking its neighbours.

Cost: a request's keys are counted per second in C (``Counter.update``); only
a key past its rate within the current second is charged against its bucket
(and then for its whole second so far), so traffic of keys under the rate pays
a count and a comparison per distinct key, no bucket arithmetic.

Memory is bounded: the per-second counts are cleared every second (or past
``max_keys`` keys); at ``max_keys`` buckets the ones that have refilled (idle
keys, whose state is the same as a new bucket's) are dropped; if that is not
enough, the oldest half goes (those keys start again with a full bucket).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from dataclasses import dataclass, field

from gateway.backends.base import Record
from gateway.settings import GatewaySettings

_WINDOW_S = 10.0  # "currently overflowing": overflowed in this window or the one before


@dataclass(frozen=True)
class Split:
    """A request's records by lane: ``main`` keeps its keys, ``spread`` goes to the overflow topic."""

    main: list[Record]
    spread: list[Record]


def _marked(main: list[Record], spread: list[Record]) -> Split:
    for record in spread:  # the lane stays with the record: a fallback write after a failed send keeps it
        record.spread = True
    return Split(main, spread)


@dataclass
class HotKeys:
    events_per_s: float  # per key; 0 turns the lane off
    burst: int  # bucket size in events: what a key may send at once before it overflows
    max_keys: int = 100_000
    _buckets: dict[bytes, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, last refill)
    # Events per key in the current second, counted in C (Counter.update): only a key past its rate in
    # this second is charged against a bucket, so keys under it cost no bucket arithmetic at all.
    _seen: Counter[bytes] = field(default_factory=Counter)
    _charged: Counter[bytes] = field(default_factory=Counter)  # of _seen, what the buckets were charged
    _second_start: float = float("-inf")
    _window: Counter[bytes] = field(default_factory=Counter)  # overflowed events per key, this window
    _previous: Counter[bytes] = field(default_factory=Counter)
    _window_start: float = float("-inf")  # set by the first overflow
    by_source: Counter[str] = field(default_factory=Counter)  # overflowed events per source, since start

    @classmethod
    def of(cls, settings: GatewaySettings) -> HotKeys:
        return cls(settings.gateway_overflow_key_events_per_s, settings.gateway_overflow_key_burst)

    @property
    def enabled(self) -> bool:
        return self.events_per_s > 0

    def split(self, records: list[Record], now: float | None = None) -> Split:
        """Charge each key past its rate for its events in ``records``; the events past its tokens are spread."""
        if not self.enabled or not records:
            return Split(records, [])
        now = time.monotonic() if now is None else now
        if now - self._second_start >= 1.0 or len(self._seen) > self.max_keys:
            self._seen.clear()
            self._charged.clear()
            self._second_start = now
        keys = [r.key for r in records]
        seen, threshold = self._seen, min(self.burst, self.events_per_s)
        seen.update(keys)
        if len(keys) == 1:
            hot = keys if seen[keys[0]] > threshold else []
        else:
            hot = [key for key in set(keys) if seen[key] > threshold]
        over = {}
        for key in hot:
            events = keys.count(key) if len(keys) > 1 else 1
            allowed = self._charge(key, events, now)
            if allowed < events:
                over[key] = allowed
        return self._divide(records, over) if over else Split(records, [])

    def _charge(self, key: bytes, events: int, now: float) -> int:
        """Take up to ``events`` tokens from ``key``'s bucket; returns how many of them it had.

        The key's events of this second that went through uncharged (before it passed the rate) are
        charged first: they are in the past, but the bucket must count them."""
        earlier = self._seen[key] - events - self._charged[key]
        self._charged[key] += earlier + events
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.events_per_s) - earlier
        allowed = min(events, max(0, int(tokens)))
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._shrink(now)
        self._buckets[key] = (tokens - allowed, now)
        if allowed < events:
            self._count(key, events - allowed, now)
        return allowed

    def _divide(self, records: list[Record], allowed: dict[bytes, int]) -> Split:
        main: list[Record] = []
        spread: list[Record] = []
        for record in records:
            left = allowed.get(record.key)
            if left is None:
                main.append(record)
            elif left > 0:
                allowed[record.key] = left - 1
                main.append(record)
            else:
                spread.append(record)
        return _marked(main, spread)

    def _shrink(self, now: float) -> None:
        full_after = self.burst / self.events_per_s  # seconds after which an idle bucket is full again
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) >= self.max_keys:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1][1])
            self._buckets = dict(by_age[len(by_age) // 2:])

    def _count(self, key: bytes, events: int, now: float) -> None:
        if now - self._window_start >= _WINDOW_S:
            self._previous = self._window if now - self._window_start < 2 * _WINDOW_S else Counter()
            self._window, self._window_start = Counter(), now
        if key in self._window or len(self._window) < self.max_keys:
            self._window[key] += events
        # The key is source_id:user_id; sources are the API keys' (a bounded set).
        self.by_source[key.split(b":", 1)[0].decode(errors="replace")] += events

    def top(self, n: int, now: float | None = None) -> list[tuple[str, int]]:
        """The ``n`` keys that overflowed most in the last one or two windows, with their overflowed events."""
        now = time.monotonic() if now is None else now
        if now - self._window_start >= 2 * _WINDOW_S:
            return []  # nothing overflowed for two windows
        recent = self._window + (self._previous if now - self._window_start < _WINDOW_S else Counter())
        return [(key.decode(errors="replace"), count) for key, count in heapq.nlargest(n, recent.items(),
                                                                                     key=lambda kv: kv[1])]

    def tracked(self) -> int:
        return len(self._buckets)
