"""The consumer loop: consume, buffer per partition, cut batches, write them to a sink, commit.

Per batch, each step in its own module::

    source.poll (source.py) -> buffer, cut (batching.py)
        -> parse (pluggable; vectorised Arrow by default; poison isolated)
        -> dead letters stored -> sink.begin + sink.write
           (stages.py: parser pool, then the writer thread, or threads for a thread-safe sink)
        -> commit(last + 1, synchronous) (commit.py)

The source is Kafka (kafka_source.py), the stage-2 worker's Redis list
(consumers/worker/source.py) or memory (memory_source.py, for tests); the
policy knobs come in one ``LoopConfig`` (config.py).

The main thread owns all state (rebalance callbacks run inside ``poll``) and
does the consuming, cutting and committing; parsing and writing run on their
threads, so fetching, parsing and writing overlap. The order for one
partition is strictly sequential: a batch is cut only after the previous one
of that partition was written *and* committed, which is what lets
``Sink.pending_end`` re-form a begun batch exactly after a crash (see
``sink.py``). A revoked partition's batch that is being written is waited for
before the revocation completes, so its next owner never races it.

A failure anywhere before the commit pauses the partition (pausing.py) and
retries the same batch with capped exponential backoff; the loop keeps
polling so the group membership stays alive, and resumes the partition once
the batch is in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from consumers.runtime.batching import Batching
from consumers.runtime.commit import CommitPolicy
from consumers.runtime.config import LoopConfig
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.kafka_source import KafkaSource
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.parse import Parse, parse_values
from consumers.runtime.pausing import Pauses
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.sink import Sink
from consumers.runtime.source import Key, Source, SourceError
from consumers.runtime.stages import DeadLetterSink, Job, Stages
from evpipe.kafka import consumer_config, producer_config

log = logging.getLogger("evpipe.consumer")


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
        settings: ConsumerSettings | LoopConfig,
        sink: Sink,
        group_id: str,
        topics: list[str],
        consumer_overrides: dict[str, Any] | None = None,
        low_priority_topics: Collection[str] = (),
        metrics: ConsumerMetrics | None = None,
        source: Source | None = None,
        dead_letters: DeadLetterSink | None = None,
        parse: Parse = parse_values,
    ) -> None:
        """Kafka consumers pass their ``ConsumerSettings``: the source and the dead-letter topic are built
        from them. Any other source comes with its own ``LoopConfig``, ``source`` and ``dead_letters``."""
        config = LoopConfig.of(settings) if isinstance(settings, ConsumerSettings) else settings
        self.config = config
        self.sink = sink
        self.group_id = group_id
        self.topics = topics
        self.metrics = metrics if metrics is not None else ConsumerMetrics()
        self.stats = LoopStats()
        self.source = source if source is not None else _kafka_source(settings, group_id, consumer_overrides)
        if dead_letters is None:
            dead_letters = _kafka_dead_letters(settings)
        self.stages = Stages(sink, dead_letters, self.metrics, config.parse_threads, parse, config.write_threads)
        self.commits = CommitPolicy(self.source, config.retry, self.metrics)
        self.batching = Batching(config.flush, self.stages, config.retry, self._asking_failed)
        # Backfill lane: these topics are only fetched while the live ones are caught up.
        self.pauses = Pauses(self.source, frozenset(low_priority_topics) & set(topics),
                             config.low_priority_max_live_lag, self.metrics)
        self._jobs: dict[Key, Job] = {}
        self._stop = threading.Event()
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
            self.stages.close()
            self.metrics.assigned.set(0)

    def _shutdown(self) -> None:
        """Stop fetching, cut everything that may be cut, write and commit it, within the shutdown timeout."""
        self._draining = True  # every partition is paused now: no new messages
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            asking = False
            for key, buf in self.batching.waiting(self._jobs):
                if not self.batching.ready(key, buf, now):
                    asking = True
                elif buf.can_force():
                    self._start(key, now)
            if not self._jobs and not asking:
                return
            self._step(drain=True)
        log.warning("stopping with %d batches unwritten (not committed: they are re-read on restart)",
                    len(self._jobs))

    # -- one iteration ---------------------------------------------------------------------------

    def _step(self, drain: bool) -> None:
        # Short waits while batches are in flight: each stage change (parsed, written) is picked up here.
        busy = any(job.future is not None for job in self._jobs.values())
        fetched = self.source.poll(self.config.poll_messages, 0.005 if busy else 0.1)
        for topic, added in self.batching.route(fetched):
            self.metrics.messages.labels(topic).inc(added)
            self.stats.consumed += added
        now = time.monotonic()
        if not drain:
            for key in self.batching.due(self._jobs, now):
                self._start(key, now)
        self._run_jobs(now)
        if not drain:
            self._enforce_cap()
        self.pauses.check_lanes(self.batching.buffers, now)
        self._sync_pauses()
        if now >= self._next_lag:
            self._next_lag = now + self.config.lag_interval_s
            self._refresh_lag()

    def _start(self, key: Key, now: float) -> Job:
        job = self._jobs[key] = Job(self.batching.cut(key, now))
        self.stages.advance(job)
        return job

    def _run_jobs(self, now: float) -> None:
        """Move every job on: the commit once written, a retry when its backoff is over."""
        written: list[tuple[Key, Job]] = []
        for key, job in list(self._jobs.items()):
            if job.future is not None:
                if not job.future.done():
                    continue
                error = job.future.exception()
                job.future = None
                if error is not None:
                    self._failed(job, error)
                else:
                    written.append((key, job))  # the future covers every step up to the write
            elif job.next_try <= now:
                if job.written:
                    written.append((key, job))  # only the commit failed: do not write again
                else:
                    self.stages.advance(job)
        if written and self.commits.commit(written):
            for key, job in written:
                self._committed(key, job)
        elif written:
            self.stats.write_errors += len(written)

    def _committed(self, key: Key, job: Job) -> None:
        assert job.batch is not None
        self._jobs.pop(key, None)
        self.stats.committed_batches += 1
        self.stats.rows += job.batch.num_rows
        self.stats.dead_letters += len(job.poison)
        if job.attempts:
            log.info("%s: written after %d retries", job.batch.identity, job.attempts)

    def _failed(self, job: Job, exc: BaseException) -> None:
        self.stats.write_errors += 1
        self.commits.failed(job, exc)

    def _asking_failed(self, key: Key, _exc: Exception) -> None:
        self.metrics.write_errors.labels(key[0]).inc()
        self.stats.write_errors += 1

    # -- memory bound and pausing ----------------------------------------------------------------

    def buffered_bytes(self) -> int:
        return self.batching.nbytes() + sum(j.cut.nbytes for j in self._jobs.values())

    def _enforce_cap(self) -> None:
        """Over the global cap: cut the largest buffers, and pause fetching until under half of it.

        The cutting goes on for as long as the pause does: a pause with buffers left between half the
        cap and the cap, and no cut, would wait for their age limit (minutes, for the archiver) with
        nothing fetched: seen as a stalled test in CI."""
        cap = self.config.buffer_max_bytes
        total = self.buffered_bytes()
        self._over_cap = total > cap if not self._over_cap else total > cap // 2
        if self._over_cap:
            now = time.monotonic()
            waiting = self.batching.nbytes()
            for key, buf in sorted(self.batching.waiting(self._jobs), key=lambda kv: -kv[1].nbytes):
                if waiting <= cap // 2:
                    break
                if self.batching.ready(key, buf, now) and buf.can_force():
                    waiting -= self._start(key, now).cut.nbytes
        self.metrics.buffer_bytes.set(total)

    def _sync_pauses(self) -> None:
        failing = {key for key, job in self._jobs.items() if job.attempts > 0} | set(self.batching.asking_backoff)
        self.pauses.sync(self.batching.buffers, failing, self._draining, self._over_cap)

    # -- rebalancing -----------------------------------------------------------------------------

    def _on_assign(self, partitions: list[Key]) -> None:
        self.batching.assign(partitions)
        self._assigned_changed()
        log.info("assigned %s", _names(partitions))

    def _on_revoke(self, partitions: list[Key]) -> None:
        self._drop(partitions)
        log.info("revoked %s", _names(partitions))

    def _on_lost(self, partitions: list[Key]) -> None:
        self._drop(partitions)
        log.warning("lost %s (session expired): dropped their buffers", _names(partitions))

    def _drop(self, partitions: list[Key]) -> None:
        """Forget partitions given up: their buffers and unfinished batches are never committed by us.

        A batch the writer thread is still writing is waited for first: the
        partition's next owner re-forms it from the sink's record and must not
        race our write of it.
        """
        self.pauses.release(partitions)
        for key in partitions:
            self.batching.forget(key)
            job = self._jobs.pop(key, None)
            if job is not None and job.future is not None:
                try:
                    job.future.result(timeout=self.config.revoke_wait_s)
                except Exception as exc:  # noqa: BLE001 (failed or still running: not committed either way)
                    log.warning("%s: in-flight write at revocation did not succeed: %r", job.identity, exc)
            self.metrics.forget_partition(*key)
        self._assigned_changed()

    def _assigned_changed(self) -> None:
        self.stats.assigned = set(self.batching.buffers)
        self.metrics.assigned.set(len(self.batching.buffers))

    # -- lag ---------------------------------------------------------------------------------------

    def _refresh_lag(self) -> None:
        keys = list(self.batching.buffers)
        if not keys:
            return
        try:
            for (topic, partition), offset in self.source.committed(keys).items():
                # The high watermarks the fetch responses carry: asking the broker instead is a round trip
                # per partition, each queued behind a fetch's long poll on the same connection, and it
                # stalled this loop for seconds per refresh (a hot partition's consumption fell to 1,000
                # messages per 3-6 s with CONSUMER_LAG_INTERVAL_S=1; see bench/overflow.py).
                low, high = self.source.watermarks((topic, partition), cached=True)
                position = offset if offset >= 0 else low
                self.metrics.lag.labels(topic, str(partition)).set(max(0, high - position))
        except SourceError as exc:
            log.debug("lag refresh failed: %s", exc)


def _kafka_source(settings: ConsumerSettings | LoopConfig, group_id: str,
                  overrides: dict[str, Any] | None) -> KafkaSource:
    if not isinstance(settings, ConsumerSettings):
        raise TypeError("a loop built from a LoopConfig needs its source (only ConsumerSettings describe a Kafka one)")
    config = consumer_config(settings, group_id, **{"session.timeout.ms": settings.consumer_session_timeout_ms})
    if settings.consumer_instance_id:
        # Static membership: a restarted member rejoins as itself, and its partitions wait for it instead of
        # moving twice (away at the session timeout, back at the next rebalance).
        config["group.instance.id"] = settings.consumer_instance_id
    return KafkaSource(config | (overrides or {}))


def _kafka_dead_letters(settings: ConsumerSettings | LoopConfig) -> DeadLetters:
    if not isinstance(settings, ConsumerSettings):
        raise TypeError("a loop built from a LoopConfig needs its dead-letter store")
    return DeadLetters(producer_config(settings, **{"linger.ms": 0}), settings.kafka_dlq_topic)


def _names(partitions: list[Key]) -> str:
    return ", ".join(f"{topic}[{partition}]" for topic, partition in partitions) or "nothing"
