"""Client resends out of the archive: each event_id once per partition within a window, exactly and deterministically.

A client that resends after a 503 or a cut connection sends the same
event_id again; the gateway gives the copy a new ``received_at`` and the same
Kafka key, so it lands on the same partition at a later offset. Per
(topic, partition) the archiver keeps the first copy in offset order and drops
the others: within a batch, and against the ids that earlier batches of the
partition archived, within the window.

Determinism. The rows a batch B starting at offset S drops are a function of
B and of the archive's durable content at offsets below S only, never of the
wall clock or of what this process did before. ``begin`` stores B's kept ids
(``_dedup/.../<S>.arrow``: 16-byte ids, plus B's offsets and watermark) before
any data file; a process that has no state for the partition, or whose state
does not end right at S (a restart, a rebalance, a skipped offset range),
rebuilds it from those files, walking them newest first. So a batch re-formed
after a crash, or by the partition's next owner, drops the same rows and
rewrites byte-identical files: the exactly-once file set still holds.

The window is event time, never wall-clock time. Each batch has a watermark:
the largest ``received_at`` of the partition up to and including the batch
(a running maximum, stored in its id file). An earlier batch is in play for
B while its watermark is at least B's watermark minus the window, and while
the in-play batches (newest first, whole batches) hold at most ``max_ids``
ids. Both rules keep a suffix of the partition's batches, so the running
state and a rebuild keep the same one. A resend is dropped when the original
went into an in-play batch: always when it was received less than the window
(minus the batch's own time span) before the newest event of the resend's
batch, as long as the cap is not reached. Past the cap the oldest whole
batches fall out first, and the effective window is shorter: max_ids divided
by the partition's event rate (4M ids at 1,000 events/s is 67 minutes; at 46
events/s it is the full 24 h).

Limits: ids that are not canonical UUID text are never deduplicated (the
gateway only writes canonical ones); a resend that goes to another partition
(a different Kafka key) is not seen; memory is ~20 bytes per held id
(76 MiB per partition at the 4M default, briefly twice that while a batch is
added). A window of 0 turns all of it off: no id files, every row archived.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from consumers.archiver.ids import SortedIds, first_copies, from_binary, sort_order, to_binary, uuid_keys
from consumers.archiver.layout import ids_first_offset, ids_key, ids_prefix
from consumers.archiver.store import Store
from consumers.runtime.sink import Batch

DEFAULT_WINDOW_S = 86_400.0
DEFAULT_MAX_IDS = 4_000_000
# A partition not written for this long was most likely revoked: its state is dropped to free the
# memory (the sink is not told about revocations). Only a cache: it is rebuilt if the partition returns.
_IDLE_S = 900.0


@dataclass(frozen=True)
class Decision:
    """What a batch keeps: a row mask (None: every row), and the kept ids (sorted) to remember."""

    keep: npt.NDArray[np.bool_] | None
    dropped: int
    hi: npt.NDArray[np.uint64]
    lo: npt.NDArray[np.uint64]
    positions: npt.NDArray[np.intp]  # where the kept ids go in the partition's SortedIds
    watermark: int  # ms; the partition's largest received_at up to and including this batch

    def apply(self, table: pa.Table) -> pa.Table:
        return table if self.keep is None else table.filter(pa.array(self.keep))


KEEP_ALL = Decision(None, 0, np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.intp), 0)


@dataclass(frozen=True)
class _Span:
    """One archived batch in a partition's state."""

    first: int
    seq: int
    watermark: int
    count: int


@dataclass
class _State:
    next_offset: int  # the state covers the batches below this offset
    watermark: int | None = None
    ids: SortedIds = field(default_factory=SortedIds)
    spans: deque[_Span] = field(default_factory=deque)
    next_seq: int = 0
    used: float = field(default_factory=time.monotonic)
    pending: tuple[str, Decision, bool] | None = None  # (batch identity, decision, id file stored)

    def first_seq(self, watermark: int, window_ms: int, max_ids: int) -> int:
        """Sequence number of the oldest batch in play for a batch whose watermark is ``watermark``."""
        start = _suffix_start([(s.watermark, s.count) for s in self.spans], watermark - window_ms, max_ids)
        return self.spans[start].seq if start < len(self.spans) else self.next_seq

    def add(self, batch: Batch, decision: Decision, window_ms: int, max_ids: int) -> None:
        """Remember a written batch's kept ids, then drop the batches that fell out of play."""
        seq = self.next_seq
        self.spans.append(_Span(batch.first_offset, seq, decision.watermark, len(decision.hi)))
        self.next_seq += 1
        oldest = self.first_seq(decision.watermark, window_ms, max_ids)
        self.ids.insert(decision.positions, decision.hi, decision.lo, seq, drop_before=oldest)
        while self.spans and self.spans[0].seq < oldest:
            self.spans.popleft()
        self.watermark = decision.watermark
        self.next_offset = batch.last_offset + 1
        self.pending = None


def _suffix_start(spans: list[tuple[int, int]], cutoff: int, max_ids: int) -> int:
    """Index of the oldest (watermark, count) span of the longest suffix within the window and the cap.

    Walked newest first and stopped at the first span that fails, exactly as a
    rebuild walks the id files, so both keep the same batches.
    """
    total = 0
    for index in range(len(spans) - 1, -1, -1):
        watermark, count = spans[index]
        if watermark < cutoff or total + count > max_ids:
            return index + 1
        total += count
    return 0


class Deduplicator:
    """Per-partition seen-id state for the ParquetSink; every call comes from the runtime's one writer thread."""

    def __init__(self, store: Store, window_s: float = DEFAULT_WINDOW_S, max_ids: int = DEFAULT_MAX_IDS) -> None:
        self.store = store
        self.window_ms = int(window_s * 1000)
        self.max_ids = max_ids
        self._states: dict[tuple[str, int], _State] = {}

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0

    def held_ids(self) -> int:
        return sum(len(s.ids) for s in self._states.values())

    def decide(self, batch: Batch) -> Decision:
        """The rows ``batch`` keeps; the same answer however often it is asked (``begin`` retries)."""
        if not self.enabled:
            return KEEP_ALL
        state = self._state(batch)
        if state.pending is None or state.pending[0] != batch.identity:
            state.pending = (batch.identity, self._decide(state, batch.table), False)
        return state.pending[1]

    def record(self, batch: Batch) -> None:
        """Store the batch's kept ids durably (from ``begin``, before any data file)."""
        if not self.enabled:
            return
        decision = self.decide(batch)
        self.store.put(ids_key(batch.topic, batch.partition, batch.first_offset), _encode(batch, decision))
        state = self._states[(batch.topic, batch.partition)]
        state.pending = (batch.identity, decision, True)

    def written(self, batch: Batch) -> None:
        """The batch's data is durable: its ids join the partition's state."""
        if not self.enabled:
            return
        state = self._states[(batch.topic, batch.partition)]
        if state.pending is None or not state.pending[2]:  # written without begin: keep the rebuild's view equal
            self.record(batch)
        assert state.pending is not None
        state.add(batch, state.pending[1], self.window_ms, self.max_ids)

    def _decide(self, state: _State, table: pa.Table) -> Decision:
        keys = uuid_keys(table.column("event_id"))
        newest = pc.max(table.column("received_at").cast(pa.int64())).as_py()
        watermark = max(w for w in (state.watermark, newest, 0) if w is not None)
        if keys.valid.all():
            order = sort_order(keys.hi, keys.lo)
        else:  # ids not in UUID form are kept and never remembered
            rows = np.flatnonzero(keys.valid)
            order = rows[sort_order(keys.hi[rows], keys.lo[rows])]
        hi, lo = keys.hi[order], keys.lo[order]
        positions, seen = state.ids.locate(hi, lo)
        if seen.any():  # a match in a batch out of play does not count
            oldest = state.first_seq(watermark, self.window_ms, self.max_ids)
            seen[seen] = state.ids.seq[positions[seen]] >= oldest
        new = first_copies(hi, lo) & ~seen
        dropped = int(len(new) - np.count_nonzero(new))
        keep = None
        if dropped:
            keep = np.ones(table.num_rows, np.bool_)
            keep[order[~new]] = False
        return Decision(keep, dropped, hi[new], lo[new], positions[new], watermark)

    def _state(self, batch: Batch) -> _State:
        key = (batch.topic, batch.partition)
        now = time.monotonic()
        for other in [k for k, s in self._states.items() if k != key and now - s.used > _IDLE_S]:
            del self._states[other]
        state = self._states.get(key)
        if state is None or state.next_offset != batch.first_offset:
            state = self._states[key] = self._rebuild(batch.topic, batch.partition, batch.first_offset)
        state.used = now
        return state

    def _rebuild(self, topic: str, partition: int, start: int) -> _State:
        """The state for a batch starting at ``start``, from the id files of the batches below it, newest first."""
        firsts = sorted((f for k in self.store.list(ids_prefix(topic, partition))
                         if (f := ids_first_offset(k)) is not None and f < start), reverse=True)
        state = _State(start)
        files: list[tuple[int, pa.Table]] = []
        total = 0
        for first in firsts:
            data = self.store.get(ids_key(topic, partition, first))
            if data is None:
                continue  # removed between the listing and now
            ids = pa.ipc.open_file(pa.py_buffer(data)).read_all()
            watermark = int(ids.schema.metadata[b"watermark"])
            if state.watermark is None:
                state.watermark = watermark
            # The rule of _suffix_start, applied as the files come in: stop at the first one out of play.
            if watermark < state.watermark - self.window_ms or total + ids.num_rows > self.max_ids:
                break
            files.append((first, ids))
            total += ids.num_rows
        files.reverse()  # oldest first: sequence numbers follow the offsets
        his, los, seqs = [], [], []
        for seq, (first, ids) in enumerate(files):
            hi, lo = from_binary(ids.column("event_id").combine_chunks())
            his.append(hi)
            los.append(lo)
            seqs.append(np.full(len(hi), seq, np.uint32))
            state.spans.append(_Span(first, seq, int(ids.schema.metadata[b"watermark"]), len(hi)))
        if files:
            state.ids = SortedIds.build(np.concatenate(his), np.concatenate(los), np.concatenate(seqs))
        state.next_seq = len(files)
        return state


def _encode(batch: Batch, decision: Decision) -> pa.Buffer:
    """A batch's kept ids as an Arrow IPC file; its metadata carries what a rebuild needs."""
    schema = pa.schema([pa.field("event_id", pa.binary(16), nullable=False)], metadata={
        "first": str(batch.first_offset), "last": str(batch.last_offset), "watermark": str(decision.watermark),
    })
    table = pa.Table.from_arrays([to_binary(decision.hi, decision.lo)], schema=schema)
    out = pa.BufferOutputStream()
    with pa.ipc.new_file(out, schema) as writer:
        writer.write_table(table)
    return out.getvalue()
