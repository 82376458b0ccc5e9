"""The loader's DDL in its two topologies: one node (also ClickHouse Cloud) and a named cluster.

The single-node DDL is pinned to the text the loader has always run and runs
against the test ClickHouse here. Cluster DDL cannot run here: the test server
is one node without Keeper, so no ``ON CLUSTER`` and no Replicated table would
succeed. Its statements are checked as text, replayed through ``migrate`` with a
recording client, and parsed by the real engine with ``formatQuery`` (syntax
only: engine arguments and macros are resolved at CREATE time on a cluster).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from consumers.loader.tables import (
    Tables,
    add_column_migrations,
    base_migrations,
    existing_columns,
    ledger_statements,
    migrate,
    view_migrations,
)
from evpipe.clickhouse import connect
from schemas.clickhouse import clickhouse_create_table
from schemas.fields import FIELDS, Field, Kind, Origin
from tests.providers import Service

TABLES = Tables("evpipe")
STORED = ("events", "event_ids", "events_per_minute", "loader_batches", "schema_migrations")
CAMPAIGN = Field("campaign", Kind.TEXT, False, Origin.CLIENT, "A new optional field.")
# A fixed envelope, so the pinned text below does not move when FIELDS grows.
PINNED_FIELDS = (
    Field("event_id", Kind.UUID, True, Origin.CLIENT_OR_GATEWAY, "id"),
    Field("type", Kind.TEXT, True, Origin.CLIENT, "type", low_cardinality=True),
    Field("source_id", Kind.TEXT, True, Origin.GATEWAY, "source", low_cardinality=True),
    Field("received_at", Kind.TIMESTAMP, True, Origin.GATEWAY, "received"),
)

# base_migrations' output before cluster mode existed (captured from that code).
SINGLE_NODE = [
    ("create events", """CREATE TABLE IF NOT EXISTS `evpipe`.`events` (
    `event_id` UUID,
    `type` LowCardinality(String),
    `source_id` LowCardinality(String),
    `received_at` DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (source_id, type, received_at, event_id)
SETTINGS non_replicated_deduplication_window = 10000"""),
    ("create event_ids", """CREATE TABLE IF NOT EXISTS `evpipe`.`event_ids` (event_id UUID, received_at DateTime64(3, 'UTC'))
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY event_id
TTL toDateTime(received_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1"""),
    ("create events_per_minute", """CREATE TABLE IF NOT EXISTS `evpipe`.`events_per_minute` \
(source_id LowCardinality(String), type LowCardinality(String), minute DateTime('UTC'), events UInt64)
ENGINE = SummingMergeTree(events)
PARTITION BY toYYYYMM(minute)
ORDER BY (source_id, type, minute)
SETTINGS non_replicated_deduplication_window = 10000"""),
    ("create events_per_minute_mv", (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `evpipe`.`events_per_minute_mv` "
        "TO `evpipe`.`events_per_minute` AS SELECT source_id, type, toStartOfMinute(received_at) AS minute, "
        "count() AS events FROM `evpipe`.`events` GROUP BY source_id, type, minute"
    )),
    ("create loader_batches", """CREATE TABLE IF NOT EXISTS `evpipe`.`loader_batches` \
(topic LowCardinality(String), partition UInt32, first_offset Int64, last_offset Int64, begun_at DateTime64(3, 'UTC'))
ENGINE = ReplacingMergeTree(begun_at)
ORDER BY (topic, partition, first_offset)
TTL toDateTime(begun_at) + INTERVAL 7 DAY"""),
]
SINGLE_NODE_LEDGER = [
    "CREATE DATABASE IF NOT EXISTS `evpipe`",
    (
        "CREATE TABLE IF NOT EXISTS `evpipe`.`schema_migrations` "
        "(id String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3), statement String)\n"
        "ENGINE = ReplacingMergeTree(applied_at) ORDER BY id"
    ),
]


def single_node_statements() -> list[str]:
    migrations = base_migrations(TABLES, FIELDS, 30)
    return [*ledger_statements(TABLES), *(m.statement for m in migrations)]


def cluster_statements(cluster: str = "c") -> list[str]:
    migrations = [*base_migrations(TABLES, FIELDS, 30, cluster), *add_column_migrations(TABLES, [CAMPAIGN], cluster)]
    return [*ledger_statements(TABLES, cluster), *(m.statement for m in migrations)]


def create_of(table: str, cluster: str = "c") -> str:
    """The CREATE of ``table`` (a qualified-name prefix match) among the cluster statements."""
    prefix = re.compile(rf"CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS `evpipe`\.`{table}`[ (]")
    [statement] = [s for s in cluster_statements(cluster) if prefix.match(s)]
    return statement


# --- one node (and ClickHouse Cloud) ------------------------------------------------------------


def test_single_node_ddl_is_unchanged() -> None:
    got = [(m.id, m.statement) for m in base_migrations(TABLES, PINNED_FIELDS, 30)]
    assert got == SINGLE_NODE
    assert ledger_statements(TABLES) == SINGLE_NODE_LEDGER
    assert base_migrations(TABLES, FIELDS, 30, "") == base_migrations(TABLES, FIELDS, 30)


def test_single_node_events_come_from_the_shared_schema() -> None:
    [events] = [m for m in base_migrations(TABLES, FIELDS, 30) if m.id == "create events"]
    assert events.statement == clickhouse_create_table(
        TABLES.events, FIELDS, settings="non_replicated_deduplication_window = 10000")


def test_single_node_ddl_also_suits_clickhouse_cloud() -> None:
    """Cloud makes every MergeTree a SharedMergeTree itself: the DDL must name neither clusters nor replicas."""
    for statement in single_node_statements():
        assert "ON CLUSTER" not in statement
        assert "Replicated" not in statement and "Distributed" not in statement
        assert "{shard}" not in statement and "_local" not in statement
    [add] = add_column_migrations(TABLES, [CAMPAIGN])
    assert add.statement == "ALTER TABLE `evpipe`.`events` ADD COLUMN IF NOT EXISTS `campaign` Nullable(String)"


# --- a named cluster: text ------------------------------------------------------------------------


def test_every_cluster_statement_runs_on_the_cluster() -> None:
    statements = cluster_statements()
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS `evpipe` ON CLUSTER 'c'"
    for statement in statements:
        assert re.match(r"(CREATE|ALTER) [^(]*? ON CLUSTER 'c'($|[ \n])", statement), statement


@pytest.mark.parametrize("table", STORED)
def test_cluster_stores_rows_in_replicated_local_tables(table: str) -> None:
    statement = create_of(f"{table}_local")
    path = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}_local', '{{replica}}'"
    assert re.search(rf"ENGINE = Replicated\w*MergeTree\({re.escape(path)}", statement), statement
    assert "non_replicated_deduplication_window" not in statement


def test_cluster_engines_keep_their_arguments_and_replicated_window() -> None:
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}')\n" \
        in create_of("events_local")
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/loader_batches_local', " \
        "'{replica}', begun_at)" in create_of("loader_batches_local")
    assert "', '{replica}', events)" in create_of("events_per_minute_local")
    assert "', '{replica}', applied_at)" in create_of("schema_migrations_local")
    for table in ("events", "event_ids", "events_per_minute"):
        assert "replicated_deduplication_window = 10000" in create_of(f"{table}_local")
    assert "ttl_only_drop_parts = 1" in create_of("event_ids_local")


@pytest.mark.parametrize(("table", "key"), [
    ("events", "cityHash64(event_id)"),
    ("event_ids", "cityHash64(event_id)"),  # one id on one shard: the dedupe anti-join holds per shard
    ("events_per_minute", "cityHash64(source_id, type)"),
    ("loader_batches", "cityHash64(topic, partition)"),
    ("schema_migrations", "0"),
])
def test_plain_names_are_distributed_tables_over_the_local_ones(table: str, key: str) -> None:
    assert create_of(table) == (
        f"CREATE TABLE IF NOT EXISTS `evpipe`.`{table}` ON CLUSTER 'c' AS `evpipe`.`{table}_local`\n"
        f"ENGINE = Distributed('c', 'evpipe', '{table}_local', {key})"
    )


def test_cluster_rollup_view_reads_and_writes_local_tables() -> None:
    view = create_of("events_per_minute_mv")
    assert " TO `evpipe`.`events_per_minute_local` AS SELECT " in view
    assert " FROM `evpipe`.`events_local` GROUP BY " in view


def test_cluster_local_tables_exist_before_what_reads_them() -> None:
    ids = [m.id for m in base_migrations(TABLES, FIELDS, 30, "c")]
    assert ids.index("create events_local") < ids.index("create events") < ids.index("create events_per_minute_mv")
    assert ids.index("create events_per_minute_local") < ids.index("create events_per_minute_mv")


def test_cluster_column_migration_alters_local_then_distributed() -> None:
    got = [(m.id, m.statement) for m in add_column_migrations(TABLES, [CAMPAIGN], "c")]
    assert got == [
        ("events_local add column campaign",
         "ALTER TABLE `evpipe`.`events_local` ON CLUSTER 'c' ADD COLUMN IF NOT EXISTS `campaign` Nullable(String)"),
        ("events add column campaign",
         "ALTER TABLE `evpipe`.`events` ON CLUSTER 'c' ADD COLUMN IF NOT EXISTS `campaign` Nullable(String)"),
    ]


def test_cluster_name_is_quoted_as_a_literal() -> None:
    statement = create_of("events", cluster="it's")
    assert "ON CLUSTER 'it\\'s'" in statement and "Distributed('it\\'s', 'evpipe'" in statement


class RecordingClient:
    """Stands in for a cluster's client: records DDL and ledger inserts, reports an empty database."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.inserts: list[tuple[str, list[list[Any]], dict[str, Any]]] = []

    def command(self, statement: str) -> None:
        self.commands.append(statement)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return type("Result", (), {"result_rows": []})()

    def insert(self, table: str, rows: list[list[Any]], **kwargs: Any) -> None:
        self.inserts.append((table, rows, kwargs))


def test_migrate_in_cluster_mode_runs_the_cluster_ddl() -> None:
    client = RecordingClient()
    ran = migrate(client, "evpipe", FIELDS, 30, cluster="c")  # type: ignore[arg-type]
    expected = [m.id for m in base_migrations(TABLES, FIELDS, 30, "c")]
    expected += [m.id for m in add_column_migrations(TABLES, list(FIELDS), "c")]  # "no columns yet"
    expected += [m.id for m in view_migrations(TABLES, FIELDS, "c")]
    assert ran == expected
    assert client.commands[:3] == ledger_statements(TABLES, "c")
    assert all(" ON CLUSTER 'c'" in c for c in client.commands)
    # The ledger goes through its Distributed table, written synchronously so the next reader sees it.
    assert {table for table, _, _ in client.inserts} == {"schema_migrations"}
    assert all(kw["settings"] == {"distributed_foreground_insert": 1} for _, _, kw in client.inserts)


# --- the real engine ----------------------------------------------------------------------------


@pytest.fixture
def client(clickhouse: Service) -> Iterator[Client]:
    c = connect(clickhouse.url)
    yield c
    c.close()


def format_query(client: Client, statement: str) -> str:
    return str(client.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0])


def test_cluster_statements_parse(client: Client) -> None:
    for statement in cluster_statements():
        formatted = format_query(client, statement)  # raises on a syntax error
        assert "ON CLUSTER c" in formatted, formatted


def test_format_query_rejects_bad_ddl(client: Client) -> None:
    """The parse check above has teeth: the engine refuses a broken statement."""
    with pytest.raises(Exception, match="(?i)syntax"):
        format_query(client, "CREATE TABLE `evpipe`.`events` ON CLUSTER 'c' (event_id UUID")


def test_single_node_migrate_creates_the_tables_once(client: Client, ch_database: str) -> None:
    first = migrate(client, ch_database)
    assert first == [m.id for m in base_migrations(Tables(ch_database), FIELDS, 30)] + [
        "create plan_violations_per_hour"]
    assert migrate(client, ch_database) == []
    assert migrate(client, ch_database, cluster="") == []
    # A server on ClickHouse Cloud reports SharedMergeTree for the same DDL: compare the family.
    engines = {name: engine.removeprefix("Shared") for name, engine in client.query(
        "SELECT name, engine FROM system.tables WHERE database = {d:String}", parameters={"d": ch_database}
    ).result_rows}
    assert engines == {
        "events": "MergeTree", "event_ids": "ReplacingMergeTree", "events_per_minute": "SummingMergeTree",
        "events_per_minute_mv": "MaterializedView", "loader_batches": "ReplacingMergeTree",
        "schema_migrations": "ReplacingMergeTree", "plan_violations_per_hour": "View",
    }
    assert existing_columns(client, ch_database, "events") == [f.name for f in FIELDS]


def test_single_node_migrate_adds_a_new_field(client: Client, ch_database: str) -> None:
    migrate(client, ch_database)
    assert migrate(client, ch_database, (*FIELDS, CAMPAIGN)) == ["events add column campaign"]
    assert existing_columns(client, ch_database, "events")[-1] == "campaign"
    assert migrate(client, ch_database, (*FIELDS, CAMPAIGN)) == []
