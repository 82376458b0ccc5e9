"""ClickHouseSink: the loader's implementation of consumers.runtime.sink.Sink.

Exactly-once, in two layers:

1. **Kafka replays** (crash between insert and commit, rebalance): the runtime
   re-forms the same batch (``pending_end`` reads the ``loader_batches``
   ledger written by ``begin``), and the insert carries
   ``insert_deduplication_token = batch.identity``, so ClickHouse drops the
   repeated block (and does not push it to the rollup view again).
2. **Client retries** (same event_id at a new offset, the gateway's 5xx/timeout
   retry case) are removed before the insert, against ``event_ids`` (every
   loaded id, ordered by event_id, so lookups use the index). The batch's ids
   travel with the probe as external data (a temporary table of that one
   query), and the first copy of each id in the batch wins. Nothing is staged
   on the server: no table per loader, no HTTP session, so any number of
   loaders share one ClickHouse, a cluster behind a load balancer, or Cloud.
   ``count()`` is then right without FINAL; the price is the id probe per
   batch, an ``event_ids`` table (about 24 bytes per event before
   compression), and a window, ``LOADER_DEDUP_DAYS``: a retry after that
   counts twice.

``events`` is inserted before ``event_ids``: a crash between the two leaves the
ids absent, so the replay re-forms the same rows and the token drops them. The
other order could lose events.

Rows ClickHouse rejects (e.g. an event_id that is not a UUID) fail their
one-block insert whole; the block is then split in halves, each inserted with
its own token (deterministic, so a replay drops the halves already stored),
down to the single rows that are handed to ``dead_letter`` with the error.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.external import ExternalData

from consumers.loader.metrics import LoaderMetrics
from consumers.loader.tables import Tables
from consumers.runtime.sink import Batch
from schemas.fields import FIELDS, Field

# (batch, rejected rows, their Kafka offsets, the error ClickHouse gave)
DeadLetter = Callable[[Batch, pa.Table, list[int], str], None]

# ClickHouse error codes that mean "this data cannot go in", as opposed to
# "the server is unavailable or overloaded" (which the runtime retries).
DATA_ERROR_CODES = frozenset({
    6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 376, 407, 1001,
})
_CODE = re.compile(r"Code: (\d+)")


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
        clustered: bool = False,
        metrics: LoaderMetrics | None = None,
    ) -> None:
        self.client = client
        self.metrics = metrics if metrics is not None else LoaderMetrics()
        # On a cluster the writes go through Distributed tables: sent at once (not queued, possibly merged
        # with other inserts), so each batch's dedup token reaches its shard as one insert.
        self._write_settings = {"distributed_foreground_insert": 1} if clustered else {}
        self.tables = Tables(database)
        self.fields = fields
        self.dead_letter = dead_letter
        self.lock = threading.Lock()  # one ClickHouse client is not safe for concurrent use

    # -- Sink protocol -----------------------------------------------------

    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        with self.lock:
            result = self.client.query(
                f"SELECT last_offset FROM {self.tables.batches} WHERE topic = {{t:String}} "
                "AND partition = {p:UInt32} AND first_offset = {o:Int64} ORDER BY begun_at DESC LIMIT 1",
                parameters={"t": topic, "p": partition, "o": start_offset},
            )
        rows = result.result_rows
        return int(rows[0][0]) if rows else None

    def begin(self, batch: Batch) -> None:
        row = [batch.topic, batch.partition, batch.first_offset, batch.last_offset, dt.datetime.now(dt.UTC)]
        with self.lock:
            self.client.insert("loader_batches", [row], database=self.tables.database,
                               column_names=["topic", "partition", "first_offset", "last_offset", "begun_at"],
                               settings=self._write_settings)

    def write(self, batch: Batch) -> None:
        started = time.perf_counter()
        with self.lock:
            inserted, duplicates, rejected = self.insert(batch)
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self.metrics.rows.labels("inserted").inc(inserted)
        self.metrics.rows.labels("duplicate").inc(duplicates)
        self.metrics.rows.labels("rejected").inc(rejected)

    def insert(self, batch: Batch) -> tuple[int, int, int]:
        """Insert the batch's new rows once, keyed by its identity; returns (inserted, duplicate, rejected)."""
        rows = self._columns(batch.table)
        if rows.num_rows == 0:
            return 0, 0, 0
        fresh = self._fresh_rows(rows)
        if fresh.num_rows == 0:
            return 0, rows.num_rows, 0
        kept, rejected = self._insert_events(batch, fresh, batch.identity)
        n_rejected = sum(bad.num_rows for _, bad, _ in rejected)
        for start, bad_rows, error in rejected:
            self._dead_letter(batch, bad_rows, self._offsets(batch, rows, bad_rows), error)
        if kept:
            # After events, never before: see the module docstring.
            inserted = pa.concat_tables(kept).select(["event_id", "received_at"])
            self.client.insert_arrow(self.tables.event_ids, inserted.combine_chunks(),
                                     settings=self._token(batch.identity))
        n_inserted = fresh.num_rows - n_rejected
        return n_inserted, rows.num_rows - fresh.num_rows, n_rejected

    # -- internals ---------------------------------------------------------

    def _fresh_rows(self, rows: pa.Table) -> pa.Table:
        """The first row of each event_id that ``event_ids`` does not list yet (usually all of them)."""
        ids = rows.column("event_id")
        known = self._known_ids(ids)
        unique = pc.count_distinct(ids).as_py() == rows.num_rows
        if unique and not known:
            return rows  # the common case: nothing to filter
        numbered = pa.table({"id": ids, "row": pa.array(range(rows.num_rows), pa.int64())})
        first = numbered.group_by("id", use_threads=False).aggregate([("row", "min")]).column("row_min")
        keep = pc.is_in(pa.array(range(rows.num_rows), pa.int64()), value_set=first)
        if known:
            keep = pc.and_(keep, pc.invert(pc.is_in(ids, value_set=pa.array(sorted(known), pa.string()))))
        return rows.filter(keep)

    def _known_ids(self, ids: pa.ChunkedArray) -> set[str]:
        """Which of ``ids`` were loaded before (ids that are not UUIDs are never known)."""
        data = "\n".join(v for v in pc.unique(ids).to_pylist() if v is not None).encode()
        external = ExternalData(data=data, file_name="batch_ids", structure="event_id String")
        # GLOBAL IN: on a cluster, the batch's ids go to every shard with the probe.
        result = self.client.query(
            f"SELECT toString(event_id) FROM {self.tables.event_ids} WHERE event_id GLOBAL IN "
            "(SELECT toUUIDOrZero(event_id) FROM batch_ids)", external_data=external)
        return {row[0] for row in result.result_rows}

    def _insert_events(self, batch: Batch, rows: pa.Table, token: str,
                       start: int = 0) -> tuple[list[pa.Table], list[tuple[int, pa.Table, str]]]:
        """Insert rows as one block; on a data error split them, each half under its own token.

        Returns the inserted tables and the rejected rows (with their index in ``rows`` of the
        first call and the error). The splits are a function of the rows alone, so a replay of
        the batch produces the same tokens and ClickHouse drops what it already stored.
        """
        try:
            self.client.insert_arrow(self.tables.events, rows.combine_chunks(), settings=self._token(token))
            return [rows], []
        except DatabaseError as exc:
            if not is_data_error(exc):
                raise
            if self.dead_letter is None:  # before any half is stored: nothing is half-written
                raise UndeliverableRows(f"ClickHouse rejected rows of {batch.identity} and no dead-letter "
                                        f"destination is configured: {_short(exc)}") from None
            if rows.num_rows == 1:
                return [], [(start, rows, _short(exc))]
        middle = rows.num_rows // 2
        left = self._insert_events(batch, rows.slice(0, middle), f"{batch.identity}+{start}:{middle}", start)
        right = self._insert_events(batch, rows.slice(middle), f"{batch.identity}+{start + middle}:"
                                    f"{rows.num_rows - middle}", start + middle)
        return left[0] + right[0], left[1] + right[1]

    @staticmethod
    def _offsets(batch: Batch, rows: pa.Table, bad_rows: pa.Table) -> list[int]:
        """The Kafka offsets of rejected rows, found by their event_id's first row in the batch."""
        ids = rows.column("event_id").to_pylist()
        first: dict[object, int] = {}
        for index, value in enumerate(ids):
            first.setdefault(value, index)
        return [batch.row_offsets(first[value], 1)[0] for value in bad_rows.column("event_id").to_pylist()]

    def _token(self, token: str) -> dict[str, object]:
        return {"insert_deduplication_token": token, "insert_deduplicate": 1,
                "deduplicate_blocks_in_dependent_materialized_views": 1, **self._write_settings}

    def _columns(self, table: pa.Table) -> pa.Table:
        """The batch's columns this sink's schema knows, in schema order."""
        present = set(table.column_names)
        return table.select([f.name for f in self.fields if f.name in present])

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
