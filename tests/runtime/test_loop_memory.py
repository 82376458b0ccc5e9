"""The consumer loop on the in-memory source: batching, re-forming, retries, rebalances, in milliseconds."""

from __future__ import annotations

import itertools

from consumers.runtime import ConsumerLoop, ConsumerSettings
from consumers.runtime.memory import MemorySink
from consumers.runtime.memory_source import MemorySource
from tests.runtime.events import events
from tests.runtime.loops import running, wait_for

VALUES = [v for _, v, _, _ in events(1200)]


def settings(**overrides: object) -> ConsumerSettings:
    values: dict[str, object] = {
        "consumer_batch_max_messages": 300, "consumer_batch_max_age_s": 0.2, "consumer_retry_initial_s": 0.01,
        "consumer_retry_max_s": 0.05, "consumer_lag_interval_s": 0.05, "consumer_poll_messages": 100,
    }
    values.update(overrides)
    return ConsumerSettings(**values)  # type: ignore[arg-type]


def source(partitions: int = 2, per_partition: int = 600, topic: str = "t") -> MemorySource:
    memory = MemorySource({topic: partitions})
    for partition in range(partitions):
        memory.produce(topic, partition, VALUES[:per_partition])
    return memory


def loop_on(memory: MemorySource, sink: MemorySink, **overrides: object) -> ConsumerLoop:
    return ConsumerLoop(settings(**overrides), sink, "g", ["t"], source=memory)


def ranges(sink: MemorySink, partition: int) -> list[tuple[int, int]]:
    return sorted((b.first_offset, b.last_offset) for b in sink.batches.values() if b.partition == partition)


def test_every_message_written_once_and_committed_after_its_write() -> None:
    memory, sink = source(), MemorySink()
    loop = loop_on(memory, sink)
    with running(loop):
        wait_for(lambda: memory.committed_offsets == {("t", 0): 600, ("t", 1): 600})
    assert sink.rows() == 1200 and loop.stats.committed_batches == len(sink.batches)
    for partition in range(2):
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges(sink, partition)))
        assert ranges(sink, partition)[-1][1] == 599
    # each commit is the end of a written batch, never more
    ends = {(b.topic, b.partition, b.last_offset + 1) for b in sink.batches.values()}
    assert all((t, p, o) in ends for commit in memory.commits for (t, p), o in commit.items())
    assert memory.closed


def test_reforms_a_begun_batch_exactly() -> None:
    memory, sink = source(partitions=1), MemorySink()
    sink.begun[("t", 0, 0)] = 122  # a previous owner began 0-122 and crashed before committing
    with running(loop_on(memory, sink)):
        wait_for(lambda: sink.rows() == 600)
    got = ranges(sink, 0)
    assert got[0] == (0, 122) and got[1][0] == 123 and got[-1][1] == 599


def test_stop_flushes_what_is_buffered() -> None:
    memory, sink = source(), MemorySink()
    loop = loop_on(memory, sink, consumer_batch_max_messages=100_000, consumer_batch_max_age_s=3600)
    with running(loop):
        wait_for(lambda: loop.stats.consumed == 1200)
        assert sink.rows() == 0
    assert sink.rows() == 1200
    assert memory.committed_offsets == {("t", 0): 600, ("t", 1): 600}
