"""Prometheus metrics of the loader (lag and dead letters come from the consumer runtime)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BATCHES = Counter("evpipe_loader_batches_total", "Batches written to ClickHouse.")
ROWS = Counter(
    "evpipe_loader_rows_total",
    "Rows handled by outcome: inserted, duplicate (event_id already loaded), rejected (dead-lettered).",
    ["outcome"],
)
INSERT_SECONDS = Histogram(
    "evpipe_loader_insert_seconds",
    "Time to write one batch to ClickHouse (stage, dedup, insert).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
