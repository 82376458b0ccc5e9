"""The steps a cut batch goes through before its commit: parse -> dead-letter -> sink write.

A :class:`Job` is one cut batch on its way; :class:`Stages` runs its next
step: the parse step on a small parser pool (the default, pyarrow's
vectorised parse, releases the GIL), then the dead letters and the sink calls
on the writer thread that makes every sink call (see ``sink.py``; several
writer threads only for a thread-safe sink). Each step is a future the loop
polls, so consuming, parsing and writing overlap.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.runtime.buffer import Cut
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.parse import Parse, Poison, parse_values
from consumers.runtime.sink import Batch, Sink


class DeadLetterSink(Protocol):
    def send(self, origin_topic: str, partition: int, poison: list[Poison]) -> None:
        """Store the poison messages durably; return only once they are, else raise."""

    def close(self) -> None: ...


@dataclass
class Job:
    """A cut batch on its way into the sink; retried until written and committed, or revoked."""

    cut: Cut
    batch: Batch[Any] | None = None  # set once parsed
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
    def __init__(self, sink: Sink, dead_letters: DeadLetterSink, metrics: ConsumerMetrics, parse_threads: int,
                 parse: Parse = parse_values, write_threads: int = 1) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.parse = parse
        # One writer thread unless the sink is thread-safe (the sink contract, sink.py).
        self._shared_sink = write_threads > 1
        self._writer = ThreadPoolExecutor(max_workers=write_threads, thread_name_prefix="evpipe-writer")
        self._parsers = ThreadPoolExecutor(max_workers=parse_threads, thread_name_prefix="evpipe-parser")

    def advance(self, job: Job) -> None:
        """Start the job's remaining steps: parse then write, or (parsed already) dead letters and the sink."""
        if job.batch is None:
            job.future = self._then_write(self._parsers.submit(self._parse, job), job)
        else:
            job.future = self._writer.submit(self._write, job)

    def _then_write(self, parsing: Future[None], job: Job) -> Future[None]:
        """One future for parse and write: a parsed batch is handed to the writer at once, not on the loop's
        next step (a step can wait up to its poll timeout)."""
        both: Future[None] = Future()

        def parsed(done: Future[None]) -> None:
            error = done.exception()
            if error is not None:
                both.set_exception(error)
                return
            try:
                writing = self._writer.submit(self._write, job)
            except RuntimeError as exc:  # the writer pool was shut down meanwhile
                both.set_exception(exc)
                return
            writing.add_done_callback(lambda w: _settle(both, w))

        parsing.add_done_callback(parsed)
        return both

    def pending_end(self, topic: str, partition: int, start: int) -> Future[int | None]:
        """Ask the sink for a begun batch's end, on the writer thread like every sink call.

        A thread-safe sink answers at once on this thread: queued behind the
        writes of other partitions, the question would hold back every cut.
        """
        if not self._shared_sink:
            return self._writer.submit(self.sink.pending_end, topic, partition, start)
        answer: Future[int | None] = Future()
        try:
            answer.set_result(self.sink.pending_end(topic, partition, start))
        except Exception as exc:  # noqa: BLE001  # handed to the caller like a failed writer-thread call
            answer.set_exception(exc)
        return answer

    def close(self) -> None:
        self._parsers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.dead_letters.close()

    def _parse(self, job: Job) -> None:
        cut = job.cut
        parsed = self.parse(cut.offsets, cut.values)
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
        if batch.num_rows:
            with self.metrics.write_seconds.time():
                self.sink.begin(batch)
                self.sink.write(batch)
        job.written = True


def _settle(target: Future[None], source: Future[None]) -> None:
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(None)
