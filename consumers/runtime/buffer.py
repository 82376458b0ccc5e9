"""Per-partition buffers of consumed messages, with the flush policy that cuts them into batches.

Buffers keep the ``Message`` objects as consumed: the consuming thread does
no per-message work beyond routing (``len(message)`` is the value's size, in
C), and values and offsets are pulled out on the writer thread at cut time.
"""

from __future__ import annotations

import bisect
import itertools
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from confluent_kafka import Message


@dataclass(frozen=True)
class FlushPolicy:
    max_messages: int
    max_bytes: int
    max_age_s: float


@dataclass
class Cut:
    """The consumed messages of one batch, in offset order."""

    topic: str
    partition: int
    messages: list[Message]
    nbytes: int
    first_offset: int = -1
    last_offset: int = -1

    def __post_init__(self) -> None:
        if self.messages:
            self.first_offset = self.messages[0].offset()
            self.last_offset = self.messages[-1].offset()

    @property
    def offsets(self) -> list[int]:
        return [m.offset() for m in self.messages]

    @property
    def values(self) -> list[bytes]:
        return [m.value() for m in self.messages]


@dataclass
class PartitionBuffer:
    """Messages of one assigned partition not yet cut into a batch.

    ``pending_end`` is the end of a batch a previous owner began but may not
    have committed: until the buffer holds it, nothing is cut, and then the
    first batch is cut at exactly that offset (never by the policy).
    """

    topic: str
    partition: int
    messages: list[Message] = field(default_factory=list)
    nbytes: int = 0
    started: float = 0.0  # monotonic time the oldest buffered message arrived
    next_offset: int | None = None  # offset after the last message seen; guards re-deliveries
    pending_checked: bool = False
    pending_end: int | None = None
    pending_future: Future[int | None] | None = None  # the sink's answer, on its way

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def first_offset(self) -> int:
        return int(self.messages[0].offset())

    def extend(self, messages: list[Message]) -> int:
        """Add messages in offset order; drops re-deliveries of offsets already seen. Returns the count added."""
        if self.next_offset is not None and messages and messages[0].offset() < self.next_offset:
            bound = self.next_offset
            messages = [m for m in messages if m.offset() >= bound]
        if not messages:
            return 0
        if not self.messages:
            self.started = time.monotonic()
        self.messages.extend(messages)
        self.nbytes += sum(map(len, messages))
        self.next_offset = messages[-1].offset() + 1
        return len(messages)

    def due(self, policy: FlushPolicy, now: float) -> bool:
        """Whether a batch should be cut now."""
        if not self.messages:
            return False
        if self.pending_end is not None:
            return bool(self.messages[-1].offset() >= self.pending_end)
        return (
            len(self.messages) >= policy.max_messages
            or self.nbytes >= policy.max_bytes
            or now - self.started >= policy.max_age_s
        )

    def can_force(self) -> bool:
        """Whether a batch may be cut early (memory pressure, shutdown): not while a pending end is unmet."""
        if not self.messages:
            return False
        return self.pending_end is None or self.messages[-1].offset() >= self.pending_end

    def cut(self, policy: FlushPolicy) -> Cut:
        """Remove and return the next batch: up to the pending end, else up to the policy's limits."""
        if self.pending_end is not None:
            count = bisect.bisect_right([m.offset() for m in self.messages], self.pending_end)
            self.pending_end = None
        elif self.nbytes < policy.max_bytes:
            count = min(len(self.messages), policy.max_messages)
        else:
            count = _count_within(self.messages, policy)
        taken = self.messages[:count]
        cut = Cut(self.topic, self.partition, taken, sum(map(len, taken)))
        del self.messages[:count]
        self.nbytes -= cut.nbytes
        self.started = time.monotonic() if self.messages else 0.0
        return cut


def _count_within(messages: list[Message], policy: FlushPolicy) -> int:
    """Leading messages that fit the policy's count and byte limits (at least one)."""
    limit = min(len(messages), policy.max_messages)
    totals = list(itertools.accumulate(map(len, messages[:limit])))
    return min(limit, bisect.bisect_left(totals, policy.max_bytes) + 1)
