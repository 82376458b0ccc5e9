"""Prometheus metrics of the consumer runtime (evpipe_consumer_*), shared by every sink."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

MESSAGES = Counter("evpipe_consumer_messages", "Messages consumed from Kafka.", ["topic"])
COMMITTED = Counter("evpipe_consumer_committed_messages", "Messages whose offsets were committed.", ["topic"])
BATCHES = Counter("evpipe_consumer_batches", "Batches written and committed.", ["topic"])
ROWS = Counter("evpipe_consumer_rows", "Valid events handed to the sink.", ["topic"])
DEAD_LETTERS = Counter("evpipe_consumer_dead_letters", "Messages sent to the dead-letter topic.", ["topic"])
WRITE_ERRORS = Counter("evpipe_consumer_write_errors", "Failed sink calls or commits (each is retried; the partition pauses meanwhile).", ["topic"])
LAG = Gauge("evpipe_consumer_lag", "High watermark minus committed offset.", ["topic", "partition"])
BUFFER_BYTES = Gauge("evpipe_consumer_buffer_bytes", "Message bytes buffered and not yet written.")
PAUSED = Gauge("evpipe_consumer_paused_partitions", "Partitions paused (sink failure or buffer cap).")
LIVE_BACKLOG = Gauge(
    "evpipe_consumer_live_backlog", "Messages the live topics are behind (checked when a backfill lane exists)."
)
ASSIGNED = Gauge("evpipe_consumer_assigned_partitions", "Partitions assigned to this member.")
WRITE_SECONDS = Histogram(
    "evpipe_consumer_batch_write_seconds", "Time to begin and write one batch in the sink.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

_started: set[int] = set()


def serve(port: int) -> None:
    """Start the /metrics HTTP server once per port (0: disabled)."""
    if port and port not in _started:
        try:
            start_http_server(port)
        except OSError as exc:
            raise SystemExit(f"configuration error: METRICS_PORT {port}: cannot serve /metrics ({exc}); "
                             "pick a free port, or 0 to turn metrics off") from None
        _started.add(port)
