"""Settings of `evpipe loader`, from environment variables (`evpipe query` reads a subset)."""

from __future__ import annotations

from pydantic import Field

from consumers.runtime.settings import ConsumerSettings
from evpipe.plans.settings import PlanSettings
from evpipe.privacy.settings import PrivacySettings
from evpipe.settings import ClickHouseSettings, LogSettings, StateSettings


class LoaderSettings(StateSettings, ClickHouseSettings, ConsumerSettings, PrivacySettings, PlanSettings,
                     LogSettings):
    loader_group_id: str = Field("evpipe-loader", description="Kafka consumer group of the loaders.")
    loader_consume_replay: bool = Field(
        True, description="Also load KAFKA_REPLAY_TOPIC (backfills from the archive), not only KAFKA_TOPIC."
    )
    loader_dedup_days: int = Field(
        30, ge=1, description="Days an event_id is remembered: a client retry within this window counts once."
    )
    loader_admin_host: str = Field("0.0.0.0", description="Address of the /metrics and /healthz server.")
    loader_connect_wait_s: float = Field(
        60.0, ge=0, description="At start, how long to wait for ClickHouse to answer at CLICKHOUSE_URL."
    )
    # Runtime defaults re-tuned for ClickHouse: inserts of tens of thousands of rows about once a
    # second per partition keep parts few, and rows visible to analysts within seconds.
    # At most one ClickHouse block (max_insert_block_size): an insert then stores all of a batch or none.
    consumer_batch_max_messages: int = Field(
        50_000, ge=1, le=1_000_000, description="Rows per ClickHouse insert (per partition)."
    )
    consumer_batch_max_age_s: float = Field(
        1.0, gt=0, description="Insert a partition's batch when its oldest message waited this long."
    )
    metrics_port: int = Field(
        9310, ge=0, le=65535, description="Port of the admin server: /metrics and /healthz (0: any free port)."
    )
