"""Settings of `evpipe privacy`: where the events live (ClickHouse and the archive, or Postgres)."""

from __future__ import annotations

from pydantic import Field

from evpipe.privacy.settings import PrivacySettings
from evpipe.settings import (
    ArchiveSettings,
    ClickHouseSettings,
    KafkaSettings,
    LogSettings,
    PostgresSettings,
    StateSettings,
)


class PrivacyCommandSettings(StateSettings, ArchiveSettings, ClickHouseSettings, PostgresSettings, KafkaSettings,
                             PrivacySettings, LogSettings):
    privacy_postgres_table: str = Field(
        "events", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,49}(\.[A-Za-z_][A-Za-z0-9_]{0,49})?$",
        description="Stages 1-2: the Postgres events table (as WORKER_TABLE / GATEWAY_POSTGRES_TABLE).")
    privacy_settle_margin_s: float = Field(
        5.0, ge=0, description="A deletion waits PRIVACY_REFRESH_S plus this long after suppressing, so every "
        "process's copy of the list holds the subject before rows are erased.")
    archiver_zstd_level: int = Field(3, ge=1, le=22, description="zstd level of rewritten archive files.")
    archiver_row_group_rows: int = Field(128 * 1024, ge=1, description="Row group size of rewritten archive files.")
