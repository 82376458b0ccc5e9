"""Stage 1: insert straight into Postgres (evpipe.pgstore), idempotent by event_id.

A 2xx means the insert transaction committed. A client retry of the same
event_id is harmless: pgstore claims ids in its ledger with ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import sql

from evpipe.pgstore import ensure_schema, insert_events_async
from gateway.backends.base import Inflight, Record, Rejected, Unavailable, payload_text
from gateway.settings import GatewaySettings

log = logging.getLogger("evpipe.gateway.postgres")


def invalid_table(table: str) -> sql.Identifier:
    *schema, name = table.split(".")
    return sql.Identifier(*schema, f"{name}_invalid")


class PostgresBackend:
    name = "postgres"

    def __init__(self, settings: GatewaySettings) -> None:
        self.url = settings.database_url
        self.table = settings.gateway_postgres_table
        self.size = settings.gateway_postgres_pool_size
        self._idle: asyncio.Queue[psycopg.AsyncConnection[Any] | None] = asyncio.Queue()
        self.inflight = Inflight("postgres")

    async def start(self) -> None:
        await asyncio.to_thread(self._ensure_schema)
        for _ in range(self.size):
            self._idle.put_nowait(None)  # connected on first use, so a down database does not block start

    def _ensure_schema(self) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            ensure_schema(conn, self.table)
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (received_at timestamptz NOT NULL, source_id text NOT NULL, "
                "reason text NOT NULL, payload text NOT NULL)").format(invalid_table(self.table)))

    def queued(self) -> int:
        return self.inflight.count

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self._idle.get()
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=3)
            yield conn
        except BaseException:
            # After a timeout or error the session state is unknown: drop it, reconnect next time.
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            conn = None
            raise
        finally:
            self._idle.put_nowait(conn)

    async def send(self, records: list[Record], rejected: list[Rejected], deadline: float) -> None:
        if not records and not rejected:
            return
        try:
            async with self.inflight.within(len(records), deadline), self._connection() as conn:
                if records:
                    await insert_events_async(conn, [r.event for r in records], self.table)
                if rejected:
                    await self._keep_invalid(conn, rejected)
        except psycopg.Error as exc:
            raise Unavailable(f"postgres error: {str(exc).strip()[:200]}", 2, enqueued=True) from None
        if rejected:
            log.warning("kept %d invalid events in %s_invalid (first: index %d: %s)", len(rejected), self.table,
                        rejected[0].index, rejected[0].reason)

    async def _keep_invalid(self, conn: psycopg.AsyncConnection[Any], rejected: list[Rejected]) -> None:
        rows = [(r.received_at, r.source_id, r.reason, payload_text(r)) for r in rejected]
        async with conn.cursor() as cur:
            await cur.executemany(sql.SQL("INSERT INTO {} (received_at, source_id, reason, payload) "
                                          "VALUES (%s, %s, %s, %s)").format(invalid_table(self.table)), rows)

    async def ready(self) -> str | None:
        try:
            async with asyncio.timeout(2.0):
                async with self._connection() as conn:
                    await conn.execute("SELECT 1")
        except (TimeoutError, psycopg.Error, OSError) as exc:
            return f"postgres unreachable: {str(exc).strip()[:200] or 'timeout'}"
        return None

    async def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                await conn.close()
