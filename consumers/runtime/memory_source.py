"""An in-memory ``Source`` for the runtime's unit tests: a broker with one group member, no network.

Topics are lists of values per partition (offset = index). ``subscribe``
assigns every partition of the topics; :meth:`revoke`, :meth:`lose` and
:meth:`assign` script rebalances, delivered on the next ``poll`` as
librdkafka delivers them (callbacks on the polling thread). Every commit is
recorded, and ``fail_commits`` makes the next N commits raise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from consumers.runtime.source import Fetched, Key, Rebalance, SourceError


class MemorySource:
    def __init__(self, partitions: dict[str, int] | None = None) -> None:
        self.logs: dict[Key, list[bytes]] = {}
        self.committed_offsets: dict[Key, int] = {}
        self.commits: list[dict[Key, int]] = []  # every successful commit, in order
        self.fail_commits = 0
        self.fetch_positions: dict[Key, int] = {}  # of assigned partitions: the next offset handed out
        self.paused: set[Key] = set()
        self.round_trips = 0  # calls that would cost a broker round trip on Kafka
        self.closed = False
        self._lock = threading.Lock()  # tests produce and script rebalances from their own thread
        self._events: list[Callable[[], None]] = []
        self._callbacks: tuple[Rebalance, Rebalance, Rebalance] | None = None
        for topic, count in (partitions or {}).items():
            self.create_topic(topic, count)

    # -- the broker side, driven by tests -------------------------------------------------------

    def create_topic(self, topic: str, partitions: int) -> None:
        with self._lock:
            for partition in range(partitions):
                self.logs.setdefault((topic, partition), [])

    def produce(self, topic: str, partition: int, values: list[bytes]) -> None:
        with self._lock:
            self.logs[(topic, partition)].extend(values)

    def revoke(self, keys: list[Key]) -> None:
        """A cooperative rebalance takes these partitions away (on the next poll)."""
        self._queue(lambda: self._give_up(keys, lost=False))

    def lose(self, keys: list[Key]) -> None:
        """The session expired: these partitions are lost (on the next poll)."""
        self._queue(lambda: self._give_up(keys, lost=True))

    def assign(self, keys: list[Key]) -> None:
        """These partitions are (re)assigned, fetched from the committed offset (on the next poll)."""
        self._queue(lambda: self._take(keys))

    # -- Source ---------------------------------------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance) -> None:
        self._callbacks = (on_assign, on_revoke, on_lost)
        self.assign([key for key in sorted(self.logs) if key[0] in topics])

    def poll(self, max_messages: int, timeout: float) -> list[Fetched]:
        with self._lock:
            events, self._events = self._events, []
        for event in events:
            event()
        fetched = self._fetch(max_messages)
        if not fetched:
            time.sleep(min(timeout, 0.002))  # idle: do not spin the test's CPU
        return fetched

    def pause(self, keys: Collection[Key]) -> None:
        self.paused |= set(keys)

    def resume(self, keys: Collection[Key]) -> None:
        self.paused -= set(keys)

    def commit(self, offsets: dict[Key, int]) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise SourceError("injected commit failure")
        self.committed_offsets.update(offsets)
        self.commits.append(dict(offsets))

    def positions(self, keys: Collection[Key]) -> dict[Key, int]:
        return {key: self.fetch_positions.get(key, -1) for key in keys}

    def watermarks(self, key: Key, cached: bool) -> tuple[int, int]:
        if not cached:
            self.round_trips += 1
        with self._lock:
            return 0, len(self.logs[key])

    def committed(self, keys: Collection[Key]) -> dict[Key, int]:
        self.round_trips += 1
        return {key: self.committed_offsets.get(key, -1) for key in keys}

    def close(self) -> None:
        self._give_up(sorted(self.fetch_positions), lost=False)
        self.closed = True

    # -- internals --------------------------------------------------------------------------------

    def _queue(self, event: Callable[[], None]) -> None:
        with self._lock:
            self._events.append(event)

    def _take(self, keys: list[Key]) -> None:
        for key in keys:
            self.fetch_positions[key] = self.committed_offsets.get(key, 0)
        if self._callbacks is not None:
            self._callbacks[0](keys)

    def _give_up(self, keys: list[Key], lost: bool) -> None:
        keys = [key for key in keys if key in self.fetch_positions]
        if self._callbacks is not None and keys:
            self._callbacks[2 if lost else 1](keys)
        for key in keys:
            self.fetch_positions.pop(key, None)

    def _fetch(self, max_messages: int) -> list[Fetched]:
        fetched: list[Fetched] = []
        with self._lock:
            for key, position in sorted(self.fetch_positions.items()):
                if key in self.paused or max_messages <= 0:
                    continue
                values = self.logs[key][position:position + max_messages]
                if values:
                    fetched.append(Fetched(key[0], key[1], list(range(position, position + len(values))), values))
                    self.fetch_positions[key] = position + len(values)
                    max_messages -= len(values)
        return fetched
