"""The archiver's Sink: one Parquet file per (batch, received_at hour), named by the batch identity.

Exactly-once across crashes (see consumers/runtime/sink.py for the contract):

* ``begin`` stores a small manifest ``{first, last}`` in the archive before any
  data file; ``pending_end`` reads it back, so a restarted archiver (or the
  partition's next owner) re-forms exactly the same batch from the committed
  offset and rewrites the same objects, whatever the size or age rotation
  would have said. This is what wall-clock rotation alone gets wrong: a file
  cut by age after a restart covers a different offset range, and overlaps
  the one written before the crash.
* ``write`` returns only when every file is durable; the runtime commits
  offsets after that.

Client resends (the same event_id again at a later offset) are dropped, the
first copy in offset order kept, per partition and within a window of event
time: see consumers/archiver/dedup.py. ``begin`` decides which rows a batch
keeps and stores their ids next to the manifest; the decision depends only on
the batch and the archive below its first offset, so a re-formed batch keeps
the same rows and rewrites the same files.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consumers.archiver import userindex
from consumers.archiver.dedup import DEFAULT_MAX_IDS, DEFAULT_WINDOW_S, Deduplicator
from consumers.archiver.layout import data_key, manifest_key
from consumers.archiver.metrics import ArchiverMetrics
from consumers.archiver.store import Store
from consumers.runtime.sink import Batch
from schemas.typed import TypedColumn
from schemas.typed_arrow import with_typed_columns

_MS_PER_HOUR = 3_600_000


class ParquetSink:
    def __init__(self, store: Store, row_group_rows: int = 128 * 1024, zstd_level: int = 3,
                 dedup_window_s: float = DEFAULT_WINDOW_S, dedup_max_ids: int = DEFAULT_MAX_IDS,
                 metrics: ArchiverMetrics | None = None, folders: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.folders = dict(folders or {})  # topic -> the topic folder its files go under (the overflow lane's)
        self.metrics = metrics if metrics is not None else ArchiverMetrics()
        self.row_group_rows = row_group_rows
        self.zstd_level = zstd_level
        self.dedup = Deduplicator(store, dedup_window_s, dedup_max_ids)
        # The tracking plans' typed p_ columns (consumers/archiver/typed.py): none unless TRACKING_PLANS is set.
        self.typed_columns: Callable[[], Sequence[TypedColumn]] = tuple

    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        data = self.store.get(manifest_key(topic, partition, start_offset))
        if data is None:
            return None
        last: int = json.loads(data)["last"]
        return last

    def begin(self, batch: Batch) -> None:
        decision = self.dedup.decide(batch)
        self.dedup.record(batch)  # the kept ids first: a manifest implies its id file
        manifest = {"topic": batch.topic, "partition": batch.partition, "first": batch.first_offset,
                    "last": batch.last_offset, "rows": batch.table.num_rows, "duplicates": decision.dropped,
                    "begun_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        self.store.put(manifest_key(batch.topic, batch.partition, batch.first_offset), json.dumps(manifest).encode())

    def write(self, batch: Batch) -> None:
        decision = self.dedup.decide(batch)  # the one begin made, unless write comes alone
        rows = with_typed_columns(decision.apply(batch.table), self.typed_columns())  # once per batch
        for hour, table in split_by_hour(rows):
            key = data_key(batch.topic, batch.partition, batch.first_offset, batch.last_offset, hour,
                           self.folders.get(batch.topic))
            data = self._encode(table)
            started = time.perf_counter()
            self.store.put(userindex.index_key(key), userindex.encode(userindex.build(table)))  # index first
            self.store.put(key, data)
            self.metrics.upload_seconds.observe(time.perf_counter() - started)
            self.metrics.files.labels(batch.topic).inc()
            self.metrics.bytes.labels(batch.topic).inc(data.size)
            self.metrics.rows.labels(batch.topic).inc(table.num_rows)
        self.dedup.written(batch)
        self.metrics.duplicates.labels(batch.topic).inc(decision.dropped)
        self.metrics.dedup_ids.set(self.dedup.held_ids())

    def _encode(self, table: pa.Table) -> pa.Buffer:
        out = pa.BufferOutputStream()
        pq.write_table(table, out, compression="zstd", compression_level=self.zstd_level,
                       row_group_size=self.row_group_rows)
        return out.getvalue()


def split_by_hour(table: pa.Table) -> list[tuple[dt.datetime, pa.Table]]:
    """Rows grouped by the UTC hour of received_at, in offset order within each group."""
    if table.num_rows == 0:
        return []
    millis = table.column("received_at").cast(pa.int64())
    bounds = pc.min_max(millis)
    first, last = bounds["min"].as_py() // _MS_PER_HOUR, bounds["max"].as_py() // _MS_PER_HOUR
    if first == last:  # the common case: a batch within one hour
        return [(_hour(first), table)]
    hours = pc.divide(millis, _MS_PER_HOUR)  # integer division: received_at is after 1970
    return [(_hour(h), table.filter(pc.equal(hours, h))) for h in sorted(pc.unique(hours).to_pylist())]


def _hour(index: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(index * 3600, dt.UTC)
