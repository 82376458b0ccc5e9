"""The drain: an object is deleted only after every message in it was acknowledged; two drainers never
produce the same object; a drain stops while Kafka is not ready; a damaged object stays for a person."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.backends.base import Message
from gateway.fallback.drain import Drainer
from gateway.fallback.local import LocalFallbackStore
from gateway.fallback.objects import encode, object_name
from gateway.metrics import FallbackMetrics
from tests.gateway.fallback_fakes import FakeKafka


def _fill(store: LocalFallbackStore, objects: int, per_object: int = 4) -> list[Message]:
    stored = []
    for n in range(objects):
        messages = [Message("events", f"src:u{n}".encode(), f'{{"event_id":"{n}-{i}"}}'.encode())
                    for i in range(per_object)]
        store.put(object_name(time.time() - objects + n, per_object, "w1", n), encode(messages))
        stored += messages
    return stored


def _drainer(store: LocalFallbackStore, kafka: FakeKafka, owner: str = "d1", lease_s: float = 60,
             parallel: int = 8) -> tuple[Drainer, FallbackMetrics]:
    metrics = FallbackMetrics(CollectorRegistry())
    return Drainer(store, kafka, metrics, owner, lease_s, parallel), metrics


def test_a_pass_produces_every_object_oldest_first_then_deletes_it(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka()
    stored = _fill(store, 5)
    drainer, metrics = _drainer(store, kafka, parallel=1)
    report = asyncio.run(drainer.drain_pass(kafka.ready))
    assert (report.objects, report.events, report.stopped) == (5, 20, None)
    assert kafka.produced == stored  # oldest first, messages in their order
    assert store.pending() == []
    assert metrics.drained._value.get() == 20
    assert metrics.pending._value.get() == 0 and metrics.oldest_age._value.get() == 0


def test_objects_drain_a_few_at_a_time_each_once(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka()
    stored = _fill(store, 30)
    drainer, _ = _drainer(store, kafka)
    assert asyncio.run(drainer.drain_pass(kafka.ready)).objects == 30
    assert sorted(kafka.produced, key=lambda m: m.value) == sorted(stored, key=lambda m: m.value)
    assert store.pending() == []


def test_an_object_stays_until_every_message_is_acknowledged(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka()
    _fill(store, 1, per_object=10)
    drainer, metrics = _drainer(store, kafka)

    async def run() -> None:
        kafka.produce_gate = asyncio.Event()
        task = asyncio.create_task(drainer.drain_pass(kafka.ready))
        await asyncio.sleep(0.2)
        assert len(store.pending()) == 1  # produced, acknowledgements outstanding: still stored
        kafka.down, kafka.acks_before_down = True, 6  # 6 of 10 acknowledged, then the broker fails
        kafka.produce_gate.set()
        report = await task
        assert report.objects == 0 and report.stopped and "did not take" in report.stopped

    asyncio.run(run())
    assert len(kafka.produced) == 6
    assert len(store.pending()) == 1 and store.claim(store.pending()[0].name, "other", 60) is not None  # released
    assert metrics.drained._value.get() == 0
    assert metrics.pending._value.get() == 10


def test_the_retry_after_a_partial_drain_produces_the_whole_object_again(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka(down=True, acks_before_down=3)
    stored = _fill(store, 1, per_object=5)
    drainer, _ = _drainer(store, kafka)
    kafka_ready_anyway = FakeKafka()  # ready() says yes, produce then fails halfway
    asyncio.run(drainer.drain_pass(kafka_ready_anyway.ready))
    kafka.down = False
    asyncio.run(drainer.drain_pass(kafka.ready))
    assert kafka.produced == stored[:3] + stored  # the first three twice: the sinks drop the copies by event_id
    assert store.pending() == []


def test_no_drain_while_kafka_is_not_ready(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka(down=True)
    _fill(store, 2)
    drainer, metrics = _drainer(store, kafka)
    report = asyncio.run(drainer.drain_pass(kafka.ready))
    assert report.objects == 0 and report.stopped == "kafka not ready: broker unreachable"
    assert kafka.produced == [] and len(store.pending()) == 2
    assert metrics.pending._value.get() == 8 and metrics.oldest_age._value.get() >= 1


def test_two_drainers_at_once_produce_each_object_once(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka()
    stored = _fill(store, 40, per_object=3)

    class SlowKafka(FakeKafka):
        async def produce(self, messages: list[Message], deadline: float) -> None:
            await asyncio.sleep(0.005)  # the other drainer runs meanwhile
            await super().produce(messages, deadline)

    slow = SlowKafka()
    first, _ = _drainer(store, slow, "d1")
    second, _ = _drainer(store, slow, "d2")

    async def both() -> list[int]:
        reports = await asyncio.gather(first.drain_pass(slow.ready), second.drain_pass(slow.ready))
        return [r.objects for r in reports]

    objects = asyncio.run(both())
    assert sum(objects) == 40 and min(objects) > 0, objects  # both worked, on different objects
    assert sorted(slow.produced, key=lambda m: m.value) == sorted(stored, key=lambda m: m.value)
    assert store.pending() == [] and kafka.produced == []


def test_a_dead_drainers_claim_is_taken_over_after_its_lease(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka()
    stored = _fill(store, 1)
    assert store.claim(store.pending()[0].name, "died", 0.3) is not None
    drainer, _ = _drainer(store, kafka)
    assert asyncio.run(drainer.drain_pass(kafka.ready)).held_elsewhere == 1
    time.sleep(0.4)
    assert asyncio.run(drainer.drain_pass(kafka.ready)).objects == 1
    assert kafka.produced == stored and store.pending() == []


def test_a_damaged_object_is_left_in_place(tmp_path: Path) -> None:
    store, kafka = LocalFallbackStore(tmp_path), FakeKafka()
    good = _fill(store, 1)
    store.put(object_name(time.time() - 100, 2, "w2", 1), b"EVFB\x01 torn")
    drainer, _ = _drainer(store, kafka)
    report = asyncio.run(drainer.drain_pass(kafka.ready))
    assert report.objects == 1 and kafka.produced == good
    assert [p.events for p in store.pending()] == [2]  # kept for a person to look at; the age alert fires
