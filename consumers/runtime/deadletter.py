"""Dead-letter producer: messages that are not valid events, with the reason and their origin."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Producer

from consumers.runtime.parse import Poison


class DeadLetterError(RuntimeError):
    """The dead-letter topic did not durably accept every message (the batch is retried, not committed)."""


class DeadLetters:
    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._config = config
        self._producer: Producer | None = None  # created on first use: most runs never need it

    def send(self, origin_topic: str, partition: int, poison: list[Poison], timeout: float = 30.0) -> None:
        """Produce and flush; returns only when every message is acknowledged, else raises."""
        if not poison:
            return
        if self._producer is None:
            self._producer = Producer(self._config)
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(err)

        for item in poison:
            headers: list[tuple[str, str | bytes | None]] = [
                ("error", item.error.encode()),
                ("topic", origin_topic.encode()),
                ("partition", str(partition).encode()),
                ("offset", str(item.offset).encode()),
            ]
            self._producer.produce(self.topic, value=item.value, headers=headers, on_delivery=delivered)
        remaining = self._producer.flush(timeout)
        if remaining or errors:
            raise DeadLetterError(
                f"dead-letter topic {self.topic!r}: {remaining} messages unacknowledged, errors: {errors[:3]} "
                "(does the topic exist? `evpipe topics create` makes it)"
            )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
