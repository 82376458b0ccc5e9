"""The worker's settings: Redis and Postgres connections plus WORKER_* variables."""

from __future__ import annotations

from pydantic import Field, model_validator

from evpipe.privacy.settings import PrivacySettings
from evpipe.settings import LogSettings, PostgresSettings, RedisSettings


class WorkerSettings(RedisSettings, PostgresSettings, PrivacySettings, LogSettings):
    worker_table: str = Field(
        "events", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,49}(\.[A-Za-z_][A-Za-z0-9_]{0,49})?$",
        description="Events table, optionally schema-qualified (schema.events).")
    worker_id: str = Field("", description="Unique worker id. Empty: <hostname>-<pid>-<random>.")
    worker_batch_size: int = Field(5000, ge=1, le=100_000, description="Insert a batch at this many events...")
    worker_batch_wait_ms: int = Field(
        500, ge=1, description="...or when the oldest event of the batch has waited this long.")
    worker_writers: int = Field(
        2, ge=1, le=7, description="Postgres connections writing batches in parallel (batches in flight).")
    worker_max_attempts: int = Field(
        5, ge=1, description="Attempts for an event Postgres rejects before it goes to <REDIS_QUEUE_KEY>:dead.")
    worker_backoff_initial_s: float = Field(0.2, gt=0, description="First retry delay when Postgres fails.")
    worker_backoff_max_s: float = Field(10.0, gt=0, description="Cap of the exponential retry delay.")
    worker_heartbeat_s: float = Field(2.0, gt=0, description="How often the worker refreshes its heartbeat.")
    worker_heartbeat_ttl_s: float = Field(
        15.0, gt=0, description="A worker silent this long is dead; its in-flight events are re-queued.")
    worker_reclaim_interval_s: float = Field(5.0, gt=0, description="How often to look for dead workers.")
    worker_partition_days_ahead: int = Field(3, ge=0, description="Daily partitions created ahead of today.")
    worker_retention_days: int = Field(0, ge=0, description="Drop partitions older than this many days. 0: keep all.")
    worker_maintenance_interval_s: float = Field(
        3600.0, gt=0, description="How often to create partitions ahead and apply retention.")
    worker_shutdown_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, keep retrying the last batch this long, then leave it for reclaim.")
    worker_metrics_port: int = Field(9104, ge=0, le=65535, description="Prometheus /metrics port. 0: disabled.")

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> WorkerSettings:
        if self.worker_heartbeat_ttl_s < 2 * self.worker_heartbeat_s:
            raise ValueError("WORKER_HEARTBEAT_TTL_S must be at least twice WORKER_HEARTBEAT_S, "
                             "or live workers are taken for dead")
        return self
