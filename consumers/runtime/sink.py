"""The contract between the consumer runtime and a sink (archive, ClickHouse).

Exactly-once rests on three rules:

1. Offsets are committed only after ``Sink.write`` returned for every batch
   they cover.
2. ``write`` is idempotent for a batch identity ``(topic, partition,
   first_offset, last_offset)``: writing the same batch again leaves the sink
   as if it was written once (deterministic object names, insert dedup tokens).
3. A batch's boundaries are recorded by the sink *before* its data is written
   (``pending_end``), so after a crash between the write and the commit, the
   runtime re-forms exactly the same batch from the committed offset instead
   of a differently-cut one that would overlap what was already written.

How the runtime (``consumers/runtime/loop.py``) drives a sink, per partition
and strictly in sequence:

* before cutting each batch it calls ``pending_end(topic, partition, start)``
  where ``start`` is the offset of the first message it holds for the
  partition (the committed offset, unless the log has a gap there). If that
  returns ``E``, the batch is cut at exactly ``E`` (it waits for ``E`` to be
  consumed); otherwise it is cut by the flush policy;
* then ``begin(batch)`` and ``write(batch)``, then a synchronous commit of
  ``last_offset + 1``. Any exception pauses the partition and the *same*
  batch is retried (``begin`` too) with capped exponential backoff;
* a batch whose messages were all dead-lettered (zero rows) is committed
  without calling the sink;
* ``batch.table`` may hold several received_at hours; ``first_offset`` and
  ``last_offset`` span every consumed offset of the batch, including
  dead-lettered ones (which are not in the table);
* every sink call comes from one dedicated writer thread (never two calls at
  once), not from the thread that called ``ConsumerLoop.run``; batches of
  different partitions are written one after another on it. A process may
  ask for several writer threads (``LoopConfig.write_threads``) when its sink
  is thread-safe and answers ``pending_end`` without I/O (the stage-2
  Postgres sink, idempotent by event id, records nothing and answers None):
  batches of different partitions are then written at the same time, and
  ``pending_end`` is answered on the loop's thread. One partition's batches
  are still written strictly in sequence;
* on revocation a batch being written is waited for, then dropped without a
  commit: its next owner re-forms it through ``pending_end``.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

RowsT = TypeVar("RowsT", bound=Sized)


@dataclass(frozen=True)
class Batch(Generic[RowsT]):
    topic: str
    partition: int
    first_offset: int
    last_offset: int  # inclusive
    # The valid events. A ``pyarrow.Table`` with ``schemas.arrow.arrow_schema()`` for the Kafka sinks (the
    # default parse step); whatever the process's parse step builds otherwise (the stage-2 worker's row tuples).
    table: RowsT
    raw_bytes: int  # size of the message values, for metrics
    # The Kafka offset of each table row (offsets may have gaps: dead-lettered messages, transaction
    # markers). None for batches not read from Kafka, whose rows are numbered from first_offset.
    offsets: Sequence[int] | None = None

    @property
    def num_rows(self) -> int:
        return len(self.table)

    @property
    def identity(self) -> str:
        return f"{self.topic}:{self.partition}:{self.first_offset}-{self.last_offset}"

    def row_offsets(self, start: int, count: int) -> list[int]:
        """The offsets of rows ``start .. start + count - 1`` of the table."""
        if self.offsets is None:
            return list(range(self.first_offset + start, self.first_offset + start + count))
        return list(self.offsets[start:start + count])


class Sink(Protocol):
    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        """Last offset of a batch starting at ``start_offset`` that was begun but maybe not committed."""

    def begin(self, batch: Batch[Any]) -> None:
        """Record the batch's boundaries durably before writing its data."""

    def write(self, batch: Batch[Any]) -> None:
        """Write the batch idempotently; raise on failure (the runtime retries with backoff)."""
