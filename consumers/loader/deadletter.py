"""Rows ClickHouse rejected, back to wire-format messages for the dead-letter topic."""

from __future__ import annotations

import pyarrow as pa

from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.parse import Poison
from consumers.runtime.sink import Batch
from schemas.rows import wire_values


class DeadLetterRows:
    """The sink's ``dead_letter`` callback, producing through the runtime's dead-letter producer.

    Each dead letter's ``offset`` header is its own row's Kafka offset, so
    ``evpipe dlq`` and an operator can find the original message.
    """

    def __init__(self, dead_letters: DeadLetters) -> None:
        self.dead_letters = dead_letters

    def __call__(self, batch: Batch, rows: pa.Table, offsets: list[int], error: str) -> None:
        reason = f"rejected by ClickHouse (batch {batch.identity}): {error}"
        poison = [Poison(offset, value, reason) for offset, value in zip(offsets, wire_values(rows), strict=True)]
        self.dead_letters.send(batch.topic, batch.partition, poison)
