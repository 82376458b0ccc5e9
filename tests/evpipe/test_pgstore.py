"""The shared Postgres store: DDL, partitions, retention, idempotent inserts (real Postgres)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

from evpipe import pgstore
from tests.consumers.worker.events import make_event
from tests.providers import Service


@pytest.fixture
def conn(postgres: Service) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        yield connection


def _count(conn: psycopg.Connection, relation: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]


def test_provider_is_real(postgres: Service) -> None:
    assert postgres.provider in ("env", "local:postgres") or postgres.provider.startswith("testcontainers:")


def test_ensure_schema_is_idempotent_and_creates_partitions(conn: psycopg.Connection, pg_schema: str) -> None:
    table = f"{pg_schema}.events"
    pgstore.ensure_schema(conn, table, days_ahead=2)
    pgstore.ensure_schema(conn, table, days_ahead=2)
    today = dt.datetime.now(dt.UTC).date()
    expected = [today + dt.timedelta(days=n) for n in range(-1, 3)]
    assert pgstore.partition_days(conn, table) == expected
    kinds = dict(conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s", (pg_schema,)).fetchall())
    assert kinds["events"] == "p"  # declaratively partitioned
    assert kinds["events_default"] == "r"
    assert kinds["events_ids"] == "r"


def test_copy_insert_is_idempotent(conn: psycopg.Connection, pg_schema: str) -> None:
    table = f"{pg_schema}.events"
    pgstore.ensure_schema(conn, table)
    events = [make_event(i) for i in range(300)]
    batch = events + events[:50]  # a client retry inside the batch
    assert pgstore.insert_events(conn, batch, table) == 300
    assert pgstore.insert_events(conn, events[100:], table) == 0
    assert _count(conn, table) == 300
    assert conn.execute(f"SELECT count(DISTINCT event_id) FROM {table}").fetchone()[0] == 300
    stored = conn.execute(f"SELECT properties->>'path', context->>'ip' FROM {table} WHERE event_id = %s",
                          (events[7]["event_id"],)).fetchone()
    assert stored == ("/p/7", "10.0.0.1")


def test_same_event_id_with_new_received_at_is_a_duplicate(conn: psycopg.Connection, pg_schema: str) -> None:
    """A client retry through the gateway gets a new received_at; it must still be ignored."""
    table = f"{pg_schema}.events"
    pgstore.ensure_schema(conn, table)
    first = make_event(1)
    retry = dict(first, received_at=make_event(1, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))[
        "received_at"])
    assert pgstore.insert_events(conn, [first], table) == 1
    assert pgstore.insert_events(conn, [retry], table) == 0
    assert _count(conn, table) == 1


def test_async_insert_is_idempotent(postgres: Service, pg_schema: str) -> None:
    table = f"{pg_schema}.events"
    with psycopg.connect(postgres.url, autocommit=True) as sync_conn:
        pgstore.ensure_schema(sync_conn, table)
    events = [make_event(i) for i in range(20)]

    async def scenario() -> tuple[int, int, int]:
        async with await psycopg.AsyncConnection.connect(postgres.url) as aconn:
            first = await pgstore.insert_events_async(aconn, events + events[:3], table)
            again = await pgstore.insert_events_async(aconn, events[10:], table)
            empty = await pgstore.insert_events_async(aconn, [], table)
            return first, again, empty

    assert asyncio.run(scenario()) == (20, 0, 0)
    with psycopg.connect(postgres.url) as sync_conn:
        assert _count(sync_conn, table) == 20
        # the sync COPY path sees the async path's ledger
        assert pgstore.insert_events(sync_conn, events, table) == 0


def test_far_past_and_future_events_go_to_default_then_move_into_new_partition(
    conn: psycopg.Connection, pg_schema: str
) -> None:
    table = f"{pg_schema}.events"
    pgstore.ensure_schema(conn, table, days_ahead=1)
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=20)
    old = dt.datetime(2001, 5, 5, 12, tzinfo=dt.UTC)
    assert pgstore.insert_events(conn, [make_event(1, far), make_event(2, old)], table) == 2
    assert _count(conn, f"{pg_schema}.events_default") == 2
    # creating the partition of a day the default partition holds rows of moves them
    created = pgstore.ensure_partitions(conn, table, days_ahead=1, today=far.date())
    assert f"events_p{far:%Y%m%d}" in created
    assert _count(conn, f"{pg_schema}.events_p{far:%Y%m%d}") == 1
    assert _count(conn, f"{pg_schema}.events_default") == 1
    assert _count(conn, table) == 2


def test_retention_drops_old_partitions_and_ledger_rows(conn: psycopg.Connection, pg_schema: str) -> None:
    table = f"{pg_schema}.events"
    today = dt.datetime.now(dt.UTC).date()
    pgstore.ensure_schema(conn, table, days_ahead=1)
    old_day = today - dt.timedelta(days=10)
    pgstore.ensure_partitions(conn, table, days_ahead=0, today=old_day)
    old_moment = dt.datetime(old_day.year, old_day.month, old_day.day, 6, tzinfo=dt.UTC)
    old_event, new_event = make_event(1, old_moment), make_event(2)
    assert pgstore.insert_events(conn, [old_event, new_event], table) == 2
    dropped = pgstore.drop_old_partitions(conn, table, retention_days=5)
    assert f"events_p{old_day:%Y%m%d}" in dropped
    assert all(day >= today - dt.timedelta(days=5) for day in pgstore.partition_days(conn, table))
    assert _count(conn, table) == 1
    assert _count(conn, f"{pg_schema}.events_ids") == 1
    with pytest.raises(ValueError):
        pgstore.drop_old_partitions(conn, table, retention_days=0)


def test_concurrent_ensure_schema(postgres: Service, pg_schema: str) -> None:
    """Several workers starting at once must not trip over each other's DDL."""
    from concurrent.futures import ThreadPoolExecutor

    table = f"{pg_schema}.events"

    def ensure(_: int) -> None:
        with psycopg.connect(postgres.url, autocommit=True) as c:
            pgstore.ensure_schema(c, table)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ensure, range(4)))
    with psycopg.connect(postgres.url) as c:
        assert len(pgstore.partition_days(c, table)) == 5


def test_table_name_validation() -> None:
    with pytest.raises(ValueError):
        pgstore.TableNames.parse("a.b.c")
    with pytest.raises(ValueError):
        pgstore.TableNames.parse("x" * 60)
    assert pgstore.TableNames.parse("s.events").schema == "s"
