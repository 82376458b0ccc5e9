"""On a ClickHouse cluster (CLICKHOUSE_CLUSTER): what the privacy tables and the eraser send (no cluster here)."""

from __future__ import annotations

from typing import Any

from consumers.privacy.clickhouse import ClickHouseEraser
from evpipe.privacy.clickhouse import ClickHousePrivacyStore
from evpipe.privacy.request import PrivacyRequest
from evpipe.privacy.subjects import Subject


class Recorder:
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.inserts: list[tuple[str, dict[str, Any]]] = []

    def command(self, sql: str, parameters: Any = None, settings: Any = None) -> None:
        self.commands.append(sql)

    def query(self, sql: str, parameters: Any = None) -> Any:
        rows = [["web", "t", "2026-11-21 10:00:00", 3]] if "GROUP BY" in sql else [[0]]
        return type("Result", (), {"result_rows": rows})()

    def insert(self, table: str, rows: Any, column_names: Any = None, settings: Any = None) -> None:
        self.inserts.append((table, settings))


def test_tables_are_replicated_to_every_node() -> None:
    client = Recorder()
    ClickHousePrivacyStore("http://x", "evpipe", client=client, cluster="main").ensure()  # type: ignore[arg-type]
    tables = [c for c in client.commands if c.startswith("CREATE TABLE")]
    assert all(" ON CLUSTER 'main' " in c for c in tables)
    assert all("ReplicatedReplacingMergeTree('/clickhouse/tables/privacy/{database}/" in c for c in tables)
    assert all("'{shard}-{replica}'" in c for c in tables)  # unique across shards: one table on every node


def test_eraser_deletes_on_every_local_table() -> None:
    client = Recorder()
    request = PrivacyRequest.new("delete", Subject("user_id", "A"), "test")
    ClickHouseEraser(client, "evpipe", "main").erase(request, lambda: None)  # type: ignore[arg-type]
    assert client.commands[0].startswith("DELETE FROM `evpipe`.`events_local` ON CLUSTER 'main' WHERE user_id")
    assert client.commands[1] == ("ALTER TABLE `evpipe`.`events_local` ON CLUSTER 'main' APPLY DELETED MASK "
                                  "IN PARTITION 202611")
    table, settings = client.inserts[0]
    assert table == "`evpipe`.`events_per_minute`" and settings["distributed_foreground_insert"] == 1
    assert request.step("clickhouse")["status"] == "done"


def test_one_node_statements_unchanged() -> None:
    client = Recorder()
    request = PrivacyRequest.new("delete", Subject("user_id", "A", "web"), "test")
    ClickHouseEraser(client, "evpipe").erase(request, lambda: None)  # type: ignore[arg-type]
    assert client.commands[0].startswith("DELETE FROM `evpipe`.`events` WHERE user_id = {value:String} AND source_id")
    assert "distributed_foreground_insert" not in client.inserts[0][1]
