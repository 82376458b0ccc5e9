"""Prometheus metrics of the archiver's sink (evpipe_archiver_*)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ArchiverMetrics:
    """The evpipe_archiver_* metrics, registered on ``registry`` (a new one when not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.rows = Counter("evpipe_archiver_rows", "Events written to Parquet files.", ["topic"], registry=r)
        self.bytes = Counter("evpipe_archiver_bytes", "Parquet bytes uploaded.", ["topic"], registry=r)
        self.files = Counter("evpipe_archiver_files", "Parquet files uploaded (rewrites of a retried batch included).",
                             ["topic"], registry=r)
        self.duplicates = Counter(
            "evpipe_archiver_duplicates",
            "Rows not archived: repeats of an event_id the partition archived within the window.", ["topic"],
            registry=r)
        self.dedup_ids = Gauge("evpipe_archiver_dedup_ids", "Event ids held in memory to find repeats, all partitions.",
                               registry=r)
        self.upload_seconds = Histogram(
            "evpipe_archiver_upload_seconds", "Time to upload one Parquet file.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
