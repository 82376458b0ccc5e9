"""The tracking-plan `violations` field in Postgres (stages 1 and 2): a jsonb array, added to older tables."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from evpipe import pgstore
from schemas.fields import FIELDS
from schemas.postgres import postgres_create_table
from tests.consumers.worker.events import make_event
from tests.providers import Service

TAGGED = ["/properties/plan: expected string, got integer"]


@pytest.fixture
def conn(postgres: Service) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        yield connection


def test_an_older_table_gets_the_column_and_both_insert_paths_keep_the_list(
        postgres: Service, conn: psycopg.Connection, pg_schema: str) -> None:
    table = f"{pg_schema}.events"
    conn.execute(postgres_create_table(table, tuple(f for f in FIELDS if f.name != "violations")))
    pgstore.ensure_schema(conn, table)
    copied, clean, sent, plain = make_event(1), make_event(2), make_event(3), make_event(4)
    copied["violations"] = sent["violations"] = TAGGED
    assert pgstore.insert_rows_copy(conn, pgstore.unique_rows([copied, clean]), table) == 2

    async def insert() -> int:
        async with await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as aconn:
            return await pgstore.insert_events_async(aconn, [sent, plain], table)

    assert asyncio.run(insert()) == 2
    stored: dict[str, object] = dict(conn.execute(f"SELECT event_id::text, violations FROM {table}").fetchall())
    assert stored == {copied["event_id"]: TAGGED, clean["event_id"]: None, sent["event_id"]: TAGGED,
                      plain["event_id"]: None}
