"""Settings of `evpipe archiver` (environment variables)."""

from __future__ import annotations

from pydantic import Field

from consumers.archiver.dedup import DEFAULT_MAX_IDS, DEFAULT_WINDOW_S
from consumers.runtime.settings import ConsumerSettings
from evpipe.plans.settings import PlanSettings
from evpipe.privacy.settings import PrivacySettings
from evpipe.settings import ArchiveSettings, ClickHouseSettings, LogSettings, StateSettings


class ArchiverSettings(ConsumerSettings, ArchiveSettings, ClickHouseSettings, PrivacySettings, PlanSettings,
                       StateSettings, LogSettings):
    archiver_group: str = Field("evpipe-archiver", description="Consumer group id of the archivers.")
    # Batches are files: cut them large (tens of MB of Parquet), not every few seconds.
    consumer_batch_max_messages: int = Field(1_000_000, ge=1, description="Rotate a partition's file at this many events.")
    consumer_batch_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="Rotate a partition's file at this many bytes of raw JSON."
    )
    consumer_batch_max_age_s: float = Field(300.0, gt=0, description="Rotate a partition's file after this many seconds.")
    consumer_buffer_max_bytes: int = Field(
        768 * 1024 * 1024, ge=1024, description="Global cap on buffered raw bytes (pauses and flushes early over it)."
    )
    archiver_row_group_rows: int = Field(128 * 1024, ge=1000, description="Parquet row-group size in rows.")
    archiver_zstd_level: int = Field(3, ge=1, le=22, description="zstd compression level of the Parquet files.")
    archiver_dedup_window_s: float = Field(
        DEFAULT_WINDOW_S, ge=0, description="Drop resent copies of an event_id archived this many seconds before, "
        "in received_at time, per partition (0: keep every copy).")
    archiver_dedup_max_ids: int = Field(
        DEFAULT_MAX_IDS, ge=0, description="Event ids held per partition for that (~20 bytes each); past it the "
        "oldest batches fall out and the window is shorter.")
    archiver_stale_temp_s: float = Field(
        3600.0, gt=0, description="At start, delete temp files of interrupted local writes older than this.")
    s3_multipart_threshold_mb: int = Field(64, ge=5, description="Objects above this size upload in parts.")
    s3_timeout_s: float = Field(30.0, gt=0, description="S3 request timeout; a hung endpoint fails the write after it.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Port of the Prometheus /metrics server (0: off).")
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING.")
