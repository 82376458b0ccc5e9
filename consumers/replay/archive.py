"""Backfill from the Parquet archive: into ClickHouse directly, or onto the replay topic.

The archive is the archiver's layout (``consumers/archiver/layout.py``):
``topic=T/dt=YYYY-MM-DD/hour=HH/*.parquet`` where the hour is the hour of
``received_at``. A window ``[start, end)`` therefore touches only the hour
directories it overlaps; rows are then filtered on ``received_at`` exactly.

Memory stays bounded: files are read one at a time, in record batches of at
most ``batch_rows`` rows (an S3 object is fetched whole, so one archive file
is the largest thing held).

Idempotence:

* ``--into clickhouse`` goes through the loader's own insert path
  (:class:`consumers.loader.sink.ClickHouseSink`): an event_id already in
  ``event_ids`` is skipped and counted as a duplicate, and every chunk carries
  a deterministic insert token (file, chunk, window), so running the same
  backfill twice adds nothing.
* ``--into kafka`` re-produces each row as its wire-format message, keyed with
  :func:`schemas.envelope.kafka_key`, with the durable producer; the loader
  deduplicates by event_id when it consumes the replay topic.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consumers.archiver.layout import data_key
from consumers.archiver.store import Store
from consumers.replay.errors import ReplayError
from schemas.envelope import kafka_key
from schemas.fields import FIELDS, Field
from schemas.rows import wire_events

DEFAULT_BATCH_ROWS = 50_000  # one loader-sized insert (at most one ClickHouse block)


@dataclass(frozen=True)
class Window:
    start: dt.datetime  # inclusive
    end: dt.datetime  # exclusive

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ReplayError("window bounds need a time zone (e.g. 2026-11-21T10:00:00Z)")
        if self.end <= self.start:
            raise ReplayError(f"--to ({self.end.isoformat()}) must be after --from ({self.start.isoformat()})")

    def hours(self) -> Iterator[dt.datetime]:
        """Every UTC hour that overlaps the window."""
        hour = self.start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        while hour < self.end:
            yield hour
            hour += dt.timedelta(hours=1)

    def label(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True)
class ArchiveFile:
    key: str  # relative to the archive root, as the archiver names it
    size: int


@dataclass
class Summary:
    files: int = 0
    read: int = 0  # rows read from the files
    in_window: int = 0  # rows whose received_at is inside the window
    written: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    aborted: str = ""  # why the run stopped early (the rest of the window was not read)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.aborted

    def line(self, dry_run: bool) -> str:
        if dry_run:
            text = f"dry run: files {self.files}, read {self.read}, in window {self.in_window} (nothing written)"
        else:
            text = (f"files {self.files}, read {self.read}, in window {self.in_window}, written {self.written}, "
                    f"skipped as duplicates {self.duplicates}, failed {self.failed}")
        if self.aborted:
            text += (f"\naborted: {self.aborted}\nNothing written is lost or doubled: fix the cause and run the same "
                     "command again (events already written are skipped as duplicates).")
        return text


# -- listing and reading -------------------------------------------------------


def hour_prefix(topic: str, hour: dt.datetime) -> str:
    """The directory of one hour, derived from the archiver's own naming."""
    return data_key(topic, 0, 0, 0, hour).rsplit("/", 1)[0] + "/"


def list_files(store: Store, topic: str, window: Window) -> list[ArchiveFile]:
    """Data files in the hour directories the window overlaps, in name (so offset) order."""
    found: list[ArchiveFile] = []
    for hour in window.hours():
        found.extend(_list_prefix(store, hour_prefix(topic, hour)))
    return found


def _list_prefix(store: Store, prefix: str) -> list[ArchiveFile]:
    # Only the hour directory's own data files (dot-prefixed temp files are never listed).
    return [ArchiveFile(key, size) for key, size in store.list_sized(prefix)
            if key.endswith(".parquet") and "/" not in key[len(prefix):]]


def open_file(store: Store, file: ArchiveFile) -> pq.ParquetFile:
    """A local file is read in place; an S3 object is fetched whole (the one file held in memory)."""
    try:
        return pq.ParquetFile(store.open(file.key))
    except FileNotFoundError:
        raise ReplayError(f"{file.key} was listed but is gone from {store.uri}") from None


def in_window(batch: pa.RecordBatch, window: Window) -> pa.Table:
    received = batch.column(batch.schema.get_field_index("received_at"))
    kind = received.type
    # Archived times are whole milliseconds: t >= x and t < x hold exactly when compared with x rounded up.
    start, end = pa.scalar(_ceil_ms(window.start), type=kind), pa.scalar(_ceil_ms(window.end), type=kind)
    mask = pc.and_(pc.greater_equal(received, start), pc.less(received, end))
    return pa.Table.from_batches([batch]).filter(mask)


def _ceil_ms(moment: dt.datetime) -> dt.datetime:
    extra = moment.microsecond % 1000
    return moment + dt.timedelta(microseconds=1000 - extra) if extra else moment


# -- writers -------------------------------------------------------------------


class Writer(Protocol):
    def write(self, rows: pa.Table, identity: str, summary: Summary) -> None: ...

    def finish(self, summary: Summary) -> None: ...


class ClickHouseWriter:
    """Inserts through the loader's sink: dedup against ``event_ids`` and a per-chunk insert token."""

    def __init__(self, client: Any, database: str, dedup_days: int, fields: tuple[Field, ...] = FIELDS,
                 cluster: str = "") -> None:
        from consumers.loader.sink import ClickHouseSink

        ensure_tables(client, database, fields, dedup_days, cluster)
        refuse_stale_ids(client, database)
        self._rejected: list[tuple[int, str]] = []
        self.sink = ClickHouseSink(client, database, fields, dead_letter=self._reject, clustered=bool(cluster))

    def _reject(self, _batch: Any, rows: pa.Table, _offsets: list[int], error: str) -> None:
        # Rows ClickHouse refuses are reported as failed (the run exits non-zero), not dead-lettered:
        # the archive still holds them, so a fixed run can pick them up again.
        self._rejected.append((rows.num_rows, error))

    def write(self, rows: pa.Table, identity: str, summary: Summary) -> None:
        from consumers.runtime.sink import Batch

        # The identity becomes the insert token: distinct from any live batch's "topic:partition:offsets".
        batch = Batch(f"archive:{identity}", 0, 0, rows.num_rows - 1, rows, 0)
        with self.sink.lock:
            inserted, duplicates, rejected = self.sink.insert(batch)
        summary.written += inserted
        summary.duplicates += duplicates
        summary.failed += rejected
        for _count, error in self._rejected:
            summary.errors.append(f"{identity}: ClickHouse rejected rows: {error}")
        self._rejected.clear()

    def finish(self, summary: Summary) -> None:
        pass  # every chunk was inserted in write; nothing is staged on the server


class Pacer:
    """Spaces out work so it averages at most ``rate`` events per second (the first slice goes at once)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0

    def take(self, events: int) -> None:
        now = self.clock()
        self._next = max(self._next, now)
        if self._next > now:
            self.sleep(self._next - now)
        self._next += events / self.rate


class PacedWriter:
    """A writer limited to ``--max-rate`` events/s, in slices of a quarter second so the load stays smooth."""

    def __init__(self, inner: Writer, pacer: Pacer) -> None:
        self.inner = inner
        self.pacer = pacer
        self.slice_rows = max(1, int(pacer.rate / 4))

    def write(self, rows: pa.Table, identity: str, summary: Summary) -> None:
        for start in range(0, rows.num_rows, self.slice_rows):
            part = rows.slice(start, self.slice_rows)
            self.pacer.take(part.num_rows)
            self.inner.write(part, f"{identity}+{start}", summary)

    def finish(self, summary: Summary) -> None:
        self.inner.finish(summary)


def ensure_tables(client: Any, database: str, fields: tuple[Field, ...], dedup_days: int, cluster: str = "") -> None:
    """Create the loader's tables, also when one was dropped after the migration ledger recorded it."""
    from consumers.loader.tables import Tables, Topology, base_migrations, migrate

    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`{Topology(cluster).on_cluster}")
    for migration in base_migrations(Tables(database), fields, dedup_days, cluster):
        client.command(migration.statement)  # IF NOT EXISTS: recreates only what is missing
    migrate(client, database, fields, dedup_days, cluster)


def refuse_stale_ids(client: Any, database: str) -> None:
    """An empty events table with a full event_ids would make every archived row a 'duplicate'."""
    from consumers.loader.tables import Tables

    tables = Tables(database)
    events = int(client.query(f"SELECT count() FROM {tables.events}").result_rows[0][0])
    ids = int(client.query(f"SELECT count() FROM {tables.event_ids}").result_rows[0][0])
    if events == 0 and ids > 0:
        raise ReplayError(
            f"{database}.events is empty but {database}.event_ids still lists {ids} ids, so every archived "
            f"event would be skipped as a duplicate. event_ids indexes the events table: after losing events, "
            f"run TRUNCATE TABLE `{database}`.event_ids, then this command again."
        )


class KafkaWriter:
    """Re-produces rows as wire-format messages with the durable producer."""

    def __init__(self, producer_config: dict[str, Any], topic: str, fields: tuple[Field, ...] = FIELDS) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.fields = fields
        self.producer = Producer(producer_config)
        metadata = self.producer.list_topics(timeout=15).topics.get(topic)  # all topics: asking for one may create it
        if metadata is None or metadata.error is not None or not metadata.partitions:
            # Fail now rather than after the producer's delivery timeout on every message.
            raise ReplayError(f"topic {topic!r} does not exist: create it (evpipe topics create) or pass --topic")
        self._delivered = 0
        self._errors: list[str] = []

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self._delivered += 1
        elif len(self._errors) < 1000:
            self._errors.append(str(err))
        else:
            self._errors.append("")  # counted; the first thousand reasons are enough

    def write(self, rows: pa.Table, identity: str, summary: Summary) -> None:
        for event in wire_events(rows, self.fields):
            value = orjson.dumps(event)
            while True:
                try:
                    self.producer.produce(self.topic, key=kafka_key(event), value=value, on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full: wait for deliveries (bounded memory)
                    self.producer.poll(0.1)
        self.producer.poll(0)
        summary.written = self._delivered

    def finish(self, summary: Summary, timeout: float = 60.0) -> None:
        undelivered = self.producer.flush(timeout)
        summary.written = self._delivered
        summary.failed += len(self._errors) + undelivered
        reasons = sorted({e for e in self._errors if e})
        summary.errors.extend(f"not delivered to {self.topic}: {reason}" for reason in reasons[:10])
        if undelivered:
            summary.errors.append(f"{undelivered} message(s) still undelivered after {timeout:.0f}s")


# -- the run -------------------------------------------------------------------

Progress = Callable[[int, int], None]  # (archive bytes just done, rows in window so far)


def backfill(store: Store, topic: str, window: Window, writer: Writer | None,
             batch_rows: int = DEFAULT_BATCH_ROWS, progress: Progress | None = None,
             files: list[ArchiveFile] | None = None) -> Summary:
    """Read the window's rows from the archive and hand them to ``writer`` (None: count only)."""
    summary = Summary()
    files = list_files(store, topic, window) if files is None else files
    summary.files = len(files)
    try:
        for file in files:
            try:
                _backfill_file(store, file, window, writer, batch_rows, summary, progress)
            except Exception as exc:  # noqa: BLE001  (an unreadable file, ClickHouse or S3 down: stop, say where)
                summary.aborted = f"{file.key}: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
                break
    finally:
        if writer is not None:
            writer.finish(summary)
    return summary


def _backfill_file(store: Store, file: ArchiveFile, window: Window, writer: Writer | None, batch_rows: int,
                   summary: Summary, progress: Progress | None) -> None:
    parquet = open_file(store, file)
    total = max(1, parquet.metadata.num_rows)
    done = 0
    for index, batch in enumerate(parquet.iter_batches(batch_size=batch_rows)):
        summary.read += batch.num_rows
        rows = in_window(batch, window)
        summary.in_window += rows.num_rows
        if writer is not None and rows.num_rows:
            writer.write(rows, f"{file.key}#{index}@{window.label()}", summary)
        done_before, done = done, done + batch.num_rows
        if progress:  # bytes of this file, pro rata by rows
            progress(file.size * done // total - file.size * done_before // total, summary.in_window)
