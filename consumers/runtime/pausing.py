"""Which partitions the source fetches: pauses for failing batches, the memory cap, shutdown, the backfill lane.

The backfill lane: low-priority topics (the replay topic) are held while the
live topics are more than a threshold behind, with hysteresis (resumed below
half of it), so a replay never slows live traffic and still drains once live
is caught up.
"""

from __future__ import annotations

import logging

from consumers.runtime.buffer import PartitionBuffer
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.source import Key, Source, SourceError

log = logging.getLogger("evpipe.consumer")


class Pauses:
    def __init__(self, source: Source, low_priority: frozenset[str], live_lag_limit: int,
                 metrics: ConsumerMetrics) -> None:
        self.source = source
        self.low_priority = low_priority
        self.live_lag_limit = live_lag_limit
        self.metrics = metrics
        self.paused: set[Key] = set()
        self.hold_low_priority = False
        self._next_check = 0.0

    def check_lanes(self, buffers: dict[Key, PartitionBuffer], now: float) -> None:
        """Hold or release the backfill lane (twice a second at most)."""
        if self.low_priority and now >= self._next_check:
            self._next_check = now + 0.5
            self.hold_low_priority = self.live_lag_exceeded(buffers)

    def sync(self, buffers: dict[Key, PartitionBuffer], failing: set[Key], draining: bool, over_cap: bool) -> None:
        """Pause failing partitions, or all while draining; over the cap or holding the backfill lane, those
        not awaiting a begun batch's end (that batch must be consumed to be written)."""
        wanted = set(buffers) if draining else set(failing)
        if over_cap:
            wanted |= {key for key, buf in buffers.items() if buf.pending_end is None}
        if self.hold_low_priority:
            wanted |= {key for key, buf in buffers.items() if key[0] in self.low_priority and buf.pending_end is None}
        wanted &= set(buffers)
        pause, resume = wanted - self.paused, self.paused - wanted
        if pause:
            self.source.pause(pause)
        if resume:
            self.source.resume(resume)  # from the last offset handed out + 1; the buffer drops re-deliveries
        self.paused = wanted
        self.metrics.paused.set(len(wanted))

    def release(self, keys: list[Key]) -> None:
        """Clear the pause flag of partitions we give up, so a re-assignment starts fetching.

        librdkafka keeps a partition's pause flag across a loss: without this, a
        lost partition that comes straight back would never be fetched.
        """
        paused = [key for key in keys if key in self.paused]
        if paused:
            try:
                self.source.resume(paused)
            except SourceError as exc:  # never fail a rebalance callback over it
                log.warning("could not resume %s on giving them up: %s", paused, exc)
        self.paused -= set(keys)

    def live_lag_exceeded(self, buffers: dict[Key, PartitionBuffer]) -> bool:
        """Whether the live topics' backlog is over the threshold (hysteresis: held until below half).

        Uses the high watermarks cached from fetch responses: no broker round trip.
        """
        if self.live_lag_limit <= 0:
            return False
        live = [key for key in buffers if key[0] not in self.low_priority]
        if not live:
            return False
        backlog = 0
        for key, position in self.source.positions(live).items():
            _low, high = self.source.watermarks(key, cached=True)
            if position >= 0 and high >= 0:
                backlog += max(0, high - position)
        backlog += sum(len(buf) for key, buf in buffers.items() if key[0] not in self.low_priority)
        self.metrics.live_backlog.set(backlog)
        limit = self.live_lag_limit // 2 if self.hold_low_priority else self.live_lag_limit
        return backlog > limit
