"""The stage-2 worker: the consumer loop over a Redis list source and a Postgres sink.

Composed from the runtime's parts (``consumers/runtime``), like the archiver
and the loader, with the worker's own three:

* ``source.RedisListSource``: the list, seen as ``WORKER_WRITERS + 1``
  partitions (processing slots); a committed offset trims a slot. Heartbeat
  and reclaim of dead workers run on the source's own thread;
* ``parse.RowParser``: JSON items into Postgres row tuples;
* ``sink.PostgresSink`` with ``sink.RedisDeadLetters``: COPY, idempotent by
  event id, on ``WORKER_WRITERS`` writer threads.

Guarantees (see ``queue.py`` for the Redis side): nothing is lost, since an
event leaves its processing slot only after the Postgres transaction holding
it committed, or after it was dead-lettered; nothing is stored twice, since a
batch re-delivered after a crash (or written by a worker presumed dead that
wakes up) hits the event_id ledger; Postgres failures are retried with the
loop's capped exponential backoff for as long as they last, the batch
waiting in its slot meanwhile.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import redis

from consumers.runtime.buffer import FlushPolicy
from consumers.runtime.commit import RetryPolicy
from consumers.runtime.config import LoopConfig
from consumers.runtime.loop import ConsumerLoop
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.suppress import suppressing
from consumers.worker.metrics import WorkerMetrics
from consumers.worker.parse import RowParser, filter_entries
from consumers.worker.queue import ReliableQueue
from consumers.worker.settings import WorkerSettings
from consumers.worker.sink import PostgresSink, RedisDeadLetters
from consumers.worker.source import RedisListSource
from evpipe.backoff import Backoff
from evpipe.privacy.open import open_privacy_store, suppression_cache

log = logging.getLogger(__name__)

# The loop's memory cap: far above what the slots can hold (slots x batch size), so it never pauses them.
_BUFFER_CAP_BYTES = 1 << 30


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def loop_config(settings: WorkerSettings) -> LoopConfig:
    s = settings
    return LoopConfig(
        flush=FlushPolicy(s.worker_batch_size, _BUFFER_CAP_BYTES, s.worker_batch_wait_ms / 1000),
        retry=RetryPolicy(s.worker_backoff_initial_s, s.worker_backoff_max_s),
        poll_messages=s.worker_batch_size,  # a backed-up list fills a batch in one round trip
        buffer_max_bytes=_BUFFER_CAP_BYTES,
        shutdown_timeout_s=s.worker_shutdown_timeout_s,
        write_threads=s.worker_writers,
    )


class Worker:
    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or default_worker_id()
        self.metrics = metrics or WorkerMetrics()
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=30, health_check_interval=30)
        # One processing slot per batch in flight: one per writer plus the one being collected.
        self.queue = ReliableQueue(self.redis, settings.redis_queue_key, self.worker_id,
                                   slots=settings.worker_writers + 1)
        self.source = RedisListSource(self.queue, settings.worker_batch_size, self.metrics,
                                      settings.worker_heartbeat_s, settings.worker_heartbeat_ttl_s,
                                      settings.worker_reclaim_interval_s,
                                      # jittered: workers cut off together do not all come back in one instant
                                      Backoff(settings.worker_backoff_initial_s, settings.worker_backoff_max_s, 0.2))
        dead_letters = RedisDeadLetters(self.queue, self.metrics)
        self.sink = PostgresSink(settings, self.worker_id, self.metrics, dead_letters)
        loop_metrics = ConsumerMetrics(self.metrics.registry)
        privacy = open_privacy_store(settings.privacy_store, "postgres", database_url=settings.database_url,
                                     postgres_table=settings.worker_table)
        parse = suppressing(RowParser(self.metrics), suppression_cache(privacy, settings), loop_metrics,
                            filter_entries)
        self.loop = ConsumerLoop(loop_config(settings), self.sink, self.worker_id, [self.queue.main],
                                 metrics=loop_metrics, source=self.source, dead_letters=dead_letters, parse=parse)
        self.exit_code: int | None = None  # set when run() returns: 0 clean, 1 events left for reclaim

    def stop(self) -> None:
        """Finish the batches in flight, commit them and return from :meth:`run` (safe from any thread)."""
        self.loop.stop()

    def run(self) -> None:
        """Run until :meth:`stop`; then ``exit_code`` is the process's exit code."""
        log.info("worker %s draining %s into %s", self.worker_id, self.queue.main, self.settings.worker_table)
        try:
            self.loop.run()
        finally:
            self.sink.close()
        if self.source.left_cleanly:
            log.info("worker %s stopped cleanly", self.worker_id)
            self.exit_code = 0
        else:
            log.warning("worker %s stopped with events in flight; another worker re-queues them after %.0f s",
                        self.worker_id, self.settings.worker_heartbeat_ttl_s)
            self.exit_code = 1
