"""Prometheus metrics of one ClickHouse server process (its own registry, passed in)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.statements = Counter("evpipe_clickhouse_statements", "Statements answered, by kind (select, "
                                  "insert, other) and outcome (ok or error).", ["kind", "outcome"], registry=r)
        self.errors = Counter("evpipe_clickhouse_errors", "Errors answered, by ClickHouse error code.",
                              ["code"], registry=r)
        self.rows_read = Counter("evpipe_clickhouse_rows_read", "Rows the engine read.", registry=r)
        self.rows_written = Counter("evpipe_clickhouse_rows_written", "Rows the engine wrote (inserts).",
                                    registry=r)
        self.latency = Histogram(
            "evpipe_clickhouse_request_seconds", "Time from a request's arrival to its answer (waiting for the "
            "engine included).", ["kind"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

    def observe(self, kind: str, code: int, seconds: float) -> None:
        self.statements.labels(kind, "error" if code else "ok").inc()
        if code:
            self.errors.labels(str(code)).inc()
        self.latency.labels(kind).observe(seconds)

    def rows(self, read: int, written: int) -> None:
        self.rows_read.inc(read)
        self.rows_written.inc(written)

    def render(self) -> bytes:
        return generate_latest(self.registry)
