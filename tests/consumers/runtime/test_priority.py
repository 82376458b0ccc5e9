"""Pausing in the consumer loop: the backfill lane, and partitions given up while paused."""

from __future__ import annotations

import pytest

from consumers.runtime import ConsumerLoop, ConsumerSettings
from consumers.runtime.buffer import PartitionBuffer
from consumers.runtime.memory import MemorySink
from consumers.runtime.memory_source import MemorySource
from tests.consumers.runtime.events import create_topic, events, produce
from tests.consumers.runtime.loops import running, wait_for
from tests.consumers.runtime.test_loop import settings
from tests.providers import Service, unique_name


def _source(positions: dict[tuple[str, int], int], highs: dict[tuple[str, int], int]) -> MemorySource:
    """Fetch positions and high watermarks, as librdkafka reports them."""
    source = MemorySource()
    for (topic, partition), high in highs.items():
        source.create_topic(topic, partition + 1)
        source.produce(topic, partition, [b"x"] * high)
    source.fetch_positions = dict(positions)
    return source


def _loop_with(source: MemorySource, limit: int) -> ConsumerLoop:
    loop = ConsumerLoop(ConsumerSettings(consumer_low_priority_max_live_lag=limit), MemorySink(), "g",
                        ["live", "replay"], low_priority_topics=["replay"], source=source)
    for key in source.fetch_positions:
        loop.batching.buffers[key] = PartitionBuffer(*key)
    return loop


def test_replay_pauses_while_live_is_behind_and_resumes_when_caught_up() -> None:
    consumer = _source(positions={("live", 0): 100, ("live", 1): 100, ("replay", 0): 0},
                       highs={("live", 0): 700, ("live", 1): 600, ("replay", 0): 10_000})
    loop = _loop_with(consumer, limit=1000)
    assert loop.pauses.live_lag_exceeded(loop.batching.buffers)  # 1,100 behind > 1,000
    loop.pauses.hold_low_priority = True
    loop._sync_pauses()
    assert consumer.paused == {("replay", 0)}  # live partitions keep fetching
    consumer.fetch_positions = {("live", 0): 390, ("live", 1): 390, ("replay", 0): 0}
    assert loop.pauses.live_lag_exceeded(loop.batching.buffers)  # 520 behind: still held until under half the limit (hysteresis)
    consumer.fetch_positions = {("live", 0): 650, ("live", 1): 560, ("replay", 0): 0}
    assert not loop.pauses.live_lag_exceeded(loop.batching.buffers)  # 90 behind
    assert consumer.round_trips == 0, "the priority check must not cost a broker round trip"
    loop.pauses.hold_low_priority = False
    loop._sync_pauses()
    assert consumer.paused == set()


def test_zero_limit_never_holds_the_backfill() -> None:
    consumer = _source(positions={("live", 0): 0, ("replay", 0): 0}, highs={("live", 0): 10**5, ("replay", 0): 5})
    loop = _loop_with(consumer, limit=0)
    assert not loop.pauses.live_lag_exceeded(loop.batching.buffers)


@pytest.mark.slow
def test_live_and_backfill_both_arrive_in_full(kafka: Service, topic: str) -> None:
    """Holding the backfill lane never starves it: once live is caught up, the replay topic drains."""
    replay, dlq = topic + ".replay", unique_name("dlq")
    for name, partitions in ((topic, 2), (replay, 1), (dlq, 1)):
        create_topic(kafka.url, name, partitions)
    produce(kafka.url, replay, [(k, v) for k, v, _, _ in events(1500)])
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in events(1500)])
    sink = MemorySink()
    loop = ConsumerLoop(settings(kafka, dlq, consumer_low_priority_max_live_lag=200), sink, unique_name("g"),
                        [topic, replay], low_priority_topics=[replay])
    with running(loop):
        wait_for(lambda: sink.rows() == 3000)
    by_topic = {t: sum(b.table.num_rows for b in sink.batches.values() if b.topic == t) for t in (topic, replay)}
    assert by_topic == {topic: 1500, replay: 1500}


def test_a_lost_partition_is_unpaused_so_a_reassignment_fetches_it() -> None:
    """A partition paused by a failing batch, then lost with the session, must not come back paused."""
    consumer = _source(positions={("live", 0): 0, ("live", 1): 0}, highs={("live", 0): 0, ("live", 1): 0})
    loop = _loop_with(consumer, limit=0)
    consumer.pause([("live", 0)])
    loop.pauses.paused = {("live", 0)}
    loop._on_lost([("live", 0), ("live", 1)])
    assert consumer.paused == set()
    assert loop.pauses.paused == set() and loop.batching.buffers == {}
