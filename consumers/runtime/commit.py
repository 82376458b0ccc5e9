"""The commit policy: when offsets are committed, and what a failure does.

A batch's ``last_offset + 1`` is committed synchronously, only after its
dead letters were flushed and the sink's ``write`` returned (rule 1 of
``sink.py``); the batches written since the previous step share one commit
call. Any failure, of a write or of a commit, keeps the same batch and
retries it after a capped exponential backoff (``evpipe.backoff``); a batch
that was written and only failed to commit is not written again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.source import Key, Source, SourceError
from consumers.runtime.stages import Job
from evpipe.backoff import delay

log = logging.getLogger("evpipe.consumer")


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float
    cap_s: float

    def delay(self, attempts: int) -> float:
        return delay(self.initial_s, self.cap_s, attempts)

    def schedule(self, job: Job, exc: BaseException) -> None:
        """A step of the job failed: try again (the same batch) after the next backoff delay."""
        job.attempts += 1
        job.next_try = time.monotonic() + self.delay(job.attempts)
        job.last_error = f"{type(exc).__name__}: {exc}"
        stage = "commit" if job.written else "write"
        log.warning("%s: %s failed (attempt %d, retry in %.1fs): %s", job.identity, stage, job.attempts,
                    job.next_try - time.monotonic(), job.last_error)


class CommitPolicy:
    def __init__(self, source: Source, retry: RetryPolicy, metrics: ConsumerMetrics) -> None:
        self.source = source
        self.retry = retry
        self.metrics = metrics

    def commit(self, written: list[tuple[Key, Job]]) -> bool:
        """One synchronous commit for every written batch; on failure each is scheduled for a retry."""
        batches = [job.batch for _, job in written if job.batch is not None]
        try:
            self.source.commit({(b.topic, b.partition): b.last_offset + 1 for b in batches})
        except SourceError as exc:
            for _, job in written:
                self.failed(job, exc)
            return False
        for batch in batches:
            self.metrics.batches.labels(batch.topic).inc()
            self.metrics.rows.labels(batch.topic).inc(batch.num_rows)
            self.metrics.committed.labels(batch.topic).inc(batch.last_offset - batch.first_offset + 1)
        return True

    def failed(self, job: Job, exc: BaseException) -> None:
        self.metrics.write_errors.labels(job.cut.topic).inc()
        self.retry.schedule(job, exc)
