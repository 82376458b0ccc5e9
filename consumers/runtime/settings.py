"""Settings shared by every consumer-group process built on the runtime (archiver, loader).

Each process subclasses :class:`ConsumerSettings` (composed with its own
mixins) and may override a default, e.g. the archiver batches for minutes to
write large files while the loader flushes every few seconds.
"""

from __future__ import annotations

from pydantic import Field

from evpipe.gctune import DEFAULT_GEN0_THRESHOLD
from evpipe.settings import KafkaSettings


class ConsumerSettings(KafkaSettings):
    consumer_session_timeout_ms: int = Field(
        30000, ge=1000, description="Group session timeout; a crashed member's partitions move after this."
    )
    consumer_instance_id: str = Field(
        "", max_length=249, pattern=r"^[A-Za-z0-9._-]*$",
        description="Static group membership (Kafka's group.instance.id): a stable id per process, unique in "
        "its group, e.g. the pod name on Kubernetes. A member that comes back within the session timeout "
        "takes its partitions back without a rebalance. Empty: dynamic membership.",
    )
    consumer_batch_max_messages: int = Field(
        200_000, ge=1, description="Cut a partition's batch at this many messages."
    )
    consumer_batch_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Cut a partition's batch at this many bytes of message values."
    )
    consumer_batch_max_age_s: float = Field(
        10.0, gt=0, description="Cut a partition's batch when its oldest message was buffered this long ago."
    )
    consumer_buffer_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024,
        description="Global cap on buffered message bytes: over it, partitions pause and the largest buffers flush.",
    )
    consumer_poll_messages: int = Field(
        1_000, ge=1,
        description="Messages taken per consume() call. confluent-kafka builds them holding the GIL, so a large "
        "value stalls the parser and writer threads; 500-1,000 measured fastest (10,000: 25 % slower).",
    )
    consumer_parse_threads: int = Field(
        1, ge=1, le=32,
        description="Threads parsing batches (JSON -> Arrow) in parallel; raise it on hosts with spare cores.",
    )
    consumer_retry_initial_s: float = Field(0.5, gt=0, description="First retry delay after a failed batch write.")
    consumer_retry_max_s: float = Field(30.0, gt=0, description="Cap on the exponential retry delay.")
    consumer_lag_interval_s: float = Field(15.0, gt=0, description="How often per-partition lag is refreshed.")
    consumer_shutdown_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long to keep retrying the final flush before giving up (no loss)."
    )
    consumer_revoke_wait_s: float = Field(
        120.0, ge=0, description="On revocation, how long to wait for a batch being written to finish."
    )
    consumer_gc_gen0_threshold: int = Field(
        DEFAULT_GEN0_THRESHOLD, ge=0,
        description="Python's young-generation GC threshold for this process (0: Python's default of 700); "
        "the default keeps the collector from walking the heap every few hundred consumed messages.",
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of the Prometheus /metrics server (0: off).")
    consumer_low_priority_max_live_lag: int = Field(
        10_000, ge=0,
        description="Backfill lane: pause low-priority topics (the replay topic) while the live topics are more "
        "than this many messages behind (0: never pause them).",
    )
