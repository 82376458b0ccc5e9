"""The source a consumer loop reads: a consumer-group member's view of partitioned, offset-ordered logs.

Two implementations: ``kafka_source.KafkaSource`` (confluent-kafka) and
``memory_source.MemorySource`` (an in-memory broker for the runtime's unit
tests). The loop only ever sees partitions as ``(topic, partition)`` keys and
messages as :class:`Fetched` runs, so it holds no client types.

Rebalance callbacks run *inside* :meth:`Source.poll`, on the loop's thread,
as librdkafka runs them: the loop's state needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

Key = tuple[str, int]
Rebalance = Callable[[list[Key]], None]


class SourceError(Exception):
    """A source call failed (the loop retries a failed commit like a failed write)."""


@dataclass
class Fetched:
    """Consecutive messages of one partition, in offset order: offsets and values aligned."""

    topic: str
    partition: int
    offsets: list[int]
    values: list[bytes]


class Source(Protocol):
    def subscribe(self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance) -> None:
        """Join the group; the callbacks get the partitions gained, given up, or lost with the session."""

    def poll(self, max_messages: int, timeout: float) -> list[Fetched]:
        """Up to ``max_messages`` messages of unpaused partitions, waiting at most ``timeout`` seconds."""

    def pause(self, keys: Collection[Key]) -> None:
        """Stop fetching these partitions (the group membership stays alive)."""

    def resume(self, keys: Collection[Key]) -> None:
        """Fetch again, from the offset after the last message handed out."""

    def commit(self, offsets: dict[Key, int]) -> None:
        """Commit the next offset to read per partition, synchronously; raises SourceError."""

    def positions(self, keys: Collection[Key]) -> dict[Key, int]:
        """The next offset the source will fetch per partition (-1: not known yet)."""

    def watermarks(self, key: Key, cached: bool) -> tuple[int, int]:
        """(low, high) offsets of a partition; ``cached`` costs no broker round trip (-1: unknown)."""

    def committed(self, keys: Collection[Key]) -> dict[Key, int]:
        """The group's committed offsets (-1: none); raises SourceError."""

    def close(self) -> None:
        """Leave the group: whatever is still assigned is revoked."""
