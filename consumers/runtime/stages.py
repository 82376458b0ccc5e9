"""The steps a cut batch goes through before its commit: parse -> dead-letter -> sink write.

A :class:`Job` is one cut batch on its way; :class:`Stages` runs its next
step: the vectorised parse on a small parser pool (pyarrow releases the
GIL), then the dead letters and the sink calls on the one writer thread that
makes every sink call (see ``sink.py``). Each step is a future the loop polls,
so consuming, parsing and writing overlap.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from consumers.runtime.buffer import Cut
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.parse import Poison, parse_values
from consumers.runtime.sink import Batch, Sink


class DeadLetterSink(Protocol):
    def send(self, origin_topic: str, partition: int, poison: list[Poison]) -> None:
        """Store the poison messages durably; return only once they are, else raise."""

    def close(self) -> None: ...


@dataclass
class Job:
    """A cut batch on its way into the sink; retried until written and committed, or revoked."""

    cut: Cut
    batch: Batch | None = None  # set once parsed
    poison: list[Poison] = field(default_factory=list)
    dead_lettered: bool = False
    written: bool = False
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    future: Future[None] | None = None

    @property
    def identity(self) -> str:
        return f"{self.cut.topic}:{self.cut.partition}:{self.cut.first_offset}-{self.cut.last_offset}"


class Stages:
    def __init__(self, sink: Sink, dead_letters: DeadLetterSink, metrics: ConsumerMetrics, parse_threads: int) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.metrics = metrics
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evpipe-writer")
        self._parsers = ThreadPoolExecutor(max_workers=parse_threads, thread_name_prefix="evpipe-parser")

    def advance(self, job: Job) -> None:
        """Start the job's next step: parse, or (parsed) dead letters and the sink."""
        if job.batch is None:
            job.future = self._parsers.submit(self._parse, job)
        else:
            job.future = self._writer.submit(self._write, job)

    def pending_end(self, topic: str, partition: int, start: int) -> Future[int | None]:
        """Ask the sink for a begun batch's end, on the writer thread like every sink call."""
        return self._writer.submit(self.sink.pending_end, topic, partition, start)

    def close(self) -> None:
        self._parsers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.dead_letters.close()

    def _parse(self, job: Job) -> None:
        cut = job.cut
        parsed = parse_values(cut.offsets, cut.values)
        job.poison = parsed.poison
        job.dead_lettered = not parsed.poison
        job.batch = Batch(cut.topic, cut.partition, cut.first_offset, cut.last_offset, parsed.table, cut.nbytes,
                          parsed.offsets)
        cut.values = []  # the table holds the data now: free the raw values while the batch is written

    def _write(self, job: Job) -> None:
        """Writer thread: dead letters first (durable before any commit), then begin and write."""
        batch = job.batch
        assert batch is not None
        if not job.dead_lettered:
            self.dead_letters.send(batch.topic, batch.partition, job.poison)
            job.dead_lettered = True
            self.metrics.dead_letters.labels(batch.topic).inc(len(job.poison))
        if batch.table.num_rows:
            with self.metrics.write_seconds.time():
                self.sink.begin(batch)
                self.sink.write(batch)
        job.written = True
