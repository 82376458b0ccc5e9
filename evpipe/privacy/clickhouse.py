"""The privacy tables on ClickHouse: ``privacy_suppressions`` and ``privacy_requests``.

Both are ReplacingMergeTree tables read without FINAL: the list is read with
DISTINCT, a request with its highest version, so a row written twice (a rerun)
changes nothing. They live in ``CLICKHOUSE_DATABASE`` next to ``events``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from evpipe.privacy.store import PrivacyStoreError
from evpipe.privacy.subjects import Subject, SuppressionSet

_MISSING = ("UNKNOWN_TABLE", "UNKNOWN_DATABASE", "Code: 60", "Code: 81")


class ClickHousePrivacyStore:
    name = "clickhouse"

    def __init__(self, url: str, database: str, timeout_s: float = 10.0, client: Client | None = None,
                 cluster: str = "") -> None:
        self.url = url
        self.database = database
        self.cluster = cluster
        self.timeout_s = timeout_s
        self._client = client
        self._lock = threading.Lock()  # one request at a time on the shared HTTP client

    def _table(self, name: str) -> str:
        return f"`{self.database}`.`{name}`"

    def _connected(self) -> Client:
        if self._client is None:
            from evpipe.clickhouse import connect

            self._client = connect(self.url, self.timeout_s)
        return self._client

    def _query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return [tuple(row) for row in self._connected().query(sql, parameters=parameters).result_rows]
        except ClickHouseError as exc:
            if any(mark in str(exc) for mark in _MISSING):
                return []
            raise PrivacyStoreError(f"ClickHouse privacy tables: {str(exc).splitlines()[0][:300]}") from None
        except OSError as exc:
            raise PrivacyStoreError(f"ClickHouse unreachable: {exc}") from None

    def _command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        try:
            with self._lock:
                self._connected().command(sql, parameters=parameters)
        except (ClickHouseError, OSError) as exc:
            raise PrivacyStoreError(f"ClickHouse privacy tables: {str(exc).splitlines()[0][:300]}") from None

    def ensure(self) -> None:
        on = f" ON CLUSTER '{self.cluster}'" if self.cluster else ""
        self._command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`{on}")
        self._command(
            f"CREATE TABLE IF NOT EXISTS {self._table('privacy_suppressions')}{on} "
            "(kind LowCardinality(String), value String, source_id String, request_id String, "
            f"added_at DateTime64(3, 'UTC')) ENGINE = {self._engine('privacy_suppressions', 'added_at')} "
            "ORDER BY (kind, value, source_id)")
        self._command(
            f"CREATE TABLE IF NOT EXISTS {self._table('privacy_requests')}{on} "
            "(request_id String, version UInt64, document String) "
            f"ENGINE = {self._engine('privacy_requests', 'version')} ORDER BY request_id")

    def _engine(self, table: str, version: str) -> str:
        """One node: ReplacingMergeTree. A cluster: one replicated table on every node of every shard (a Keeper
        path without {shard}), so any node a process reaches holds the whole list and ledger."""
        if not self.cluster:
            return f"ReplacingMergeTree({version})"
        path = f"'/clickhouse/tables/privacy/{{database}}/{table}'"
        return f"ReplicatedReplacingMergeTree({path}, '{{shard}}-{{replica}}', {version})"

    def suppressions(self) -> SuppressionSet:
        rows = self._query(f"SELECT DISTINCT kind, value, source_id FROM {self._table('privacy_suppressions')}")
        return SuppressionSet(Subject(kind, value, source) for kind, value, source in rows)

    def suppress(self, subject: Subject, request_id: str) -> None:
        self._command(
            f"INSERT INTO {self._table('privacy_suppressions')} (kind, value, source_id, request_id, added_at) "
            "VALUES ({k:String}, {v:String}, {s:String}, {r:String}, now64(3))",
            {"k": subject.kind, "v": subject.value, "s": subject.source, "r": request_id})

    def save(self, request_id: str, document: dict[str, Any]) -> None:
        self._command(
            f"INSERT INTO {self._table('privacy_requests')} (request_id, version, document) "
            "VALUES ({r:String}, {v:UInt64}, {d:String})",
            {"r": request_id, "v": time.time_ns(), "d": orjson.dumps(document).decode()})

    def load(self, request_id: str) -> dict[str, Any] | None:
        rows = self._query(
            f"SELECT document FROM {self._table('privacy_requests')} WHERE request_id = {{r:String}} "
            "ORDER BY version DESC LIMIT 1", {"r": request_id})
        return orjson.loads(rows[0][0]) if rows else None

    def requests(self) -> list[dict[str, Any]]:
        rows = self._query(
            f"SELECT argMax(document, version) FROM {self._table('privacy_requests')} GROUP BY request_id")
        documents = [orjson.loads(row[0]) for row in rows]
        return sorted(documents, key=lambda d: d.get("requested_at", ""), reverse=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
