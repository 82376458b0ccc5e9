"""Build a process's privacy store from its settings: one function, called at the entry point."""

from __future__ import annotations

from typing import Literal

from evpipe.privacy.cache import SuppressionCache
from evpipe.privacy.settings import PrivacySettings
from evpipe.privacy.store import PrivacyStore

Stage = Literal["clickhouse", "postgres"]


def open_privacy_store(choice: str, default: Stage, *, clickhouse_url: str = "", clickhouse_database: str = "evpipe",
                       clickhouse_cluster: str = "", database_url: str = "",
                       postgres_table: str = "events") -> PrivacyStore | None:
    """The store named by PRIVACY_STORE (``auto``: the process's own stage's store), or None for ``off``."""
    kind = default if choice == "auto" else choice
    if kind == "off":
        return None
    if kind == "clickhouse":
        from evpipe.privacy.clickhouse import ClickHousePrivacyStore

        return ClickHousePrivacyStore(clickhouse_url, clickhouse_database, cluster=clickhouse_cluster)
    if kind == "postgres":
        from evpipe.privacy.postgres import PostgresPrivacyStore

        return PostgresPrivacyStore(database_url, postgres_table)
    raise ValueError(f"PRIVACY_STORE must be auto, clickhouse, postgres or off; got {choice!r}")


def suppression_cache(store: PrivacyStore | None, settings: PrivacySettings) -> SuppressionCache | None:
    """The process's cached suppression list (None when privacy is off)."""
    if store is None:
        return None
    return SuppressionCache(store, settings.privacy_refresh_s, settings.privacy_max_stale_s)
