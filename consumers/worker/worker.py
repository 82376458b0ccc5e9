"""The stage-2 worker loop: collect a batch, write it, acknowledge it; heartbeat and reclaim on the side.

Guarantees (see consumers/worker/queue.py for the Redis side):

* nothing is lost: an event leaves the worker's processing list only after the
  Postgres transaction holding it committed, or when it is dead-lettered (in
  the same Redis transaction as the acknowledgement);
* nothing is stored twice: a batch re-delivered after a crash (or written by a
  worker presumed dead that wakes up) hits the event_id ledger and inserts nothing;
* Postgres failures are retried with capped exponential backoff for as long as
  they last; the batch waits in the processing list meanwhile.

What it shares with the Kafka consumers (``consumers/runtime``): the process
entry (``run_until_signalled`` calls :meth:`Worker.stop` on SIGTERM/SIGINT),
one metrics registry per process made at the entry point, and the one backoff
(``evpipe.backoff``). It does not run on ``ConsumerLoop``: that loop parses
each batch into Arrow and dead-letters to Kafka (the worker writes rows built
from the JSON and lets Postgres reject an event, retried up to
WORKER_MAX_ATTEMPTS), it writes one batch per partition at a time on one
writer thread (the worker keeps WORKER_WRITERS batches in flight on their own
connections), and it exports evpipe_consumer_* partition metrics that mean
nothing for a Redis list.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import redis

from consumers.worker.metrics import WorkerMetrics
from consumers.worker.queue import DeadItem, ReliableQueue
from consumers.worker.settings import WorkerSettings
from consumers.worker.writer import BatchWriter, Entry, TransientError, decode_batch
from evpipe import pgstore
from evpipe.backoff import Backoff

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class SlotBatch:
    """A collected batch: the raw items in its processing slot, decoded (not the runtime's Kafka ``Job``)."""

    slot: int
    items: list[bytes]
    entries: list[Entry]
    dead: list[DeadItem]
    duplicates: int


class Worker:
    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or default_worker_id()
        self.metrics = metrics or WorkerMetrics()
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=30, health_check_interval=30)
        # One processing slot per batch in flight: one per writer plus the one being collected.
        slots = settings.worker_writers + 1
        self.queue = ReliableQueue(self.redis, settings.redis_queue_key, self.worker_id, slots=slots)
        self.writers = [self._new_writer() for _ in range(settings.worker_writers)]
        self.exit_code: int | None = None  # set when run() returns: 0 clean, 1 events left for reclaim
        self._stopping = threading.Event()
        self.done = threading.Event()  # run() returned: the heartbeat thread stops too
        self._batches: queue.Queue[SlotBatch | None] = queue.Queue()
        self._slot_free = [threading.Event() for _ in range(slots)]
        for free in self._slot_free:
            free.set()
        self._writer_failed = threading.Event()
        self._next_maintenance = 0.0
        self._schema_ready = False

    def _new_writer(self) -> BatchWriter:
        s = self.settings
        writer = BatchWriter(s.database_url, s.worker_table, application_name=f"evpipe-worker-{self.worker_id}"[:63],
                             max_attempts=s.worker_max_attempts, retry_delay_s=s.worker_backoff_initial_s,
                             retry_cap_s=s.worker_backoff_max_s)
        writer.on_item_failure = lambda: self.metrics.failures.labels("item").inc()
        return writer

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Finish the batches in flight, acknowledge them and return from :meth:`run` (safe from any thread)."""
        self._stopping.set()

    def run(self) -> None:
        """Run until :meth:`stop`; then ``exit_code`` is the process's exit code."""
        self.exit_code = self._run()

    def _run(self) -> int:
        self._heartbeat_once()
        self._reclaim()
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
        log.info("worker %s draining %s into %s", self.worker_id, self.queue.main, self.settings.worker_table)
        try:
            clean = self._loop()
        finally:
            self.done.set()
            heartbeat.join()
            for writer in self.writers:
                writer.close()
        if clean and self._deregister():
            log.info("worker %s stopped cleanly", self.worker_id)
            return 0
        try:  # drop the heartbeat now so another worker re-queues our events at its next reclaim
            self.redis.delete(self.queue.heartbeat_key)
        except redis.RedisError:
            pass
        log.warning("worker %s stopped with events in flight; another worker re-queues them after %.0f s",
                    self.worker_id, self.settings.worker_heartbeat_ttl_s)
        return 1

    def _deregister(self) -> bool:
        try:
            return self.queue.deregister()
        except redis.RedisError as exc:
            log.warning("could not deregister: %s", exc)
            return False

    def _loop(self) -> bool:
        """Collect batches on this thread while writer threads write the previous ones (in parallel)."""
        threads = [threading.Thread(target=self._write_loop, args=(w,), name=f"writer-{i}", daemon=True)
                   for i, w in enumerate(self.writers)]
        for thread in threads:
            thread.start()
        slot = 0
        try:
            while not self._stopping.is_set():
                if not self._wait_slot(slot):
                    break
                batch = self._collect_retrying(slot)
                if batch:
                    self._slot_free[slot].clear()
                    self._batches.put(SlotBatch(slot, batch, *decode_batch(batch)))
                    slot = (slot + 1) % len(self._slot_free)
        finally:
            for _ in threads:
                self._batches.put(None)
            for thread in threads:
                thread.join()
        return not self._writer_failed.is_set()

    def _wait_slot(self, slot: int) -> bool:
        """Wait until the slot's previous batch is acknowledged; False if the writer gave up."""
        while not self._slot_free[slot].wait(0.5):
            if self._writer_failed.is_set():
                return False
        return True

    # ------------------------------------------------------------------ batches

    def _collect_retrying(self, slot: int) -> list[bytes]:
        backoff = self._backoff()
        while True:
            try:
                return self._collect(slot)
            except redis.RedisError as exc:
                # Items already moved stay in the slot's list: they are either written later or reclaimed.
                if self._stopping.is_set():
                    return []
                delay = backoff.next_delay()
                log.warning("Redis failed (%s); retrying in %.1f s", exc, delay)
                self._stopping.wait(delay)

    def _collect(self, slot: int) -> list[bytes]:
        """Take events until the batch is full or its oldest event waited WORKER_BATCH_WAIT_MS."""
        size, wait_s = self.settings.worker_batch_size, self.settings.worker_batch_wait_ms / 1000
        # Items a Redis failure left in the slot (taken, but the reply lost) belong to this batch.
        batch: list[bytes] = list(self.redis.lrange(self.queue.processing[slot], 0, -1))  # type: ignore[arg-type]
        deadline: float | None = time.monotonic() + wait_s if batch else None
        while len(batch) < size and not self._stopping.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            got = self.queue.take(size - len(batch), slot)
            if not got:
                # Block briefly so an idle worker costs nothing yet still notices SIGTERM within a second.
                timeout = 1.0 if deadline is None else min(1.0, deadline - now)
                item = self.queue.take_blocking(timeout, slot)
                got = [item] if item is not None else []
                if not got and deadline is None:
                    return batch
            if got and deadline is None:
                deadline = time.monotonic() + wait_s
            batch.extend(got)
        return batch

    def _write_loop(self, writer: BatchWriter) -> None:
        """Writer thread: takes batches, writes and acknowledges each; the first writer also does maintenance."""
        try:
            while True:
                if writer is self.writers[0]:
                    self._maintain(writer)
                try:
                    batch = self._batches.get(timeout=5.0)
                except queue.Empty:
                    continue
                if batch is None:
                    return
                if not self._flush(writer, batch):
                    self._writer_failed.set()
                    return
                self._slot_free[batch.slot].set()
        except Exception:
            log.exception("writer failed; stopping (events in flight are re-queued by other workers)")
            self._writer_failed.set()
        finally:
            if self._writer_failed.is_set():
                self._stopping.set()

    def _flush(self, writer: BatchWriter, batch: SlotBatch) -> bool:
        """Write and acknowledge one batch, retrying through Postgres failures; False if given up on stop."""
        backoff = self._backoff()
        give_up_at: float | None = None
        while True:
            started = time.perf_counter()
            try:
                result = writer.write(batch.entries)
                break
            except TransientError as exc:
                self.metrics.failures.labels("transient").inc()
                if self._stopping.is_set():
                    give_up_at = give_up_at or time.monotonic() + self.settings.worker_shutdown_timeout_s
                    if time.monotonic() >= give_up_at:
                        return False
                delay = backoff.next_delay()
                log.warning("writing %d events failed (%s); retrying in %.1f s", len(batch.entries), exc, delay)
                time.sleep(delay)
                if not self._schema_ready:
                    self._maintain(writer, force=True)  # the failure may be the missing table of a first start
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        dead = batch.dead + result.dead
        self._ack(batch.slot, dead)
        self.metrics.batch_size.observe(len(batch.items))
        self.metrics.inserted.inc(result.inserted)
        self.metrics.duplicates.inc(result.duplicates + batch.duplicates)
        self.metrics.dead_letters.inc(len(dead))
        return True

    def _ack(self, slot: int, dead: list[DeadItem]) -> None:
        """Acknowledge, retrying while Redis is away (DEL of the slot is idempotent)."""
        backoff = self._backoff()
        while True:
            try:
                self.queue.ack(slot, dead)
                return
            except redis.RedisError as exc:
                delay = backoff.next_delay()
                log.warning("acknowledging a batch failed (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)

    def _backoff(self) -> Backoff:
        # Jittered, so workers cut off together do not all come back in the same instant.
        return Backoff(self.settings.worker_backoff_initial_s, self.settings.worker_backoff_max_s, jitter=0.2)

    # ------------------------------------------------------------------ side duties

    def _maintain(self, writer: BatchWriter, force: bool = False) -> None:
        """Create partitions ahead and apply retention, at start and then every WORKER_MAINTENANCE_INTERVAL_S."""
        if not force and time.monotonic() < self._next_maintenance:
            return
        try:
            conn = writer.connection()
            pgstore.ensure_schema(conn, self.settings.worker_table,
                                  days_ahead=self.settings.worker_partition_days_ahead)
            if self.settings.worker_retention_days:
                dropped = pgstore.drop_old_partitions(conn, self.settings.worker_table,
                                                      retention_days=self.settings.worker_retention_days)
                if dropped:
                    log.info("retention dropped partitions %s", ", ".join(dropped))
            self._next_maintenance = time.monotonic() + self.settings.worker_maintenance_interval_s
            self._schema_ready = True
        except Exception as exc:  # noqa: BLE001  # maintenance must never stop the draining
            writer.close()
            log.warning("partition maintenance failed (%s); retrying in 60 s", exc)
            self._next_maintenance = time.monotonic() + min(60.0, self.settings.worker_maintenance_interval_s)

    def _heartbeat_once(self) -> None:
        self.queue.heartbeat(self.settings.worker_heartbeat_ttl_s, {"pid": os.getpid(), "host": socket.gethostname()})
        self.metrics.queue_depth.set(self.queue.depth())
        self.metrics.processing_depth.set(self.queue.processing_depth())

    def _reclaim(self) -> None:
        moved = self.queue.reclaim_dead_workers()
        if moved:
            log.warning("re-queued %d events from dead workers", moved)
            self.metrics.reclaimed.inc(moved)

    def _heartbeat_loop(self) -> None:
        """Heartbeat and reclaim on their own thread, so a long Postgres outage does not look like death."""
        next_reclaim = time.monotonic() + self.settings.worker_reclaim_interval_s
        # Keeps beating after SIGTERM while the last batch is retried; stops when run() returns.
        while not self.done.wait(self.settings.worker_heartbeat_s):
            try:
                self._heartbeat_once()
                if not self._stopping.is_set() and time.monotonic() >= next_reclaim:
                    self._reclaim()
                    next_reclaim = time.monotonic() + self.settings.worker_reclaim_interval_s
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
