"""The Postgres events store shared by stage 1 (gateway inserts) and stage 2 (workers).

Layout, for a table ``events`` (optionally schema-qualified, ``myschema.events``):

* ``events``: the events, declaratively partitioned by day (UTC) on
  ``received_at``. Daily partitions ``events_pYYYYMMDD`` are created ahead;
  ``events_default`` catches anything outside them, so no event is ever refused
  for its timestamp.
* ``events_ids``: the idempotency ledger, ``event_id uuid PRIMARY KEY``. Postgres
  cannot enforce uniqueness of ``event_id`` alone across range partitions on
  ``received_at`` (a unique index there must include the partition key, and a
  client retry gets a new ``received_at``), so every insert first claims the id
  in this plain table with ``ON CONFLICT DO NOTHING`` and inserts into
  ``events`` only the rows it claimed, in the same transaction.

Retention drops whole daily partitions and the ledger rows of the same days;
an event re-delivered after its day was dropped is stored again (as new).
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql

from schemas.fields import FIELDS, Kind
from schemas.postgres import postgres_add_column, postgres_create_table

COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)
_RECEIVED_AT = COLUMNS.index("received_at")
_ROW = operator.itemgetter(*COLUMNS)
_PARTITION_SUFFIX = re.compile(r"_p(\d{8})$")
_STAGE_TABLE = "evpipe_stage"
_PG_ARRAY_TYPES: dict[Kind, str] = {
    Kind.UUID: "uuid[]", Kind.TEXT: "text[]", Kind.TIMESTAMP: "timestamptz[]",
    Kind.JSON_OBJECT: "jsonb[]", Kind.SMALLINT: "smallint[]", Kind.TEXT_LIST: "jsonb[]",
}
# Columns that are JSON arrays on the wire and jsonb in Postgres: passed as their JSON text.
_JSON_LISTS: tuple[int, ...] = tuple(i for i, f in enumerate(FIELDS) if f.kind is Kind.TEXT_LIST)


@dataclass(frozen=True)
class TableNames:
    """Quoted identifiers of the events table and the relations that belong to it."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, table: str) -> TableNames:
        parts = table.split(".")
        if len(parts) > 2 or not all(parts):
            raise ValueError(f"table must be 'name' or 'schema.name', got {table!r}")
        if len(parts[-1]) > 50:
            raise ValueError(f"table name {parts[-1]!r} is too long (max 50, partitions add a suffix)")
        return cls(parts[0] if len(parts) == 2 else None, parts[-1])

    def ident(self, suffix: str = "") -> sql.Identifier:
        name = self.name + suffix
        return sql.Identifier(self.schema, name) if self.schema else sql.Identifier(name)

    @property
    def events(self) -> sql.Identifier:
        return self.ident()

    @property
    def ledger(self) -> sql.Identifier:
        return self.ident("_ids")

    @property
    def default(self) -> sql.Identifier:
        return self.ident("_default")

    def partition(self, day: dt.date) -> sql.Identifier:
        return self.ident(f"_p{day:%Y%m%d}")

    @property
    def lock_key(self) -> str:
        return f"evpipe.pgstore:{self.schema or ''}.{self.name}"


# --------------------------------------------------------------------------- schema


def ensure_schema(conn: psycopg.Connection[Any], table: str = "events", *, days_ahead: int = 3) -> None:
    """Create the events table, its ledger, default partition and daily partitions (idempotent).

    Safe to call from many processes at once: DDL runs under a transaction-level
    advisory lock per table.
    """
    names = TableNames.parse(table)
    with conn.transaction():
        _lock(conn, names)
        conn.execute(postgres_create_table(names.events.as_string(conn)))
        _add_missing_columns(conn, names)
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT").format(
            names.default, names.events))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (event_id uuid PRIMARY KEY, received_at timestamptz NOT NULL)"
        ).format(names.ledger))
        # BRIN: the ledger is filled in roughly received_at order; retention deletes by that range.
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING brin (received_at)").format(
            sql.Identifier(names.name + "_ids_received_at"), names.ledger))
    ensure_partitions(conn, table, days_ahead=days_ahead)


def _add_missing_columns(conn: psycopg.Connection[Any], names: TableNames) -> None:
    """Additive evolution: a table created before an optional field was added gets its column.

    Only missing columns are altered: ALTER TABLE takes an exclusive lock even when IF NOT EXISTS finds the
    column, and this runs at every start."""
    existing = {row[0] for row in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        [names.events.as_string(conn)])}
    for f in FIELDS:
        if f.name not in existing:
            conn.execute(sql.SQL(postgres_add_column(names.events.as_string(conn), f)))


def ensure_partitions(
    conn: psycopg.Connection[Any], table: str = "events", *, days_ahead: int = 3, today: dt.date | None = None
) -> list[str]:
    """Create the daily partitions for today-1 .. today+days_ahead that are missing; returns their names."""
    names = TableNames.parse(table)
    today = today or dt.datetime.now(dt.UTC).date()
    wanted = [today + dt.timedelta(days=n) for n in range(-1, days_ahead + 1)]
    existing = set(partition_days(conn, table))
    created = []
    for day in wanted:
        if day not in existing:
            _create_partition(conn, names, day)
            created.append(f"{names.name}_p{day:%Y%m%d}")
    return created


def partition_days(conn: psycopg.Connection[Any], table: str = "events") -> list[dt.date]:
    """Days that have a daily partition (named ``<table>_pYYYYMMDD``), oldest first."""
    names = TableNames.parse(table)
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        (names.events.as_string(conn),),
    ).fetchall()
    days = []
    for (relname,) in rows:
        match = _PARTITION_SUFFIX.search(relname)
        if match and relname == f"{names.name}_p{match.group(1)}":
            days.append(dt.datetime.strptime(match.group(1), "%Y%m%d").date())
    return sorted(days)


def _create_partition(conn: psycopg.Connection[Any], names: TableNames, day: dt.date) -> None:
    """Create one day's partition, moving that day's rows out of the default partition first.

    ``CREATE TABLE ... PARTITION OF`` fails when the default partition already
    holds rows of the new range, so: create a plain table, move the rows, attach.
    """
    part = names.partition(day)
    start, end = _day_bounds(day)
    with conn.transaction():
        _lock(conn, names)
        if day in partition_days(conn, _table_text(names)):
            return  # another process created it while we waited for the lock
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            part, names.events))
        conn.execute(sql.SQL(
            "WITH moved AS (DELETE FROM {} WHERE received_at >= %s AND received_at < %s RETURNING *) "
            "INSERT INTO {} SELECT * FROM moved"
        ).format(names.default, part), (start, end))
        conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            names.events, part, sql.Literal(start), sql.Literal(end)))


def drop_old_partitions(
    conn: psycopg.Connection[Any], table: str = "events", *, retention_days: int, today: dt.date | None = None
) -> list[str]:
    """Drop daily partitions wholly older than ``retention_days`` and the same days' ledger and default rows."""
    if retention_days < 1:
        raise ValueError("retention_days must be >= 1")
    names = TableNames.parse(table)
    today = today or dt.datetime.now(dt.UTC).date()
    cutoff_day = today - dt.timedelta(days=retention_days)
    cutoff, _ = _day_bounds(cutoff_day)
    dropped = []
    with conn.transaction():
        _lock(conn, names)
        for day in partition_days(conn, table):
            if day < cutoff_day:
                conn.execute(sql.SQL("DROP TABLE {}").format(names.partition(day)))
                dropped.append(f"{names.name}_p{day:%Y%m%d}")
        conn.execute(sql.SQL("DELETE FROM {} WHERE received_at < %s").format(names.default), (cutoff,))
        conn.execute(sql.SQL("DELETE FROM {} WHERE received_at < %s").format(names.ledger), (cutoff,))
    return dropped


def _lock(conn: psycopg.Connection[Any], names: TableNames) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (names.lock_key,))


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def _table_text(names: TableNames) -> str:
    return f"{names.schema}.{names.name}" if names.schema else names.name


# --------------------------------------------------------------------------- rows


def event_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """One wire-format envelope as a row in ``COLUMNS`` order (text values; Postgres parses them)."""
    try:
        row: tuple[Any, ...] = _ROW(event)  # the wire format carries every field
    except KeyError:  # written before a field was added
        row = tuple(event.get(name) for name in COLUMNS)
    for i in _JSON_LISTS:
        if row[i] is not None:
            row = (*row[:i], orjson.dumps(row[i]).decode(), *row[i + 1:])
    return row


def unique_rows(events: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows of the events, keeping the first of each event_id (a batch may repeat a client retry)."""
    seen: dict[Any, tuple[Any, ...]] = {}
    for event in events:
        seen.setdefault(event.get("event_id"), event_row(event))
    return list(seen.values())


def _claim_and_insert(source: sql.Composable, names: TableNames) -> sql.Composed:
    """Insert into the ledger the ids of ``source`` not yet seen, then the rows of exactly those ids."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
    src_cols = sql.SQL(", ").join(sql.Identifier("s", c) for c in COLUMNS)
    return sql.SQL(
        "WITH src AS MATERIALIZED ({source}), "
        "claimed AS (INSERT INTO {ledger} (event_id, received_at) SELECT event_id, received_at FROM src "
        "ON CONFLICT (event_id) DO NOTHING RETURNING event_id) "
        "INSERT INTO {events} ({cols}) SELECT {src_cols} FROM src s JOIN claimed c ON c.event_id = s.event_id"
    ).format(source=source, ledger=names.ledger, events=names.events, cols=cols, src_cols=src_cols)


# --------------------------------------------------------------------------- stage 1: async, small batches


async def insert_events_async(
    conn: psycopg.AsyncConnection[Any], events: list[dict[str, Any]], table: str = "events"
) -> int:
    """Idempotently insert wire-format envelopes in one transaction; returns how many were new.

    Duplicates within ``events`` or already stored (by ``event_id``) are ignored.
    One round trip: the rows travel as one array parameter per column.
    """
    if not events:
        return 0
    names = TableNames.parse(table)
    rows = unique_rows(events)
    columns = list(zip(*rows))
    unnest = sql.SQL("SELECT * FROM unnest({params}) AS t({cols})").format(
        params=sql.SQL(", ").join(
            sql.SQL("%s::{}").format(sql.SQL(_PG_ARRAY_TYPES[f.kind])) for f in FIELDS),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
    )
    async with conn.transaction():
        cur = await conn.execute(_claim_and_insert(unnest, names), [list(col) for col in columns])
        return max(cur.rowcount, 0)


# --------------------------------------------------------------------------- stage 2: sync COPY, big batches


def insert_rows_copy(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]], table: str = "events") -> int:
    """Idempotently insert rows (``COLUMNS`` order, unique event_ids) with COPY; returns how many were new.

    One transaction. The common case, no id seen before, costs two COPYs: the
    ids into the ledger (under a savepoint), then the rows into the events
    table. If the ledger COPY hits a stored id (a re-delivery or a client
    retry; it waits for a concurrent writer of the same id to finish first),
    the savepoint is rolled back and the batch goes through the staging step:
    COPY into a temporary table, then one insert-select that claims ids with
    ON CONFLICT DO NOTHING and inserts exactly the claimed rows.
    """
    if not rows:
        return 0
    names = TableNames.parse(table)
    # Sorted ids: concurrent writers of overlapping batches lock ledger keys in one order (no deadlock).
    rows = sorted(rows, key=lambda row: row[0] or "")
    with conn.transaction():
        try:
            with conn.transaction():
                _copy(conn, names.ledger, ("event_id", "received_at"), ((r[0], r[_RECEIVED_AT]) for r in rows))
        except psycopg.errors.UniqueViolation:
            return _insert_via_staging(conn, names, rows)
        _copy(conn, names.events, COLUMNS, rows)
        return len(rows)


def _insert_via_staging(conn: psycopg.Connection[Any], names: TableNames, rows: Sequence[tuple[Any, ...]]) -> int:
    stage = sql.Identifier(_STAGE_TABLE)
    conn.execute(sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    ).format(stage, names.events))
    _copy(conn, stage, COLUMNS, rows)
    cur = conn.execute(_claim_and_insert(sql.SQL("SELECT * FROM {}").format(stage), names))
    return max(cur.rowcount, 0)


def _copy(conn: psycopg.Connection[Any], target: sql.Identifier, columns: Sequence[str],
          rows: Iterable[tuple[Any, ...]]) -> None:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, cols)) as copy:
        for row in rows:
            copy.write_row(row)


def insert_events(conn: psycopg.Connection[Any], events: Iterable[dict[str, Any]], table: str = "events") -> int:
    """Sync counterpart of :func:`insert_events_async` using the COPY path."""
    return insert_rows_copy(conn, unique_rows(events), table)


def copy_rows_raw(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]], table: str = "events") -> None:
    """Plain COPY into the events table, no dedup: the benchmark's raw baseline only."""
    with conn.transaction():
        _copy(conn, TableNames.parse(table).events, COLUMNS, rows)
