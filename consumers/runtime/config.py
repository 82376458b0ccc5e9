"""The loop's policy knobs, in one object: how batches are cut, retried, bounded and shut down.

Kafka consumers build it from their ``ConsumerSettings`` (:meth:`LoopConfig.of`);
a process on another source (the stage-2 worker's Redis list) builds it from
its own settings, so the loop never reads an environment variable itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.runtime.buffer import FlushPolicy
from consumers.runtime.commit import RetryPolicy
from consumers.runtime.settings import ConsumerSettings


@dataclass(frozen=True)
class LoopConfig:
    flush: FlushPolicy
    retry: RetryPolicy
    poll_messages: int  # messages asked of the source per poll
    buffer_max_bytes: int  # global cap on buffered message bytes
    shutdown_timeout_s: float  # how long the final flush is retried on stop
    revoke_wait_s: float = 120.0  # how long a revocation waits for a batch being written
    lag_interval_s: float = 15.0
    low_priority_max_live_lag: int = 10_000
    parse_threads: int = 1
    write_threads: int = 1  # more than one only for a thread-safe sink (see sink.py)

    @classmethod
    def of(cls, settings: ConsumerSettings) -> LoopConfig:
        s = settings
        return cls(
            flush=FlushPolicy(s.consumer_batch_max_messages, s.consumer_batch_max_bytes, s.consumer_batch_max_age_s),
            retry=RetryPolicy(s.consumer_retry_initial_s, s.consumer_retry_max_s),
            poll_messages=s.consumer_poll_messages,
            buffer_max_bytes=s.consumer_buffer_max_bytes,
            shutdown_timeout_s=s.consumer_shutdown_timeout_s,
            revoke_wait_s=s.consumer_revoke_wait_s,
            lag_interval_s=s.consumer_lag_interval_s,
            low_priority_max_live_lag=s.consumer_low_priority_max_live_lag,
            parse_threads=s.consumer_parse_threads,
        )
