"""An in-memory Sink and dead-letter store for tests: idempotent by batch identity, with injectable failures."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pyarrow as pa

from consumers.runtime.deadletter import DeadLetterError
from consumers.runtime.parse import Poison
from consumers.runtime.sink import Batch


@dataclass
class MemorySink:
    """Keeps every written batch by identity; ``fail_writes`` makes the next N writes raise."""

    begun: dict[tuple[str, int, int], int] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    writes: int = 0
    fail_writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pending_end(self, topic: str, partition: int, start_offset: int) -> int | None:
        with self.lock:
            return self.begun.get((topic, partition, start_offset))

    def begin(self, batch: Batch) -> None:
        with self.lock:
            self.begun[(batch.topic, batch.partition, batch.first_offset)] = batch.last_offset

    def write(self, batch: Batch) -> None:
        with self.lock:
            self.writes += 1
            if self.fail_writes > 0:
                self.fail_writes -= 1
                raise ConnectionError("injected sink failure")
            self.batches[batch.identity] = batch  # same identity twice: written once

    def rows(self) -> int:
        with self.lock:
            return sum(b.num_rows for b in self.batches.values())

    def table(self) -> pa.Table:
        with self.lock:
            tables = [b.table for b in self.batches.values()]
        return pa.concat_tables(tables) if tables else pa.table({})


@dataclass
class MemoryDeadLetters:
    """Keeps dead letters in a list; ``fail_sends`` makes the next N sends raise (the batch is retried)."""

    sent: list[tuple[str, int, Poison]] = field(default_factory=list)
    fail_sends: int = 0

    def send(self, origin_topic: str, partition: int, poison: list[Poison]) -> None:
        if self.fail_sends > 0:
            self.fail_sends -= 1
            raise DeadLetterError("injected dead-letter failure")
        self.sent.extend((origin_topic, partition, item) for item in poison)

    def close(self) -> None:
        pass
