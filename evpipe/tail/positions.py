"""Which partitions to read, where each starts, and where each ended when the tail began.

The end of a partition is taken from a fetch, not from ListOffsets: Tansu (the local broker) answers
ListOffsets(latest) low, with the base offset of the last batch plus one, while the high watermark its fetch
responses carry is right, as on any Kafka. So the consumer is assigned at the end, and each partition's end
is what its first fetch says: the offset of its end-of-partition event, or the high watermark that came with
its first message. On Kafka that first event is the end-of-partition event at the end ListOffsets gave.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from evpipe.tail.errors import TailError, position, raise_unless_retriable

PROBE_TIMEOUT_S = 15.0
METADATA_TIMEOUT_S = 15.0


def topic_partitions(consumer: Consumer, topic: str, wanted: list[int] | None) -> list[int]:
    """The partitions to read (``wanted``, or all); TailError for an unknown topic or partition."""
    try:
        # Every topic, not just this one: a metadata request naming a topic may create it on some brokers.
        metadata = consumer.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise TailError(f"no answer from Kafka: {exc.args[0].str()}") from None
    if topic not in metadata.topics:
        known = sorted(t for t in metadata.topics if not t.startswith("__"))
        raise TailError(f"unknown topic {topic!r}; the topics are: {', '.join(known) or '(none)'}")
    if metadata.topics[topic].error is not None:
        raise TailError(f"topic {topic!r}: {metadata.topics[topic].error.str()}")
    existing = sorted(metadata.topics[topic].partitions)
    missing = sorted(set(wanted or []) - set(existing))
    if missing:
        raise TailError(f"topic {topic!r} has partitions 0-{existing[-1]}; no partition {missing[0]}")
    return sorted(set(wanted)) if wanted else existing


def end_offsets(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's end now, from its first fetch (see the module's docstring); leaves nothing assigned."""
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
    ends: dict[int, int] = {}
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    try:
        while len(ends) < len(partitions):
            if time.monotonic() > deadline:
                silent = sorted(set(partitions) - set(ends))
                raise TailError(f"partitions {silent} of {topic!r} did not answer a fetch in {PROBE_TIMEOUT_S:.0f}s")
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise_unless_retriable(error)
                continue
            partition, offset = position(message)
            if partition not in ends:
                ends[partition] = _end_from(consumer, topic, partition, error is not None, offset)
    finally:
        consumer.unassign()
    return ends


def _end_from(consumer: Consumer, topic: str, partition: int, at_eof: bool, offset: int) -> int:
    if at_eof:
        return offset  # the end-of-partition event's offset is where the partition ends
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
    return max(high, offset + 1)


def start_offsets(consumer: Consumer, topic: str, ends: dict[int, int], from_beginning: bool,
                  from_time_ms: int | None) -> dict[int, int]:
    """Where each partition starts: its beginning, its first message at or after a time, or its end."""
    if from_beginning:
        return {p: OFFSET_BEGINNING for p in ends}
    if from_time_ms is None:
        return dict(ends)
    asked = [TopicPartition(topic, p, from_time_ms) for p in ends]
    try:
        found = consumer.offsets_for_times(asked, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise TailError(f"could not look up offsets by time: {exc.args[0].str()}") from None
    # -1: no message at or after that time, so the partition starts at its end.
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}
