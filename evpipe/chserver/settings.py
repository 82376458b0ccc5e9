"""ClickHouseServerSettings: every knob of `evpipe clickhouse serve`, read from environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from evpipe.settings import LogSettings, StateSettings


class ClickHouseServerSettings(StateSettings, LogSettings):
    clickhouse_http_host: str = Field("127.0.0.1", description="Interface the HTTP interface listens on.")
    clickhouse_http_port: int = Field(8123, ge=0, le=65535, description="Port of the HTTP interface (and /metrics).")
    clickhouse_data_dir: Path | None = Field(
        None, description="The engine's data directory. Empty: <EVPIPE_STATE_DIR>/clickhouse."
    )
    clickhouse_users: str = Field(
        "", description="Users as name:password:role entries, comma-separated; role is admin or readonly "
        "(readonly: SELECT, SHOW, DESCRIBE, EXPLAIN only). The password-less user 'default' (admin) is "
        "allowed from loopback addresses unless an entry names 'default'.",
    )
    clickhouse_readonly_max_execution_time: float = Field(
        30.0, gt=0, description="Longest a readonly user's statement may run (seconds): the engine runs one "
        "statement at a time, so this also bounds how long an insert waits behind an analyst's query.",
    )
    clickhouse_max_body_bytes: int = Field(
        1024**3, ge=1024, description="Largest request body, after decompression (streamed to disk, never "
        "held in memory whole).",
    )
    clickhouse_tmp_dir: Path | None = Field(
        None, description="Where request bodies are spooled. Empty: <data dir>/tmp."
    )

    def data_dir(self) -> Path:
        return (self.clickhouse_data_dir or self.evpipe_state_dir / "clickhouse").resolve()

    def tmp_dir(self) -> Path:
        return (self.clickhouse_tmp_dir or self.data_dir() / "tmp").resolve()
