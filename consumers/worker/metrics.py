"""Prometheus metrics of the stage-2 worker (evpipe_worker_*).

Nothing is registered at import: the entry point creates the process's one
registry (``consumers.runtime.metrics.process_registry``) and serves it; tests
that run several workers in one process give each its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    """The evpipe_worker_* metrics, registered on ``registry`` (a new one when not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "evpipe_worker_queue_depth", "Events waiting in the Redis list (the scaling signal).", registry=r)
        self.processing_depth = Gauge(
            "evpipe_worker_processing_depth", "Events this worker has taken and not yet acknowledged.", registry=r)
        self.batch_size = Histogram(
            "evpipe_worker_batch_size", "Events per batch written to Postgres.", buckets=_BATCH_BUCKETS, registry=r)
        self.insert_seconds = Histogram(
            "evpipe_worker_insert_seconds", "Time to write one batch (COPY + dedup insert + commit).",
            buckets=_SECONDS_BUCKETS, registry=r)
        self.inserted = Counter("evpipe_worker_events_inserted_total", "Events newly stored.", registry=r)
        self.duplicates = Counter(
            "evpipe_worker_events_duplicate_total", "Events ignored because their event_id was already stored.",
            registry=r)
        self.dead_letters = Counter(
            "evpipe_worker_dead_letters_total", "Events moved to the dead-letter list.", registry=r)
        self.failures = Counter(
            "evpipe_worker_insert_failures_total", "Failed batch writes, by kind (transient: retried as a whole; "
            "item: an event Postgres rejects, isolated by bisection).", ["kind"], registry=r)
        self.reclaimed = Counter(
            "evpipe_worker_reclaimed_total", "Events re-queued from dead workers' processing lists.", registry=r)
