"""The privacy tables on Postgres, next to the events table: ``<table>_suppressions`` and ``<table>_privacy``.

For the events table ``events`` (or ``schema.events``) they are ``events_suppressions``
and ``events_privacy`` in the same schema. One connection per call: these are
read every few seconds at most, never on an event's path.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from evpipe.pgstore import TableNames
from evpipe.privacy.store import PrivacyStoreError
from evpipe.privacy.subjects import Subject, SuppressionSet


class PostgresPrivacyStore:
    name = "postgres"

    def __init__(self, url: str, table: str = "events", timeout_s: float = 10.0) -> None:
        self.url = url
        self.names = TableNames.parse(table)
        self.timeout_s = timeout_s

    @property
    def _suppressions(self) -> sql.Identifier:
        return self.names.ident("_suppressions")

    @property
    def _requests(self) -> sql.Identifier:
        return self.names.ident("_privacy")

    def _run(self, statement: sql.Composed, params: tuple[Any, ...] = (),
             missing_ok: bool = False) -> list[tuple[Any, ...]]:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s))) as conn:
                cur = conn.execute(statement, params)
                return cur.fetchall() if cur.description else []
        except psycopg.errors.UndefinedTable:
            if missing_ok:
                return []
            raise PrivacyStoreError("Postgres privacy tables are missing") from None
        except psycopg.Error as exc:
            raise PrivacyStoreError(f"Postgres privacy tables: {str(exc).splitlines()[0][:300]}") from None

    def ensure(self) -> None:
        self._run(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (kind text NOT NULL, value text NOT NULL, source_id text NOT NULL, "
            "request_id text NOT NULL, added_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (kind, value, source_id))").format(self._suppressions))
        self._run(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (request_id text PRIMARY KEY, document jsonb NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now())").format(self._requests))

    def suppressions(self) -> SuppressionSet:
        rows = self._run(sql.SQL("SELECT kind, value, source_id FROM {}").format(self._suppressions),
                         missing_ok=True)
        return SuppressionSet(Subject(kind, value, source) for kind, value, source in rows)

    def suppress(self, subject: Subject, request_id: str) -> None:
        self._run(sql.SQL("INSERT INTO {} (kind, value, source_id, request_id) VALUES (%s, %s, %s, %s) "
                          "ON CONFLICT DO NOTHING").format(self._suppressions),
                  (subject.kind, subject.value, subject.source, request_id))

    def save(self, request_id: str, document: dict[str, Any]) -> None:
        self._run(sql.SQL("INSERT INTO {} (request_id, document) VALUES (%s, %s) ON CONFLICT (request_id) "
                          "DO UPDATE SET document = EXCLUDED.document, updated_at = now()").format(self._requests),
                  (request_id, Jsonb(document, dumps=lambda d: orjson.dumps(d).decode())))

    def load(self, request_id: str) -> dict[str, Any] | None:
        rows = self._run(sql.SQL("SELECT document FROM {} WHERE request_id = %s").format(self._requests),
                         (request_id,), missing_ok=True)
        return rows[0][0] if rows else None

    def requests(self) -> list[dict[str, Any]]:
        rows = self._run(sql.SQL("SELECT document FROM {}").format(self._requests), missing_ok=True)
        return sorted((row[0] for row in rows), key=lambda d: d.get("requested_at", ""), reverse=True)

    def close(self) -> None:
        return None
