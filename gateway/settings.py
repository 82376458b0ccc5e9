"""GatewaySettings: every knob of the gateway process, read from environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from evpipe.gctune import DEFAULT_GEN0_THRESHOLD
from evpipe.privacy.settings import PrivacySettings
from evpipe.settings import (
    ClickHouseSettings,
    KafkaSettings,
    LogSettings,
    PostgresSettings,
    RedisSettings,
    StateSettings,
)

DEV_API_KEYS = "dev-key=dev"


class GatewaySettings(KafkaSettings, RedisSettings, PostgresSettings, ClickHouseSettings, PrivacySettings, StateSettings,
                      LogSettings):
    gateway_backend: Literal["kafka", "redis", "postgres"] = Field(
        "kafka", description="Where accepted events go: kafka (stage 3), redis (stage 2) or postgres (stage 1)."
    )
    gateway_admin_keys: str = Field(
        "", description="Keys of the admin routes (/admin/privacy/...), comma-separated; never an ingest key. "
        "Empty: the admin routes answer 404.",
    )
    gateway_host: str = Field("127.0.0.1", description="Interface to listen on.")
    gateway_port: int = Field(8080, ge=0, le=65535, description="HTTP port (serves the API and /metrics).")
    gateway_api_keys: str = Field(
        DEV_API_KEYS,
        description="API keys as key=source_id pairs, comma-separated. The default is for local development "
        "only (a warning is logged): set this or GATEWAY_API_KEYS_FILE in production.",
    )
    gateway_api_keys_file: Path | None = Field(
        None, description="File with one key=source_id per line (# comments); merged with GATEWAY_API_KEYS."
    )
    gateway_max_body_bytes: int = Field(5 * 1024 * 1024, ge=1, description="Largest request body as sent (compressed).")
    gateway_max_decompressed_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest body after gzip decompression (a larger one is cut off: 413)."
    )
    gateway_max_inflight_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Request-body bytes all requests may hold at once; beyond it: 503 "
        "(parsed events take a few times their bytes in memory)."
    )
    gateway_max_event_bytes: int = Field(64 * 1024, ge=256, description="Largest single event (encoded envelope).")
    gateway_max_batch_events: int = Field(10_000, ge=1, description="Most events in one request.")
    gateway_rate_limit_events_per_s: float = Field(
        10_000.0, ge=0, description="Per-key token-bucket refill rate in events/s (0 disables rate limiting)."
    )
    gateway_rate_limit_burst: int = Field(100_000, ge=1, description="Per-key token-bucket size in events.")
    gateway_overflow_key_events_per_s: float = Field(
        1_000.0, ge=0, description="Overflow lane: events/s one partition key (source_id:user_id) may send to its "
        "partition, per gateway process; the rest go to KAFKA_OVERFLOW_TOPIC, spread (0: off)."
    )
    gateway_overflow_key_burst: int = Field(
        10_000, ge=1, description="Overflow lane: events a key may send at once before its rate applies."
    )
    gateway_overflow_top_keys: int = Field(
        10, ge=0, le=100, description="Overflow lane: the keys overflowing most, exported as a metric (0: none)."
    )
    gateway_cors_origins: str = Field(
        "*", description="Origins allowed to send from browsers, comma-separated ('*' = any, empty = no CORS)."
    )
    gateway_trusted_proxies: str = Field(
        "", description="Peers (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed for the client IP."
    )
    gateway_deadline_s: float = Field(
        5.0, gt=0, description="Longest a request waits for the backend before answering 503 with Retry-After."
    )
    gateway_delivery_poll_ms: float = Field(
        1.0, ge=0.1, le=50, description="Kafka backend: how often delivery reports are collected while requests wait "
        "for them. Lower answers sooner; each wake-up costs CPU whether reports came or not.",
    )
    gateway_max_queued_events: int = Field(
        100_000, ge=1, description="Events waiting for the backend across all requests; beyond it: 503 at once."
    )
    gateway_drain_s: float = Field(
        2.0, ge=0, description="On SIGTERM: seconds of failing readiness (new requests 503) before closing."
    )
    gateway_redis_max_queue: int = Field(
        1_000_000, ge=1, description="Redis backend: refuse (503) while the list holds more than this many events."
    )
    gateway_postgres_table: str = Field("events", description="Postgres backend: table events are inserted into.")
    gateway_postgres_pool_size: int = Field(4, ge=1, description="Postgres backend: connections in the pool.")
    gateway_gc_gen0_threshold: int = Field(
        DEFAULT_GEN0_THRESHOLD, ge=0,
        description="Python's young-generation GC threshold for this process (0: Python's default of 700); "
        "the default keeps the collector from walking the parsed bodies of every request in flight.",
    )
    # -- resource limits against strangers and slow clients ------------------------------------------
    gateway_head_timeout_s: float = Field(
        10.0, gt=0, description="Longest a client may take to send the request line and headers; then 408 and the "
        "connection is closed (also applies to an idle keep-alive connection's next request).",
    )
    gateway_body_timeout_s: float = Field(
        30.0, gt=0, description="Longest a client may take to send a request body after its headers; then 408 and "
        "the connection is closed.",
    )
    gateway_max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Largest single header line (name and value); a larger one is answered 431.",
    )
    gateway_max_head_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request head (request line and all headers); beyond it: 431.",
    )
    gateway_max_inflight_bytes_per_key: int = Field(
        32 * 1024 * 1024, ge=1, description="Request-body bytes the requests of one API key may hold at once; "
        "beyond it that key gets 429 while other keys go on.",
    )
    gateway_unauth_max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest (inflated) body of a request without a key in its headers (browser "
        "clients with writeKey in the body): read under this cap until the key is checked.",
    )
    gateway_unauth_max_inflight_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="Body bytes all requests without a header key may hold at once; "
        "beyond it: 503 for them only.",
    )
    gateway_max_kept_body_bytes: int = Field(
        64 * 1024, ge=0, description="How much of a rejected body (as sent on the wire) is kept in the invalid "
        "store, with its full size and SHA-256.",
    )
    # -- tracking plans (evpipe/plans, docs/tracking-plans.md) ---------------------------------------------
    gateway_tracking_plans: str = Field(
        "", description="Tracking-plan files (*.yaml, *.yml, *.json; one per source) in a directory or under "
        "s3://bucket/prefix: each event type's JSON Schema, checked per the plan's mode (enforce, tag, off). "
        "Empty: no plans, no checks.",
    )
    gateway_tracking_plans_reload_s: float = Field(
        5.0, gt=0, description="How often the gateway looks for changed plan files; a changed set that does not "
        "load is refused as a whole (logged, counted) and the plans in force stay.",
    )
    # -- the durable fallback for broker outages (gateway.fallback; Kafka backend only) ------------------
    gateway_fallback_uri: str | None = Field(
        None, description="Where requests go when Kafka does not take them within GATEWAY_DEADLINE_S (or the "
        "producer queue is full): s3://bucket/prefix (e.g. the archive bucket under fallback/), file:///path or a "
        "path; answered 2xx once that write is durable. Unset: <EVPIPE_STATE_DIR>/fallback on local disk. Set "
        "empty: no fallback (503 as without it).",
    )
    gateway_fallback_timeout_s: float = Field(
        5.0, gt=0, description="Longest a request waits for its fallback write (after the deadline); then 503.",
    )
    gateway_fallback_drain_interval_s: float = Field(
        5.0, ge=0, description="How often the gateway lists the fallback store and, while Kafka is ready, "
        "re-produces what it holds (0: this gateway neither drains nor reports the pending gauges; run "
        "`evpipe fallback drain`).",
    )
    gateway_fallback_lease_s: float = Field(
        60.0, gt=0, description="How long a drainer's claim on a stored object holds; a claim older than this "
        "(its drainer died) is taken over. Producing one object is given half of it.",
    )
    gateway_fallback_max_object_bytes: int = Field(
        16 * 1024 * 1024, ge=64 * 1024, description="Requests that fail over together share one stored object up "
        "to this size (a larger request gets an object of its own).",
    )
    s3_endpoint_url: str = Field("", description="S3 endpoint for non-AWS S3 (Ceph RGW, MinIO). Empty: AWS.")
    gateway_log_level: str = Field("info", description="Log level: debug, info, warning, error.")
