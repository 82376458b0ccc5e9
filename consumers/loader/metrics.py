"""Prometheus metrics of the loader's sink (lag and dead letters come from the consumer runtime)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class LoaderMetrics:
    """The evpipe_loader_* metrics, registered on ``registry`` (a new one when not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.batches = Counter("evpipe_loader_batches_total", "Batches written to ClickHouse.", registry=r)
        self.rows = Counter(
            "evpipe_loader_rows_total",
            "Rows handled by outcome: inserted, duplicate (event_id already loaded), rejected (dead-lettered).",
            ["outcome"], registry=r)
        self.insert_seconds = Histogram(
            "evpipe_loader_insert_seconds", "Time to write one batch to ClickHouse (stage, dedup, insert).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
