"""Per-partition buffers, and when to cut a partition's next batch.

A batch is cut when the flush policy says so (count, bytes, age: see
``buffer.FlushPolicy``), or early when the memory cap or the shutdown forces
it; never before the sink answered whether a batch starting at the buffer's
first offset was begun before (``Sink.pending_end``), and then it is cut at
exactly that batch's end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from consumers.runtime.buffer import Cut, FlushPolicy, PartitionBuffer
from consumers.runtime.commit import RetryPolicy
from consumers.runtime.source import Fetched, Key
from consumers.runtime.stages import Stages

log = logging.getLogger("evpipe.consumer")


@dataclass
class _Backoff:
    until: float = 0.0
    attempts: int = 0


class Batching:
    def __init__(self, policy: FlushPolicy, stages: Stages, retry: RetryPolicy,
                 on_error: Callable[[Key, Exception], None]) -> None:
        self.policy = policy
        self.buffers: dict[Key, PartitionBuffer] = {}
        self.asking_backoff: dict[Key, _Backoff] = {}  # partitions whose pending_end question failed
        self._stages = stages
        self._retry = retry
        self._on_error = on_error

    def assign(self, keys: list[Key]) -> None:
        for key in keys:
            # setdefault: never drop a live buffer; re-deliveries are filtered by offset
            self.buffers.setdefault(key, PartitionBuffer(*key))

    def forget(self, key: Key) -> None:
        self.buffers.pop(key, None)
        self.asking_backoff.pop(key, None)

    def route(self, fetched: list[Fetched]) -> Iterator[tuple[str, int]]:
        """Append each partition's run to its buffer (one C-level extend per run); yields (topic, added)."""
        for run in fetched:
            buf = self.buffers.get((run.topic, run.partition))
            if buf is None:
                continue  # revoked while the message was queued: its new owner reads it
            added = buf.extend(run.offsets, run.values)
            if added:
                yield run.topic, added

    def waiting(self, busy: Collection[Key]) -> list[tuple[Key, PartitionBuffer]]:
        """Partitions holding messages and no batch in flight (one batch per partition at a time)."""
        return [(key, buf) for key, buf in self.buffers.items() if key not in busy and len(buf)]

    def due(self, busy: Collection[Key], now: float) -> list[Key]:
        return [key for key, buf in self.waiting(busy) if self.ready(key, buf, now) and buf.due(self.policy, now)]

    def cut(self, key: Key, now: float) -> Cut:
        buf = self.buffers[key]
        cut = buf.cut(self.policy)
        buf.pending_checked = False  # the next batch starts elsewhere: ask the sink again
        self.ready(key, buf, now)  # asked while this one is written
        return cut

    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def ready(self, key: Key, buf: PartitionBuffer, now: float) -> bool:
        """Whether the sink was asked if a batch starting at the buffer's first offset was begun before.

        Asked once per batch start, on the writer thread like every sink call
        (a sink sees one thread), so it answers on a later step.
        """
        if buf.pending_checked:
            return True
        if not len(buf):
            return False
        future = buf.pending_future
        if future is None:
            backoff = self.asking_backoff.get(key)
            if backoff is not None and now < backoff.until:
                return False
            # A sink that answers on this thread (sink.py) has answered already: no need to wait a step.
            future = buf.pending_future = self._stages.pending_end(key[0], key[1], buf.first_offset)
        if not future.done():
            return False
        buf.pending_future = None
        try:
            buf.pending_end = future.result()
        except Exception as exc:  # noqa: BLE001 (deliberate: reported, never swallowed silently)
            backoff = self.asking_backoff.setdefault(key, _Backoff())
            backoff.attempts += 1
            backoff.until = now + self._retry.delay(backoff.attempts)
            self._on_error(key, exc)
            log.warning("%s[%d]: cannot read the begun-batch record (retrying): %s", key[0], key[1], exc)
            return False
        self.asking_backoff.pop(key, None)
        buf.pending_checked = True
        if buf.pending_end is not None:
            log.info("%s[%d]: re-forming begun batch %d-%d", key[0], key[1], buf.first_offset, buf.pending_end)
        return True
