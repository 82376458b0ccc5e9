"""The consumer loop: consume, buffer per partition, cut batches, write them to a sink, commit.

The main thread owns all state (rebalance callbacks run inside ``consume``)
and does the consuming, cutting and committing; a batch is parsed on a small
parser pool, then dead-lettered and written on the one writer thread that
makes every sink call (pyarrow and I/O release the GIL), so fetching,
parsing and writing overlap. The order for one partition is strictly
sequential: a batch is cut only after the previous one of that partition was
written *and* committed, which is what lets ``Sink.pending_end`` re-form a
begun batch exactly after a crash (see ``consumers/runtime/sink.py``). A
revoked partition's batch that is being written is waited for before the
revocation completes, so its next owner never races it.

Per batch::

    cut -> parse (vectorised; poison isolated) -> dead letters produced + flushed
        -> sink.begin -> sink.write -> commit(last + 1, synchronous)

A failure anywhere before the commit pauses the partition and retries the same
batch with capped exponential backoff; the loop keeps calling ``consume`` so the
group membership stays alive, and resumes the partition once the batch is in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from consumers.runtime.buffer import Cut, FlushPolicy, PartitionBuffer
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.kafka_source import KafkaSource
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.parse import Poison, parse_values
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.sink import Batch, Sink
from consumers.runtime.source import Fetched, Key, Source, SourceError
from evpipe.backoff import delay
from evpipe.kafka import consumer_config, producer_config

log = logging.getLogger("evpipe.consumer")


@dataclass
class Job:
    """A cut batch on its way into the sink; retried until written and committed, or revoked."""

    cut: Cut
    batch: Batch | None = None  # set by the writer thread once parsed
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


@dataclass
class _Backoff:
    until: float = 0.0
    attempts: int = 0


@dataclass
class LoopStats:
    """Counters a caller (tests, benchmarks) can read without scraping /metrics."""

    consumed: int = 0
    committed_batches: int = 0
    rows: int = 0
    dead_letters: int = 0
    write_errors: int = 0
    assigned: set[Key] = field(default_factory=set)


class ConsumerLoop:
    """Runs one consumer-group member that feeds ``sink`` until :meth:`stop`.

    Signals and the collector policy belong to the process: see ``consumers/runtime/process.py``.
    """

    def __init__(
        self,
        settings: ConsumerSettings,
        sink: Sink,
        group_id: str,
        topics: list[str],
        consumer_overrides: dict[str, Any] | None = None,
        low_priority_topics: Collection[str] = (),
        metrics: ConsumerMetrics | None = None,
        source: Source | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else ConsumerMetrics()
        self.sink = sink
        self.group_id = group_id
        self.topics = topics
        # Backfill lane: these topics are only fetched while the live ones are caught up.
        self.low_priority = frozenset(low_priority_topics) & set(topics)
        self._hold_low_priority = False
        self._next_priority_check = 0.0
        self.policy = FlushPolicy(
            settings.consumer_batch_max_messages, settings.consumer_batch_max_bytes, settings.consumer_batch_max_age_s
        )
        self.stats = LoopStats()
        self._overrides = consumer_overrides or {}
        self._stop = threading.Event()
        self.source: Source = source if source is not None else KafkaSource(consumer_config(
            settings, group_id, **{"session.timeout.ms": settings.consumer_session_timeout_ms}, **self._overrides))
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evpipe-writer")
        self._parsers = ThreadPoolExecutor(max_workers=settings.consumer_parse_threads,
                                           thread_name_prefix="evpipe-parser")
        self._dead = DeadLetters(producer_config(settings, **{"linger.ms": 0}), settings.kafka_dlq_topic)
        self._buffers: dict[Key, PartitionBuffer] = {}
        self._jobs: dict[Key, Job] = {}
        self._pending_backoff: dict[Key, _Backoff] = {}
        self._paused: set[Key] = set()
        self._over_cap = False
        self._draining = False
        self._next_lag = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to flush what it holds, commit and exit (safe from any thread)."""
        self._stop.set()

    def run(self) -> None:
        try:
            self.source.subscribe(self.topics, self._on_assign, self._on_revoke, self._on_lost)
            log.info("consuming %s as group %s", ",".join(self.topics), self.group_id)
            while not self._stop.is_set():
                self._step(drain=False)
            self._shutdown()
        finally:
            self.source.close()  # leaves the group: revokes (and drops) whatever is left
            self._parsers.shutdown(wait=True)
            self._writer.shutdown(wait=True)
            self._dead.close()
            self.metrics.assigned.set(0)

    def _shutdown(self) -> None:
        """Stop fetching, cut everything that may be cut, write and commit it, within the shutdown timeout."""
        self._draining = True  # _sync_pauses now pauses every partition: no new messages
        deadline = time.monotonic() + self.settings.consumer_shutdown_timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            asking = False
            for key, buf in list(self._buffers.items()):
                if key in self._jobs or not len(buf):
                    continue
                if not self._check_pending(key, buf, now):
                    asking = True
                elif buf.can_force():
                    self._jobs[key] = self._new_job(buf)
            if not self._jobs and not asking:
                return
            self._step(drain=True)
        log.warning("stopping with %d batches unwritten (not committed: they are re-read on restart)",
                    len(self._jobs))

    # -- one iteration ---------------------------------------------------------------------------

    def _step(self, drain: bool) -> None:
        # Short waits while batches are in flight: each stage change (parsed, written) is picked up here.
        busy = any(job.future is not None for job in self._jobs.values())
        timeout = 0.005 if busy else 0.1
        self._route(self.source.poll(self.settings.consumer_poll_messages, timeout))
        now = time.monotonic()
        if not drain:
            self._cut_due(now)
        self._run_jobs(now)
        if not drain:
            self._enforce_cap()
        if self.low_priority and now >= self._next_priority_check:
            self._next_priority_check = now + 0.5
            self._hold_low_priority = self._live_lag_exceeded()
        self._sync_pauses()
        if now >= self._next_lag:
            self._next_lag = now + self.settings.consumer_lag_interval_s
            self._refresh_lag()

    def _route(self, fetched: list[Fetched]) -> None:
        """Append each partition's run to its buffer (one C-level extend per run, not per message)."""
        for run in fetched:
            buf = self._buffers.get((run.topic, run.partition))
            if buf is None:
                continue  # revoked while the message was queued: its new owner reads it
            added = buf.extend(run.offsets, run.values)
            if added:
                self.metrics.messages.labels(run.topic).inc(added)
                self.stats.consumed += added

    # -- cutting batches -------------------------------------------------------------------------

    def _cut_due(self, now: float) -> None:
        for key, buf in list(self._buffers.items()):
            if key in self._jobs or not len(buf):
                continue
            if self._check_pending(key, buf, now) and buf.due(self.policy, now):
                self._jobs[key] = self._new_job(buf)

    def _check_pending(self, key: Key, buf: PartitionBuffer, now: float) -> bool:
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
            backoff = self._pending_backoff.get(key)
            if backoff is None or now >= backoff.until:
                buf.pending_future = self._writer.submit(self.sink.pending_end, key[0], key[1], buf.first_offset)
            return False
        if not future.done():
            return False
        buf.pending_future = None
        try:
            buf.pending_end = future.result()
        except Exception as exc:  # noqa: BLE001 (deliberate: reported, never swallowed silently)
            backoff = self._pending_backoff.setdefault(key, _Backoff())
            backoff.attempts += 1
            backoff.until = now + self._delay(backoff.attempts)
            self.metrics.write_errors.labels(key[0]).inc()
            self.stats.write_errors += 1
            log.warning("%s[%d]: cannot read the begun-batch record (retrying): %s", key[0], key[1], exc)
            return False
        self._pending_backoff.pop(key, None)
        buf.pending_checked = True
        if buf.pending_end is not None:
            log.info("%s[%d]: re-forming begun batch %d-%d", key[0], key[1], buf.first_offset, buf.pending_end)
        return True

    def _new_job(self, buf: PartitionBuffer) -> Job:
        job = Job(buf.cut(self.policy))
        self._submit(job)
        buf.pending_checked = False  # the next batch starts elsewhere: ask the sink again
        self._check_pending((buf.topic, buf.partition), buf, time.monotonic())  # asked while this one is written
        return job

    # -- writing and committing ------------------------------------------------------------------

    def _run_jobs(self, now: float) -> None:
        done: list[tuple[Key, Job]] = []
        for key, job in list(self._jobs.items()):
            if job.future is not None:
                if job.future.done():
                    error = job.future.exception()
                    job.future = None
                    if error is not None:
                        self._failed(key, job, error)  # type: ignore[arg-type]  # stages raise Exceptions
                    elif job.written:
                        done.append((key, job))
                    else:
                        self._submit(job)  # parsed: on to the writer
            elif job.next_try <= now:
                if job.written:
                    done.append((key, job))  # only the commit failed: do not write again
                else:
                    self._submit(job)
        if done:
            self._commit(done)

    def _submit(self, job: Job) -> None:
        """Next stage of a job: parse on the parser pool, then dead letters and the sink on the writer thread."""
        if job.batch is None:
            job.future = self._parsers.submit(self._parse, job)
        else:
            job.future = self._writer.submit(self._write, job)

    def _parse(self, job: Job) -> None:
        """Parser pool: vectorised parse of the batch's values (pyarrow releases the GIL)."""
        cut = job.cut
        parsed = parse_values(cut.offsets, cut.values)
        job.poison = parsed.poison
        job.dead_lettered = not parsed.poison
        job.batch = Batch(cut.topic, cut.partition, cut.first_offset, cut.last_offset, parsed.table, cut.nbytes,
                          parsed.offsets)
        cut.values = []  # the table holds the data now: free the raw values while the batch is written

    def _write(self, job: Job) -> None:
        """Writer thread: dead-letter, begin, write. The only thread that calls the sink."""
        batch = job.batch
        assert batch is not None
        if not job.dead_lettered:
            self._dead.send(batch.topic, batch.partition, job.poison)
            job.dead_lettered = True
            self.metrics.dead_letters.labels(batch.topic).inc(len(job.poison))
        if batch.table.num_rows:
            with self.metrics.write_seconds.time():
                self.sink.begin(batch)
                self.sink.write(batch)
        job.written = True

    def _commit(self, done: list[tuple[Key, Job]]) -> None:
        """One synchronous commit for every batch written since the last step."""
        batches = [job.batch for _, job in done if job.batch is not None]
        try:
            self.source.commit({(b.topic, b.partition): b.last_offset + 1 for b in batches})
        except SourceError as exc:
            for key, job in done:
                self._failed(key, job, exc)
            return
        for key, job in done:
            self._committed(key, job)

    def _committed(self, key: Key, job: Job) -> None:
        assert job.batch is not None
        batch = job.batch
        self._jobs.pop(key, None)
        count = batch.last_offset - batch.first_offset + 1
        self.metrics.batches.labels(batch.topic).inc()
        self.metrics.rows.labels(batch.topic).inc(batch.table.num_rows)
        self.metrics.committed.labels(batch.topic).inc(count)
        self.stats.committed_batches += 1
        self.stats.rows += batch.table.num_rows
        self.stats.dead_letters += len(job.poison)
        if job.attempts:
            log.info("%s: written after %d retries", batch.identity, job.attempts)

    def _failed(self, key: Key, job: Job, exc: Exception) -> None:
        job.attempts += 1
        job.next_try = time.monotonic() + self._delay(job.attempts)
        job.last_error = f"{type(exc).__name__}: {exc}"
        self.metrics.write_errors.labels(job.cut.topic).inc()
        self.stats.write_errors += 1
        stage = "commit" if job.written else "write"
        log.warning("%s: %s failed (attempt %d, retry in %.1fs): %s", job.identity, stage, job.attempts,
                    job.next_try - time.monotonic(), job.last_error)

    def _delay(self, attempts: int) -> float:
        return delay(self.settings.consumer_retry_initial_s, self.settings.consumer_retry_max_s, attempts)

    # -- memory bound and pausing ----------------------------------------------------------------

    def buffered_bytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values()) + sum(j.cut.nbytes for j in self._jobs.values())

    def _enforce_cap(self) -> None:
        """Over the global cap: cut the largest buffers now, and pause fetching until under half of it."""
        cap = self.settings.consumer_buffer_max_bytes
        total = self.buffered_bytes()
        if total > cap:
            now = time.monotonic()
            waiting = sum(b.nbytes for b in self._buffers.values())
            for key, buf in sorted(self._buffers.items(), key=lambda kv: -kv[1].nbytes):
                if waiting <= cap // 2:
                    break
                if key in self._jobs or not self._check_pending(key, buf, now) or not buf.can_force():
                    continue
                job = self._jobs[key] = self._new_job(buf)
                waiting -= job.cut.nbytes
        self._over_cap = total > cap if not self._over_cap else total > cap // 2
        self.metrics.buffer_bytes.set(total)

    def _sync_pauses(self) -> None:
        """Pause partitions whose batch is failing, or all (but those awaiting a begun batch's end) over the cap."""
        wanted = {key for key, job in self._jobs.items() if job.attempts > 0} | set(self._pending_backoff)
        if self._draining:
            wanted = set(self._buffers)
        if self._over_cap:
            wanted |= {key for key, buf in self._buffers.items() if buf.pending_end is None}
        if self._hold_low_priority:
            wanted |= {key for key, buf in self._buffers.items()
                       if key[0] in self.low_priority and buf.pending_end is None}
        wanted &= set(self._buffers)
        pause, resume = wanted - self._paused, self._paused - wanted
        if pause:
            self.source.pause(pause)
        if resume:
            self.source.resume(resume)  # from the last offset handed out + 1; the buffer drops re-deliveries
        self._paused = wanted
        self.metrics.paused.set(len(wanted))

    def _live_lag_exceeded(self) -> bool:
        """Whether the live topics' backlog is over the threshold (with hysteresis: resume below half).

        Uses the high watermarks librdkafka caches from fetch responses, so the
        check costs no broker round trip.
        """
        limit = self.settings.consumer_low_priority_max_live_lag
        if limit <= 0:
            return False
        live = [key for key in self._buffers if key[0] not in self.low_priority]
        if not live:
            return False
        backlog = 0
        for key, position in self.source.positions(live).items():
            _low, high = self.source.watermarks(key, cached=True)
            if position >= 0 and high >= 0:
                backlog += max(0, high - position)
        backlog += sum(len(buf) for key, buf in self._buffers.items() if key[0] not in self.low_priority)
        self.metrics.live_backlog.set(backlog)
        return backlog > (limit // 2 if self._hold_low_priority else limit)

    # -- rebalancing -----------------------------------------------------------------------------

    def _on_assign(self, partitions: list[Key]) -> None:
        for key in partitions:
            # setdefault: never drop a live buffer; re-deliveries are filtered by offset
            self._buffers.setdefault(key, PartitionBuffer(*key))
        self.stats.assigned = set(self._buffers)
        self.metrics.assigned.set(len(self._buffers))
        log.info("assigned %s", _names(partitions))

    def _on_revoke(self, partitions: list[Key]) -> None:
        self._unpause(partitions)
        self._drop(partitions)
        log.info("revoked %s", _names(partitions))

    def _on_lost(self, partitions: list[Key]) -> None:
        # A lost partition can come straight back to us; librdkafka keeps its pause flag
        # across the loss, so without this it would be re-assigned paused and never fetched.
        self._unpause(partitions)
        self._drop(partitions)
        log.warning("lost %s (session expired): dropped their buffers", _names(partitions))

    def _unpause(self, partitions: list[Key]) -> None:
        """Clear the source's pause flag on partitions we are giving up, so a re-assignment starts fetching."""
        paused = [key for key in partitions if key in self._paused]
        if paused:
            try:
                self.source.resume(paused)
            except SourceError as exc:  # never fail a rebalance callback over it
                log.warning("could not resume %s on giving them up: %s", _names(paused), exc)

    def _drop(self, partitions: list[Key]) -> None:
        """Forget revoked partitions: their buffers and unfinished batches are never committed by us.

        A batch the writer thread is still writing is waited for first: the
        partition's next owner re-forms it from the sink's record and must not
        race our write of it.
        """
        for key in partitions:
            self._buffers.pop(key, None)
            job = self._jobs.pop(key, None)
            if job is not None and job.future is not None:
                try:
                    job.future.result(timeout=self.settings.consumer_revoke_wait_s)
                except Exception as exc:  # noqa: BLE001 (failed or still running: not committed either way)
                    log.warning("%s: in-flight write at revocation did not succeed: %r", job.identity, exc)
            self._pending_backoff.pop(key, None)
            self._paused.discard(key)
            self.metrics.forget_partition(*key)
        self.stats.assigned = set(self._buffers)
        self.metrics.assigned.set(len(self._buffers))

    # -- lag ---------------------------------------------------------------------------------------

    def _refresh_lag(self) -> None:
        keys = list(self._buffers)
        if not keys:
            return
        try:
            for (topic, partition), offset in self.source.committed(keys).items():
                low, high = self.source.watermarks((topic, partition), cached=False)
                position = offset if offset >= 0 else low
                self.metrics.lag.labels(topic, str(partition)).set(max(0, high - position))
        except SourceError as exc:
            log.debug("lag refresh failed: %s", exc)


def _names(partitions: list[Key]) -> str:
    return ", ".join(f"{topic}[{partition}]" for topic, partition in partitions) or "nothing"
