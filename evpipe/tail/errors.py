"""What `evpipe tail` reports as an error: a message for the user, never a traceback."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message


class TailError(Exception):
    """The tail cannot go on; the message says why."""


def raise_unless_retriable(error: KafkaError) -> None:
    """A consumer error event: TailError unless librdkafka retries it by itself (a broker briefly away)."""
    if error.fatal() or not error.retriable():
        raise TailError(f"Kafka: {error.str()}")


def position(message: Message) -> tuple[int, int]:
    """(partition, offset) of a message or a partition's end-of-partition event, where both are always set."""
    partition, offset = message.partition(), message.offset()
    if partition is None or offset is None:
        raise TailError(f"a message without a partition or offset: {message.error() or message.value()!r}")
    return partition, offset
