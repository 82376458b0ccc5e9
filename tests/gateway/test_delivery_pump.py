"""The Kafka backend's delivery-report pump: idle, it wakes for a new waiter instead of finishing its sleep.

No broker: the producer is replaced by one that counts polls, and the pump is driven on a test event loop.
"""

from __future__ import annotations

import asyncio

from gateway.backends.kafka import KafkaBackend, _Ack
from gateway.settings import GatewaySettings


class CountingProducer:
    def __init__(self) -> None:
        self.polls = 0

    def poll(self, _timeout: float) -> int:
        self.polls += 1
        return 0


async def _idle_backend() -> tuple[KafkaBackend, CountingProducer, asyncio.Task[None]]:
    # An address nothing listens on: the real producer is built, then swapped for the counting one.
    backend = KafkaBackend(GatewaySettings(kafka_bootstrap_servers="127.0.0.1:9", gateway_fallback_uri=""))
    producer = CountingProducer()
    backend.producer = producer  # type: ignore[assignment]
    pump = asyncio.create_task(backend._pump())
    while backend._idle_wake is None:  # nobody waits: the pump goes idle after its first poll
        await asyncio.sleep(0)
    return backend, producer, pump


def test_an_idle_pump_polls_at_once_when_a_request_starts_waiting() -> None:
    async def scenario() -> tuple[int, int]:
        backend, producer, pump = await _idle_backend()
        idle_polls = producer.polls
        ack = _Ack(asyncio.get_running_loop(), 1, backend._done)
        waiter = asyncio.create_task(backend._await(ack, 5.0))
        for _ in range(5):  # a few loop turns, far shorter than the 50 ms idle sleep
            await asyncio.sleep(0)
        woken_polls = producer.polls
        ack.delivered(None, None)  # the report arrives; the next poll round resolves the request
        await asyncio.wait_for(waiter, 1.0)
        pump.cancel()
        return idle_polls, woken_polls

    idle_polls, woken_polls = asyncio.run(scenario())
    assert woken_polls > idle_polls, "the idle pump did not poll for the new waiter"


def test_a_pump_with_nobody_waiting_stays_idle() -> None:
    async def scenario() -> tuple[int, int]:
        _backend, producer, pump = await _idle_backend()
        idle_polls = producer.polls
        for _ in range(5):
            await asyncio.sleep(0)
        polls = producer.polls
        pump.cancel()
        return idle_polls, polls

    idle_polls, polls = asyncio.run(scenario())
    assert polls == idle_polls, "the pump polled with nobody waiting before its idle interval"
