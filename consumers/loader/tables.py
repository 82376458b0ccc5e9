"""The loader's ClickHouse tables, created and migrated idempotently at start-up.

* ``events``: MergeTree partitioned by month of ``received_at`` (few, large
  partitions: one insert touches one or two, so parts stay few) and ordered by
  ``(source_id, type, received_at, event_id)``, the filters analysts start with.
  ``non_replicated_deduplication_window`` makes a plain MergeTree honour
  ``insert_deduplication_token`` the way Replicated* tables do.
* ``event_ids``: every accepted event_id, ordered by event_id so the loader's
  anti-join on insert is an index lookup; rows expire after ``dedup_days``.
* ``events_per_minute``: a SummingMergeTree rollup by source and type, fed by
  a materialized view on ``events`` (query it with ``sum(events)``).
* ``loader_batches``: the ledger of begun batch ranges (``Sink.pending_end``).
* ``schema_migrations``: which migrations ran, when, and the statement.

Evolution is additive: a field added to ``schemas.fields.FIELDS`` becomes an
``ADD COLUMN IF NOT EXISTS`` on the live table, recorded in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from schemas.clickhouse import clickhouse_add_column, clickhouse_create_table
from schemas.fields import FIELDS, Field

DEDUP_WINDOW_BLOCKS = 10_000  # insert tokens remembered per table (hours of batches)


@dataclass(frozen=True)
class Tables:
    """Qualified names of the loader's tables in one database."""

    database: str

    def name(self, table: str) -> str:
        return f"`{self.database}`.`{table}`"

    @property
    def events(self) -> str:
        return self.name("events")

    @property
    def event_ids(self) -> str:
        return self.name("event_ids")

    @property
    def rollup(self) -> str:
        return self.name("events_per_minute")

    @property
    def batches(self) -> str:
        return self.name("loader_batches")

    @property
    def migrations(self) -> str:
        return self.name("schema_migrations")


@dataclass(frozen=True)
class Migration:
    id: str
    statement: str


def base_migrations(tables: Tables, fields: tuple[Field, ...], dedup_days: int) -> list[Migration]:
    """The tables every loader needs, in dependency order."""
    window = f"non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}"
    return [
        Migration("create events", clickhouse_create_table(tables.events, fields, settings=window)),
        Migration("create event_ids", (
            f"CREATE TABLE IF NOT EXISTS {tables.event_ids} "
            "(event_id UUID, received_at DateTime64(3, 'UTC'))\n"
            "ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMMDD(received_at)\nORDER BY event_id\n"
            f"TTL toDateTime(received_at) + INTERVAL {dedup_days} DAY\n"
            f"SETTINGS {window}, ttl_only_drop_parts = 1"
        )),
        Migration("create events_per_minute", (
            f"CREATE TABLE IF NOT EXISTS {tables.rollup} "
            "(source_id LowCardinality(String), type LowCardinality(String), "
            "minute DateTime('UTC'), events UInt64)\n"
            "ENGINE = SummingMergeTree(events)\nPARTITION BY toYYYYMM(minute)\nORDER BY (source_id, type, minute)\n"
            f"SETTINGS {window}"
        )),
        Migration("create events_per_minute_mv", (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {tables.name('events_per_minute_mv')} TO {tables.rollup} AS "
            "SELECT source_id, type, toStartOfMinute(received_at) AS minute, count() AS events "
            f"FROM {tables.events} GROUP BY source_id, type, minute"
        )),
        Migration("create loader_batches", (
            f"CREATE TABLE IF NOT EXISTS {tables.batches} "
            "(topic LowCardinality(String), partition UInt32, first_offset Int64, last_offset Int64, "
            "begun_at DateTime64(3, 'UTC'))\n"
            "ENGINE = ReplacingMergeTree(begun_at)\nORDER BY (topic, partition, first_offset)\n"
            "TTL toDateTime(begun_at) + INTERVAL 7 DAY"
        )),
    ]


def migrate(
    client: Client, database: str, fields: tuple[Field, ...] = FIELDS, dedup_days: int = 30
) -> list[str]:
    """Create or migrate the loader's tables; returns the ids of migrations applied now.

    Safe to run from several loaders at once: every statement is IF NOT EXISTS,
    and the ledger is a ReplacingMergeTree keyed by migration id.
    """
    tables = Tables(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {tables.migrations} "
        "(id String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3), statement String)\n"
        "ENGINE = ReplacingMergeTree(applied_at) ORDER BY id"
    )
    done = applied(client, database)
    ran = []
    for migration in base_migrations(tables, fields, dedup_days):
        if migration.id not in done:
            _run(client, tables, migration)
            ran.append(migration.id)
    for migration in column_migrations(client, tables, fields):
        _run(client, tables, migration)
        ran.append(migration.id)
    return ran


def column_migrations(client: Client, tables: Tables, fields: tuple[Field, ...]) -> list[Migration]:
    """ADD COLUMN for each field the live events table lacks (additive evolution)."""
    existing = set(existing_columns(client, tables.database, "events"))
    return [
        Migration(f"events add column {f.name}", clickhouse_add_column(tables.events, f))
        for f in fields if f.name not in existing
    ]


def existing_columns(client: Client, database: str, table: str) -> list[str]:
    result = client.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position",
        parameters={"db": database, "t": table},
    )
    return [row[0] for row in result.result_rows]


def applied(client: Client, database: str) -> set[str]:
    result = client.query(f"SELECT DISTINCT id FROM {Tables(database).migrations}")
    return {row[0] for row in result.result_rows}


def _run(client: Client, tables: Tables, migration: Migration) -> None:
    client.command(migration.statement)
    client.insert("schema_migrations", [[migration.id, migration.statement]],
                  column_names=["id", "statement"], database=tables.database)
