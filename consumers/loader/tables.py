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

Two topologies (``CLICKHOUSE_CLUSTER``, see :class:`Topology`): one node, where
the DDL above runs as it is (also on ClickHouse Cloud), or a named cluster, where
each table is a Replicated ``<name>_local`` on every node with a Distributed
``<name>`` over them, so readers and writers keep using the plain names.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from schemas.clickhouse import clickhouse_add_column, clickhouse_create_table
from schemas.fields import FIELDS, Field

DEDUP_WINDOW_BLOCKS = 10_000  # insert tokens remembered per table (hours of batches)

# Distributed sharding keys, by plain table name. One event_id always lands on one
# shard (events and event_ids alike), so the loader's anti-join against event_ids
# and ReplacingMergeTree's collapsing both see every copy of an id. The ledgers keep
# all rows of one sorting key together, so FINAL / DISTINCT over them stay exact.
SHARDING_KEYS: dict[str, str] = {
    "events": "cityHash64(event_id)",
    "event_ids": "cityHash64(event_id)",
    "events_per_minute": "cityHash64(source_id, type)",
    "loader_batches": "cityHash64(topic, partition)",
    "schema_migrations": "0",  # a handful of rows: the whole ledger on the first shard
}


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
class Topology:
    """Where the tables live: one node (``cluster`` empty) or the named cluster.

    One node: plain MergeTree engines with ``non_replicated_deduplication_window``.
    The same DDL runs on ClickHouse Cloud, which creates every MergeTree-family
    table as its SharedMergeTree counterpart by itself; the window is a MergeTree
    setting, so the statement stays valid there, and Shared tables deduplicate
    tokened inserts on their own, as Replicated ones do.

    Cluster: every statement runs ``ON CLUSTER``; rows live in Replicated
    ``<name>_local`` tables (Keeper path by ``{shard}``, replica by ``{replica}``
    macros, ``replicated_deduplication_window`` in place of the non-replicated
    one), and ``<name>`` is a Distributed table over them.
    """

    cluster: str = ""

    @property
    def clustered(self) -> bool:
        return bool(self.cluster)

    @property
    def on_cluster(self) -> str:
        """The clause to splice after a name in CREATE / ALTER; empty on one node."""
        return f" ON CLUSTER {_literal(self.cluster)}" if self.cluster else ""

    @property
    def dedup_window(self) -> str:
        kind = "replicated" if self.cluster else "non_replicated"
        return f"{kind}_deduplication_window = {DEDUP_WINDOW_BLOCKS}"

    def storage(self, table: str) -> str:
        """The table holding the rows: the Distributed name's local table on a cluster."""
        return f"{table}_local" if self.cluster else table

    def engine(self, family: str, table: str, args: str = "") -> str:
        """``family`` (e.g. ``ReplacingMergeTree``) with ``args``, Replicated on a cluster."""
        if not self.cluster:
            return f"{family}({args})" if args else family
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{self.storage(table)}'"
        return f"Replicated{family}({path}, '{{replica}}'{', ' + args if args else ''})"

    def distributed(self, tables: Tables, table: str) -> str:
        """CREATE of the Distributed ``table`` over its local tables (cluster only)."""
        local = self.storage(table)
        return (
            f"CREATE TABLE IF NOT EXISTS {tables.name(table)}{self.on_cluster} AS {tables.name(local)}\n"
            f"ENGINE = Distributed({_literal(self.cluster)}, {_literal(tables.database)}, "
            f"{_literal(local)}, {SHARDING_KEYS[table]})"
        )


@dataclass(frozen=True)
class Migration:
    id: str
    statement: str


def ledger_statements(tables: Tables, cluster: str = "") -> list[str]:
    """The database and the migration ledger, created before any migration runs."""
    topo = Topology(cluster)
    ledger = (
        f"CREATE TABLE IF NOT EXISTS {tables.name(topo.storage('schema_migrations'))}{topo.on_cluster} "
        "(id String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3), statement String)\n"
        f"ENGINE = {topo.engine('ReplacingMergeTree', 'schema_migrations', 'applied_at')} ORDER BY id"
    )
    statements = [f"CREATE DATABASE IF NOT EXISTS `{tables.database}`{topo.on_cluster}", ledger]
    if topo.clustered:
        statements.append(topo.distributed(tables, "schema_migrations"))
    return statements


def base_migrations(
    tables: Tables, fields: tuple[Field, ...], dedup_days: int, cluster: str = ""
) -> list[Migration]:
    """The tables every loader needs, in dependency order."""
    topo = Topology(cluster)
    return [
        *_stored(tables, topo, "events", _events(tables, topo, fields)),
        *_stored(tables, topo, "event_ids", _event_ids(tables, topo, dedup_days)),
        *_stored(tables, topo, "events_per_minute", _rollup(tables, topo)),
        Migration("create events_per_minute_mv", _rollup_view(tables, topo)),
        *_stored(tables, topo, "loader_batches", _batches(tables, topo)),
    ]


def view_migrations(tables: Tables, fields: tuple[Field, ...], cluster: str = "") -> list[Migration]:
    """Analysts' views over optional columns: run after the column migrations, once those columns exist."""
    if "violations" not in {f.name for f in fields}:
        return []
    return [Migration("create plan_violations_per_hour", _violations_view(tables, Topology(cluster)))]


def _violations_view(tables: Tables, topo: Topology) -> str:
    # A plain view (computed when read) over the events table analysts query (the Distributed one on a
    # cluster): tagged events are few, and a query's WHERE on hour and source_id reaches the scan.
    return (
        f"CREATE VIEW IF NOT EXISTS {tables.name('plan_violations_per_hour')}{topo.on_cluster} AS "
        "SELECT toStartOfHour(received_at) AS hour, source_id, type, arrayJoin(violations) AS violation, "
        f"count() AS events FROM {tables.name('events')} WHERE notEmpty(violations) "
        "GROUP BY hour, source_id, type, violation"
    )


def _stored(tables: Tables, topo: Topology, table: str, create: str) -> list[Migration]:
    """The storage table's CREATE, plus on a cluster the Distributed table over it."""
    if not topo.clustered:
        return [Migration(f"create {table}", create)]
    return [
        Migration(f"create {topo.storage(table)}", create),
        Migration(f"create {table}", topo.distributed(tables, table)),
    ]


def _events(tables: Tables, topo: Topology, fields: tuple[Field, ...]) -> str:
    return clickhouse_create_table(
        tables.name(topo.storage("events")), fields, engine=topo.engine("MergeTree", "events"),
        settings=topo.dedup_window, on_cluster=topo.on_cluster,
    )


def _event_ids(tables: Tables, topo: Topology, dedup_days: int) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {tables.name(topo.storage('event_ids'))}{topo.on_cluster} "
        "(event_id UUID, received_at DateTime64(3, 'UTC'))\n"
        f"ENGINE = {topo.engine('ReplacingMergeTree', 'event_ids')}\n"
        "PARTITION BY toYYYYMMDD(received_at)\nORDER BY event_id\n"
        f"TTL toDateTime(received_at) + INTERVAL {dedup_days} DAY\n"
        f"SETTINGS {topo.dedup_window}, ttl_only_drop_parts = 1"
    )


def _rollup(tables: Tables, topo: Topology) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {tables.name(topo.storage('events_per_minute'))}{topo.on_cluster} "
        "(source_id LowCardinality(String), type LowCardinality(String), "
        "minute DateTime('UTC'), events UInt64)\n"
        f"ENGINE = {topo.engine('SummingMergeTree', 'events_per_minute', 'events')}\n"
        "PARTITION BY toYYYYMM(minute)\nORDER BY (source_id, type, minute)\n"
        f"SETTINGS {topo.dedup_window}"
    )


def _rollup_view(tables: Tables, topo: Topology) -> str:
    # A view fires only for blocks inserted into its source on that node, and a
    # Distributed table stores nothing: on a cluster the view must watch each node's
    # local events and write the local rollup (a partial sum per shard; sum() adds them).
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {tables.name('events_per_minute_mv')}{topo.on_cluster} "
        f"TO {tables.name(topo.storage('events_per_minute'))} AS "
        "SELECT source_id, type, toStartOfMinute(received_at) AS minute, count() AS events "
        f"FROM {tables.name(topo.storage('events'))} GROUP BY source_id, type, minute"
    )


def _batches(tables: Tables, topo: Topology) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {tables.name(topo.storage('loader_batches'))}{topo.on_cluster} "
        "(topic LowCardinality(String), partition UInt32, first_offset Int64, last_offset Int64, "
        "begun_at DateTime64(3, 'UTC'))\n"
        f"ENGINE = {topo.engine('ReplacingMergeTree', 'loader_batches', 'begun_at')}\n"
        "ORDER BY (topic, partition, first_offset)\n"
        "TTL toDateTime(begun_at) + INTERVAL 7 DAY"
    )


def migrate(
    client: Client, database: str, fields: tuple[Field, ...] = FIELDS, dedup_days: int = 30, cluster: str = ""
) -> list[str]:
    """Create or migrate the loader's tables; returns the ids of migrations applied now.

    Safe to run from several loaders at once: every statement is IF NOT EXISTS,
    and the ledger is a ReplacingMergeTree keyed by migration id. ``cluster``:
    the ``CLICKHOUSE_CLUSTER`` setting (empty: one node, see :class:`Topology`).
    """
    tables = Tables(database)
    for statement in ledger_statements(tables, cluster):
        client.command(statement)
    done = applied(client, database)
    ran = []
    for migration in base_migrations(tables, fields, dedup_days, cluster):
        if migration.id not in done:
            _run(client, tables, migration, cluster)
            ran.append(migration.id)
    for migration in column_migrations(client, tables, fields, cluster):
        _run(client, tables, migration, cluster)
        ran.append(migration.id)
    for migration in view_migrations(tables, fields, cluster):  # after the columns they read
        if migration.id not in done:
            _run(client, tables, migration, cluster)
            ran.append(migration.id)
    ran += drop_embedded_stage_tables(client, tables)
    return ran


def drop_embedded_stage_tables(client: Client, tables: Tables) -> list[str]:
    """Drop the per-process ``_loader_stage_*`` Memory tables that loaders kept when they ran the engine
    in-process (before 0.2): empty after any restart, and no loader uses them any more."""
    names = [row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = {d:String} AND startsWith(name, '_loader_stage_')",
        parameters={"d": tables.database}).result_rows]
    for name in names:
        client.command(f"DROP TABLE IF EXISTS {tables.name(name)}")
    return [f"drop {name}" for name in names]


def column_migrations(
    client: Client, tables: Tables, fields: tuple[Field, ...], cluster: str = ""
) -> list[Migration]:
    """ADD COLUMN for each field the live events table lacks (additive evolution)."""
    existing = set(existing_columns(client, tables.database, "events"))
    return add_column_migrations(tables, [f for f in fields if f.name not in existing], cluster)


def add_column_migrations(tables: Tables, missing: list[Field], cluster: str = "") -> list[Migration]:
    """The ALTERs adding ``missing`` fields; on a cluster the local table, then the Distributed one.

    Local first: the Distributed table's columns are what ``column_migrations``
    checks, so a run cut short between the two repeats both (IF NOT EXISTS).
    """
    topo = Topology(cluster)
    names = [topo.storage("events"), "events"] if topo.clustered else ["events"]
    return [
        Migration(f"{name} add column {f.name}", clickhouse_add_column(tables.name(name), f, topo.on_cluster))
        for f in missing for name in names
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


def _run(client: Client, tables: Tables, migration: Migration, cluster: str = "") -> None:
    client.command(migration.statement)
    # Through a Distributed table an insert is queued and sent later by default;
    # waiting for the shard keeps the ledger readable by the next loader at once.
    settings = {"distributed_foreground_insert": 1} if cluster else None
    client.insert("schema_migrations", [[migration.id, migration.statement]],
                  column_names=["id", "statement"], database=tables.database, settings=settings)


def _literal(value: str) -> str:
    """A ClickHouse string literal (cluster and database names in engine arguments)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
