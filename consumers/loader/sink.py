"""ClickHouseSink: the loader's implementation of consumers.runtime.sink.Sink.

Exactly-once, in two layers:

1. **Kafka replays** (crash between insert and commit, rebalance): the runtime
   re-forms the same batch (``pending_end`` reads the ``loader_batches``
   ledger written by ``begin``), and the insert carries
   ``insert_deduplication_token = batch.identity``, so ClickHouse drops the
   repeated block (and does not push it to the rollup view again).
2. **Client retries** (same event_id at a new offset, the gateway's 5xx/timeout
   retry case) are removed on insert, against ``event_ids`` (every loaded id,
   ordered by event_id, so lookups use the index). Fast path, the common case:
   the batch's ids (one column) go into a per-process Memory table; if none
   repeats within the batch and none is in ``event_ids``, the batch is
   inserted as it is with ``insert_arrow``. Otherwise (slow path) the whole
   batch is staged in a Memory table and ``INSERT ... SELECT`` keeps the rows
   whose id is not in ``event_ids``, once each (``LIMIT 1 BY event_id``).
   ``count()`` is then right without FINAL; the price is the id probe per
   batch, an ``event_ids`` table (about 24 bytes per event before
   compression), and a window, ``LOADER_DEDUP_DAYS``: a retry after that
   counts twice.

``events`` is inserted before ``event_ids``: a crash between the two leaves the
ids absent, so the replay re-forms the same rows and the token drops them. The
other order could lose events.

Rows ClickHouse rejects (e.g. an event_id that is not a UUID) are isolated by
bisection on the slow path's stage insert, handed to ``dead_letter`` with the
error, and the batch goes on without them. A fast-path insert is one Arrow
record batch, so one block: it stores all rows or none, and a rejected one
sends the batch down the slow path with nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from consumers.loader import metrics
from consumers.loader.tables import Tables
from consumers.runtime.sink import Batch
from schemas.clickhouse import clickhouse_columns
from schemas.fields import FIELDS, Field

# (batch, rejected rows, their Kafka offsets, the error ClickHouse gave)
DeadLetter = Callable[[Batch, pa.Table, list[int], str], None]

# ClickHouse error codes that mean "this data cannot go in", as opposed to
# "the server is unavailable or overloaded" (which the runtime retries).
DATA_ERROR_CODES = frozenset({
    6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 376, 407, 1001,
})
_CODE = re.compile(r"Code: (\d+)")


class ClickHouseUnavailable(RuntimeError):
    """The injected outage (LOADER_FAIL_FILE exists): behaves like a down server."""


class UndeliverableRows(RuntimeError):
    """ClickHouse rejected rows and there is no dead-letter destination to keep them."""


def is_data_error(exc: BaseException) -> bool:
    codes = {int(code) for code in _CODE.findall(str(exc))}
    return isinstance(exc, DatabaseError) and bool(codes & DATA_ERROR_CODES)


class ClickHouseSink:
    def __init__(
        self,
        client: Client,
        database: str,
        fields: tuple[Field, ...] = FIELDS,
        dead_letter: DeadLetter | None = None,
        fail_file: Path | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.client = client
        self.tables = Tables(database)
        self.fields = fields
        self.dead_letter = dead_letter
        self.fail_file = fail_file
        # One ClickHouse client is not safe for concurrent use; the admin
        # server's /query shares it (and this lock) in embedded mode.
        self.lock = lock or threading.Lock()
        nonce = uuid.uuid4().hex[:12]
        self.stage = self.tables.name(f"_loader_stage_{nonce}")  # whole rows (slow path)
        self.ids = self.tables.name(f"_loader_stage_{nonce}_ids")  # event_ids of the batch (fast path)
        columns = ", ".join(f"`{name}` {ctype}" for name, ctype in clickhouse_columns(fields))
        with self.lock:
            self.client.command(f"CREATE TABLE IF NOT EXISTS {self.stage} ({columns}) ENGINE = Memory")
            self.client.command(
                f"CREATE TABLE IF NOT EXISTS {self.ids} (event_id UUID, received_at DateTime64(3, 'UTC')) "
                "ENGINE = Memory"
            )

    # -- Sink protocol -----------------------------------------------------

    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        self._check_available()
        with self.lock:
            result = self.client.query(
                f"SELECT last_offset FROM {self.tables.batches} WHERE topic = {{t:String}} "
                "AND partition = {p:UInt32} AND first_offset = {o:Int64} ORDER BY begun_at DESC LIMIT 1",
                parameters={"t": topic, "p": partition, "o": start_offset},
            )
        rows = result.result_rows
        return int(rows[0][0]) if rows else None

    def begin(self, batch: Batch) -> None:
        self._check_available()
        row = [batch.topic, batch.partition, batch.first_offset, batch.last_offset, dt.datetime.now(dt.UTC)]
        with self.lock:
            self.client.insert("loader_batches", [row], database=self.tables.database,
                               column_names=["topic", "partition", "first_offset", "last_offset", "begun_at"])

    def write(self, batch: Batch) -> None:
        self._check_available()
        started = time.perf_counter()
        with self.lock:
            inserted, duplicates, rejected = self._write(batch)
        metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCHES.inc()
        metrics.ROWS.labels("inserted").inc(inserted)
        metrics.ROWS.labels("duplicate").inc(duplicates)
        metrics.ROWS.labels("rejected").inc(rejected)

    # -- internals ---------------------------------------------------------

    @staticmethod
    def drop_stale_stages(client: Client, database: str) -> list[str]:
        """Drop every loader stage table in ``database`` (left by killed loaders).

        Only safe when no other loader can be using the database: the embedded
        engine at process start (its lock keeps other processes out).
        """
        names = [row[0] for row in client.query(
            "SELECT name FROM system.tables WHERE database = {d:String} AND startsWith(name, '_loader_stage_')",
            parameters={"d": database}).result_rows]
        for name in names:
            client.command(f"DROP TABLE IF EXISTS {Tables(database).name(name)}")
        return names

    def close(self) -> None:
        with self.lock:
            for table in (self.stage, self.ids):
                self.client.command(f"DROP TABLE IF EXISTS {table}")

    def _check_available(self) -> None:
        if self.fail_file is not None and self.fail_file.exists():
            raise ClickHouseUnavailable(f"injected outage: {self.fail_file} exists")

    def _write(self, batch: Batch) -> tuple[int, int, int]:
        """Returns (inserted, duplicate, rejected) row counts."""
        rows = self._columns(batch.table)
        if rows.num_rows == 0:
            return 0, 0, 0
        if self._only_new_ids(rows):
            try:
                return self._write_direct(batch, rows), 0, 0
            except DatabaseError as exc:
                if not is_data_error(exc):
                    raise
                # A row ClickHouse rejects: the one-block insert stored nothing; isolate it below.
        return self._write_staged(batch, rows)

    def _only_new_ids(self, rows: pa.Table) -> bool:
        """The common case, checked cheaply: no id repeats in the batch, and none was loaded before."""
        if pc.count_distinct(rows.column("event_id")).as_py() != rows.num_rows:
            return False
        self.client.command(f"TRUNCATE TABLE {self.ids}")
        try:
            self.client.insert_arrow(self.ids, rows.select(["event_id", "received_at"]))
        except DatabaseError as exc:
            if is_data_error(exc):
                return False  # an event_id that is not a UUID: the staged path isolates it
            raise
        known = self.client.query(
            f"SELECT count() FROM {self.tables.event_ids} WHERE event_id IN (SELECT event_id FROM {self.ids})"
        ).result_rows[0][0]
        return int(known) == 0

    def _write_direct(self, batch: Batch, rows: pa.Table) -> int:
        # One record batch is one block: the insert is atomic, and its token covers all of it.
        self.client.insert_arrow(self.tables.events, rows.combine_chunks(), settings=self._token(batch))
        # After events, never before: see the module docstring.
        self.client.command(f"INSERT INTO {self.tables.event_ids} (event_id, received_at) "
                            f"SELECT event_id, received_at FROM {self.ids}", settings=self._token(batch))
        return rows.num_rows

    def _write_staged(self, batch: Batch, rows: pa.Table) -> tuple[int, int, int]:
        """Stage the rows, dead-letter the rejected ones, insert those not loaded before (once each)."""
        self.client.command(f"TRUNCATE TABLE {self.stage}")
        rejected = self._stage_rows(rows, 0)
        for start, bad_rows, error in rejected:
            self._dead_letter(batch, bad_rows, batch.row_offsets(start, bad_rows.num_rows), error)
        n_rejected = sum(bad.num_rows for _, bad, _ in rejected)
        names = ", ".join(f"`{name}`" for name in rows.column_names)
        fresh = f"{self.stage} WHERE event_id NOT IN " \
                f"(SELECT event_id FROM {self.tables.event_ids} WHERE event_id IN (SELECT event_id FROM {self.stage}))"
        new = int(self.client.query(f"SELECT uniqExact(event_id) FROM {fresh}").result_rows[0][0])
        if new:
            self.client.command(
                f"INSERT INTO {self.tables.events} ({names}) SELECT {names} FROM {fresh} LIMIT 1 BY event_id",
                settings=self._token(batch),
            )
            self.client.command(
                f"INSERT INTO {self.tables.event_ids} (event_id, received_at) "
                f"SELECT event_id, received_at FROM {self.stage} LIMIT 1 BY event_id",
                settings=self._token(batch),
            )
        return new, rows.num_rows - n_rejected - new, n_rejected

    @staticmethod
    def _token(batch: Batch) -> dict[str, object]:
        return {"insert_deduplication_token": batch.identity, "insert_deduplicate": 1,
                "deduplicate_blocks_in_dependent_materialized_views": 1}

    def _columns(self, table: pa.Table) -> pa.Table:
        """The batch's columns this sink's schema knows, in schema order."""
        present = set(table.column_names)
        return table.select([f.name for f in self.fields if f.name in present])

    def _stage_rows(self, rows: pa.Table, start: int) -> list[tuple[int, pa.Table, str]]:
        """Insert rows into the stage; returns the rejected ones, isolated by bisection, with their index
        in the batch (``rows`` begins at row ``start``) and the error."""
        try:
            self.client.insert_arrow(self.stage, rows)
            return []
        except DatabaseError as exc:
            if not is_data_error(exc):
                raise
            if rows.num_rows == 1:
                return [(start, rows, _short(exc))]
        middle = rows.num_rows // 2
        return self._stage_rows(rows.slice(0, middle), start) + self._stage_rows(rows.slice(middle), start + middle)

    def _dead_letter(self, batch: Batch, rows: pa.Table, offsets: list[int], error: str) -> None:
        if self.dead_letter is None:
            raise UndeliverableRows(
                f"ClickHouse rejected {rows.num_rows} row(s) of {batch.identity} and no dead-letter "
                f"destination is configured: {error}"
            )
        self.dead_letter(batch, rows, offsets, error)


def _short(exc: BaseException, limit: int = 1000) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
