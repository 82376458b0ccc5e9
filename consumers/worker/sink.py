"""The worker's sink: batches of row tuples into Postgres, idempotently by event id, from several threads.

It keeps the runtime's sink contract (``consumers/runtime/sink.py``) the
simple way: every insert is idempotent through the event_id ledger, so it
records no batch boundaries (``pending_end`` is always None) and a batch
re-formed differently after a crash stores nothing twice. It is thread-safe:
each writer thread has its own Postgres connection (``BatchWriter``), so the
loop runs ``WORKER_WRITERS`` of them.

A transient failure (Postgres away, missing table...) raises: the loop keeps
the batch, pauses its slot and retries with backoff. Events Postgres keeps
rejecting are isolated by the writer and go to the dead-letter list before
``write`` returns, so before the commit.

Partition maintenance (partitions ahead, retention) runs on whichever writer
thread finds it due, at the first write and then every
``WORKER_MAINTENANCE_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from consumers.runtime.parse import Poison
from consumers.runtime.sink import Batch
from consumers.worker.metrics import WorkerMetrics
from consumers.worker.queue import DeadItem, ReliableQueue
from consumers.worker.settings import WorkerSettings
from consumers.worker.writer import BatchWriter, Entry, TransientError
from evpipe import pgstore

log = logging.getLogger(__name__)


class RedisDeadLetters:
    """The loop's dead-letter step for the worker: poison items go to the ``<queue>:dead`` list."""

    def __init__(self, queue: ReliableQueue, metrics: WorkerMetrics) -> None:
        self.queue = queue
        self.metrics = metrics

    def send(self, origin_topic: str, partition: int, poison: list[Poison]) -> None:
        self.store([DeadItem(p.value, p.error, 1) for p in poison])

    def store(self, dead: list[DeadItem]) -> None:
        if dead:
            self.queue.push_dead(dead)
            self.metrics.dead_letters.inc(len(dead))

    def close(self) -> None:
        pass


class PostgresSink:
    def __init__(self, settings: WorkerSettings, worker_id: str, metrics: WorkerMetrics,
                 dead_letters: RedisDeadLetters) -> None:
        self.settings = settings
        self.application_name = f"evpipe-worker-{worker_id}"[:63]
        self.metrics = metrics
        self.dead_letters = dead_letters
        self._local = threading.local()
        self._writers: list[BatchWriter] = []
        self._lock = threading.Lock()
        self._maintaining = threading.Lock()
        self._next_maintenance = 0.0
        self._schema_ready = False

    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        return None  # nothing to re-form: inserts are idempotent by event id

    def begin(self, batch: Batch[list[Entry]]) -> None:
        self._maintain_if_due()

    def write(self, batch: Batch[list[Entry]]) -> None:
        writer = self._writer()
        started = time.perf_counter()
        try:
            result = writer.write(batch.table)
        except TransientError:
            self.metrics.failures.labels("transient").inc()
            if not self._schema_ready:
                self._next_maintenance = 0.0  # the failure may be the missing table of a first start
            raise
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.dead_letters.store(result.dead)
        self.metrics.batch_size.observe(batch.num_rows)
        self.metrics.inserted.inc(result.inserted)
        self.metrics.duplicates.inc(result.duplicates)

    def close(self) -> None:
        with self._lock:
            for writer in self._writers:
                writer.close()

    def _writer(self) -> BatchWriter:
        writer: BatchWriter | None = getattr(self._local, "writer", None)
        if writer is None:
            s = self.settings
            writer = BatchWriter(s.database_url, s.worker_table, self.application_name,
                                 max_attempts=s.worker_max_attempts, retry_delay_s=s.worker_backoff_initial_s,
                                 retry_cap_s=s.worker_backoff_max_s)
            writer.on_item_failure = lambda: self.metrics.failures.labels("item").inc()
            self._local.writer = writer
            with self._lock:
                self._writers.append(writer)
        return writer

    def _maintain_if_due(self) -> None:
        """Create partitions ahead and apply retention; one thread at a time, the others write on (or wait,
        before the table exists)."""
        if time.monotonic() < self._next_maintenance:
            return
        if not self._maintaining.acquire(blocking=not self._schema_ready):
            return
        if self._schema_ready and time.monotonic() < self._next_maintenance:  # done while we waited
            self._maintaining.release()
            return
        try:
            self._maintain(self._writer())
        finally:
            self._maintaining.release()

    def _maintain(self, writer: BatchWriter) -> None:
        s = self.settings
        try:
            conn: Any = writer.connection()
            pgstore.ensure_schema(conn, s.worker_table, days_ahead=s.worker_partition_days_ahead)
            if s.worker_retention_days:
                dropped = pgstore.drop_old_partitions(conn, s.worker_table, retention_days=s.worker_retention_days)
                if dropped:
                    log.info("retention dropped partitions %s", ", ".join(dropped))
            self._next_maintenance = time.monotonic() + s.worker_maintenance_interval_s
            self._schema_ready = True
        except Exception as exc:  # noqa: BLE001  # maintenance must never stop the draining
            writer.close()
            log.warning("partition maintenance failed (%s); retrying in 60 s", exc)
            self._next_maintenance = time.monotonic() + min(60.0, s.worker_maintenance_interval_s)
