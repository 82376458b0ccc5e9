"""A Kafka-shaped backend without a broker, for the fallback tests: it can be down, slow or half-working."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.backends.base import Message, Record, Rejected, Unavailable, encode_invalid


@dataclass
class FakeKafka:
    """A MessageBackend: ``send`` and ``produce`` fail while ``down`` (after acknowledging ``acks_before_down``
    messages of a request, which then land in ``topics`` as a broker would have them)."""

    topic: str = "events"
    invalid_topic: str = "events.invalid"
    down: bool = False
    down_reason: str = "broker did not acknowledge within 0.1s"
    acks_before_down: int = 0
    misconfigured_reason: str | None = None
    produce_gate: asyncio.Event | None = None  # produce waits for it: a drain caught halfway
    produced: list[Message] = field(default_factory=list)
    name: str = "fake-kafka"

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def queued(self) -> int:
        return 0

    async def ready(self) -> str | None:
        return self.misconfigured_reason or ("broker unreachable" if self.down else None)

    def misconfigured(self) -> str | None:
        return self.misconfigured_reason

    def messages(self, records: list[Record], rejected: list[Rejected]) -> list[Message]:
        out = [Message(self.topic, r.key, r.value) for r in records]
        return out + [Message(self.invalid_topic, i.source_id.encode(), encode_invalid(i), (("error", i.reason.encode()),))
                      for i in rejected]

    async def send(self, records: list[Record], rejected: list[Rejected], deadline: float) -> None:
        await self.produce(self.messages(records, rejected), deadline)

    async def produce(self, messages: list[Message], deadline: float) -> None:
        if self.produce_gate is not None:
            await self.produce_gate.wait()
        if self.down:
            self.produced += messages[:self.acks_before_down]
            raise Unavailable(self.down_reason, 1, enqueued=True)
        self.produced += messages
