"""The stage-2 worker's source for the consumer loop: a Redis list, seen as a few partitions.

Each processing slot of the reliable queue (``queue.py``) is one partition
``(REDIS_QUEUE_KEY, slot)``, always assigned to this worker. ``poll`` takes
items into a slot that has room (at most one batch's worth of items per slot
are taken and not yet committed), so at full load the slots fill one after
the other and their batches are written in parallel by the loop's writer
threads; a committed offset trims the slot.

Membership lives here too, as a Kafka client keeps its group heartbeat on
its own thread: a heartbeat thread refreshes this worker's key and re-queues
the slots of workers whose key expired. ``close`` leaves the worker set when
every slot is empty, and reports whether it could (``left_cleanly``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Collection

import redis

from consumers.runtime.source import Fetched, Key, Rebalance, SourceError
from consumers.worker.metrics import WorkerMetrics
from consumers.worker.queue import ReliableQueue
from evpipe.backoff import Backoff

log = logging.getLogger(__name__)


class RedisListSource:
    def __init__(self, queue: ReliableQueue, slot_capacity: int, metrics: WorkerMetrics,
                 heartbeat_s: float, heartbeat_ttl_s: float, reclaim_interval_s: float, backoff: Backoff) -> None:
        self.queue = queue
        self.slot_capacity = slot_capacity  # items taken and not committed, per slot
        self.metrics = metrics
        self.heartbeat_s, self.heartbeat_ttl_s, self.reclaim_interval_s = heartbeat_s, heartbeat_ttl_s, reclaim_interval_s
        self.left_cleanly = False
        self._slots = range(len(queue.processing))
        self._next = [0] * len(queue.processing)  # offset after the last item handed out, per slot
        self._committed = [0] * len(queue.processing)
        self._paused: set[int] = set()
        self._current = 0  # the slot being filled
        self._backoff = backoff  # between takes while Redis fails
        self._retry_at = 0.0
        self._on_assign: Rebalance | None = None
        self._stopped = threading.Event()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)

    @property
    def topic(self) -> str:
        return self.queue.main

    # -- membership ------------------------------------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance) -> None:
        if topics != [self.topic]:
            raise ValueError(f"a Redis list source reads its own list {self.topic!r}, not {topics}")
        requeued = self.queue.requeue_own()
        if requeued:
            log.warning("re-queued %d events a previous run of worker %s left taken", requeued, self.queue.worker_id)
        self._beat()
        self._reclaim()
        self._on_assign = on_assign  # delivered on the first poll, as Kafka delivers assignments
        self._heartbeat.start()

    def close(self) -> None:
        """Stop the heartbeat; leave the worker set if nothing is left taken, else let another worker reclaim."""
        self._stopped.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        try:
            self.left_cleanly = self.queue.deregister()
            if not self.left_cleanly:  # drop the heartbeat now so the rest is re-queued at the next reclaim
                self.queue.client.delete(self.queue.heartbeat_key)
        except redis.RedisError as exc:
            log.warning("could not leave the worker set: %s", exc)

    # -- fetching ----------------------------------------------------------------------------------

    def poll(self, max_messages: int, timeout: float) -> list[Fetched]:
        if self._on_assign is not None:
            on_assign, self._on_assign = self._on_assign, None
            on_assign([(self.topic, slot) for slot in self._slots])
            return []
        slot = self._slot_with_room()
        if slot is not None and time.monotonic() >= self._retry_at:
            fetched = self._take(slot, max_messages)
            if fetched is not None:
                return [fetched]
        # Nothing to take, every slot full, or Redis failing: wait (short while batches are in flight).
        self._stopped.wait(timeout)
        return []

    def _take(self, slot: int, max_messages: int) -> Fetched | None:
        room = self.slot_capacity - (self._next[slot] - self._committed[slot])
        try:
            first, items = self.queue.take(min(room, max_messages), slot, self._next[slot])
        except redis.RedisError as exc:
            # Whatever the lost reply moved is in the slot's list: the next take hands it out.
            delay = self._backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            log.warning("taking from Redis failed; retrying in %.1f s: %s", delay, exc)
            return None
        self._backoff.reset()
        if not items:
            return None
        self._next[slot] = first + len(items)
        return Fetched(self.topic, slot, list(range(first, first + len(items))), items)

    def _slot_with_room(self) -> int | None:
        """Keep filling the current slot until it holds a batch's worth, then move to the next with room."""
        count = len(self._slots)
        for step in range(count):
            slot = (self._current + step) % count
            if slot not in self._paused and self._next[slot] - self._committed[slot] < self.slot_capacity:
                self._current = slot
                return slot
        return None

    def pause(self, keys: Collection[Key]) -> None:
        self._paused |= {slot for _, slot in keys}

    def resume(self, keys: Collection[Key]) -> None:
        self._paused -= {slot for _, slot in keys}

    def commit(self, offsets: dict[Key, int]) -> None:
        try:
            self.queue.trim({slot: offset for (_, slot), offset in offsets.items()})
        except redis.RedisError as exc:
            raise SourceError(f"trimming the processing list failed: {exc}") from exc
        for (_, slot), offset in offsets.items():
            self._committed[slot] = max(self._committed[slot], offset)

    def positions(self, keys: Collection[Key]) -> dict[Key, int]:
        return {key: self._next[key[1]] for key in keys}

    def watermarks(self, key: Key, cached: bool) -> tuple[int, int]:
        return self._committed[key[1]], self._next[key[1]]

    def committed(self, keys: Collection[Key]) -> dict[Key, int]:
        return {}  # no consumer lag per slot: the scaling signal is the list's depth (evpipe_worker_queue_depth)

    # -- heartbeat and reclaim, on their own thread ----------------------------------------------

    def _heartbeat_loop(self) -> None:
        """Beats even while a Postgres outage holds a batch, so a slow worker is never taken for dead."""
        next_reclaim = time.monotonic() + self.reclaim_interval_s
        while not self._stopped.wait(self.heartbeat_s):
            try:
                self._beat()
                if time.monotonic() >= next_reclaim:
                    self._reclaim()
                    next_reclaim = time.monotonic() + self.reclaim_interval_s
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)

    def _beat(self) -> None:
        self.queue.heartbeat(self.heartbeat_ttl_s, {"pid": os.getpid(), "host": socket.gethostname()})
        self.metrics.queue_depth.set(self.queue.depth())
        self.metrics.processing_depth.set(self.queue.processing_depth())

    def _reclaim(self) -> None:
        moved = self.queue.reclaim_dead_workers()
        if moved:
            log.warning("re-queued %d events from dead workers", moved)
            self.metrics.reclaimed.inc(moved)
