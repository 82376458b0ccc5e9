"""Prometheus metrics of the consumer runtime (evpipe_consumer_*), one object per consumer loop.

Nothing is registered at import: each process creates one registry at its
entry point (:func:`process_registry`), hands it to every metrics object it
builds, and serves it (:func:`serve`). Tests and benchmarks that run several
loops in one process give each its own registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector


class ConsumerMetrics:
    """Every metric the runtime updates, registered on ``registry`` (a new one when not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages = Counter("evpipe_consumer_messages", "Messages consumed from Kafka.", ["topic"], registry=r)
        self.committed = Counter("evpipe_consumer_committed_messages", "Messages whose offsets were committed.",
                                 ["topic"], registry=r)
        self.batches = Counter("evpipe_consumer_batches", "Batches written and committed.", ["topic"], registry=r)
        self.rows = Counter("evpipe_consumer_rows", "Valid events handed to the sink.", ["topic"], registry=r)
        self.dead_letters = Counter("evpipe_consumer_dead_letters", "Messages sent to the dead-letter topic.",
                                    ["topic"], registry=r)
        self.write_errors = Counter(
            "evpipe_consumer_write_errors",
            "Failed sink calls or commits (each is retried; the partition pauses meanwhile).", ["topic"], registry=r)
        self.lag = Gauge("evpipe_consumer_lag", "High watermark minus committed offset.", ["topic", "partition"],
                         registry=r)
        self.buffer_bytes = Gauge("evpipe_consumer_buffer_bytes", "Message bytes buffered and not yet written.",
                                  registry=r)
        self.paused = Gauge("evpipe_consumer_paused_partitions", "Partitions paused (sink failure or buffer cap).",
                            registry=r)
        self.live_backlog = Gauge(
            "evpipe_consumer_live_backlog",
            "Messages the live topics are behind (checked when a backfill lane exists).", registry=r)
        self.assigned = Gauge("evpipe_consumer_assigned_partitions", "Partitions assigned to this member.",
                              registry=r)
        self.suppressed = Counter(
            "evpipe_consumer_events_suppressed", "Events dropped before the sink because their user is on the "
            "privacy suppression list.", registry=r)
        self.suppression_age = Gauge(
            "evpipe_privacy_suppression_list_age_seconds", "Seconds since this process last read the privacy "
            "suppression list (normally below PRIVACY_REFRESH_S; absent when PRIVACY_STORE=off).", registry=r)
        self.write_seconds = Histogram(
            "evpipe_consumer_batch_write_seconds", "Time to begin and write one batch in the sink.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a partition's lag series once it is no longer ours (another member reports it)."""
        try:
            self.lag.remove(topic, str(partition))
        except KeyError:
            pass


def process_registry() -> CollectorRegistry:
    """The one registry of a consumer process, with the process/platform/gc collectors it always had."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve(registry: CollectorRegistry, port: int, setting: str = "METRICS_PORT") -> None:
    """Start the /metrics HTTP server for ``registry`` (port 0: disabled); ``setting`` names the port's variable."""
    if not port:
        return
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        raise SystemExit(f"configuration error: {setting} {port}: cannot serve /metrics ({exc}); "
                         "pick a free port, or 0 to turn metrics off") from None
