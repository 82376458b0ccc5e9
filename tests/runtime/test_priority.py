"""Pausing in the consumer loop: the backfill lane, and partitions given up while paused."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from consumers.runtime import ConsumerLoop, ConsumerSettings
from consumers.runtime.buffer import PartitionBuffer
from consumers.runtime.memory import MemorySink
from tests.providers import Service, unique_name
from tests.runtime.events import create_topic, events, produce
from tests.runtime.test_loop import running, settings, wait_for


@dataclass
class FakeConsumer:
    """Positions and cached high watermarks, as librdkafka reports them."""

    positions: dict[tuple[str, int], int]
    highs: dict[tuple[str, int], int]
    paused: set[tuple[str, int]] = field(default_factory=set)

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions[(tp.topic, tp.partition)]) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "the priority check must not cost a broker round trip"
        return 0, self.highs[(tp.topic, tp.partition)]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in tps}


def _loop_with(consumer: FakeConsumer, limit: int) -> ConsumerLoop:
    loop = ConsumerLoop(ConsumerSettings(consumer_low_priority_max_live_lag=limit), MemorySink(), "g",
                        ["live", "replay"], low_priority_topics=["replay"])
    loop._consumer = consumer  # type: ignore[assignment]
    for key in consumer.positions:
        loop._buffers[key] = PartitionBuffer(*key)
    return loop


def test_replay_pauses_while_live_is_behind_and_resumes_when_caught_up() -> None:
    consumer = FakeConsumer(positions={("live", 0): 100, ("live", 1): 100, ("replay", 0): 0},
                            highs={("live", 0): 700, ("live", 1): 600, ("replay", 0): 10_000})
    loop = _loop_with(consumer, limit=1000)
    assert loop._live_lag_exceeded()  # 1,100 behind > 1,000
    loop._hold_low_priority = True
    loop._sync_pauses()
    assert consumer.paused == {("replay", 0)}  # live partitions keep fetching
    consumer.positions = {("live", 0): 390, ("live", 1): 390, ("replay", 0): 0}
    assert loop._live_lag_exceeded()  # 520 behind: still held until under half the limit (hysteresis)
    consumer.positions = {("live", 0): 650, ("live", 1): 560, ("replay", 0): 0}
    assert not loop._live_lag_exceeded()  # 90 behind
    loop._hold_low_priority = False
    loop._sync_pauses()
    assert consumer.paused == set()


def test_zero_limit_never_holds_the_backfill() -> None:
    consumer = FakeConsumer(positions={("live", 0): 0, ("replay", 0): 0}, highs={("live", 0): 10**9, ("replay", 0): 5})
    assert not _loop_with(consumer, limit=0)._live_lag_exceeded()


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
    consumer = FakeConsumer(positions={("live", 0): 0, ("live", 1): 0}, highs={("live", 0): 0, ("live", 1): 0})
    loop = _loop_with(consumer, limit=0)
    consumer.pause([TopicPartition("live", 0)])
    loop._paused = {("live", 0)}
    loop._on_lost(consumer, [TopicPartition("live", 0), TopicPartition("live", 1)])  # type: ignore[arg-type]
    assert consumer.paused == set()
    assert loop._paused == set() and loop._buffers == {}
