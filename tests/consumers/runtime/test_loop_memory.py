"""The consumer loop on the in-memory source: batching, re-forming, retries, rebalances, in milliseconds."""

from __future__ import annotations

import itertools
import time

from consumers.runtime import ConsumerLoop, ConsumerSettings
from consumers.runtime.memory import MemoryDeadLetters, MemorySink
from consumers.runtime.memory_source import MemorySource
from consumers.runtime.parse import Poison
from tests.consumers.runtime.events import events
from tests.consumers.runtime.loops import running, wait_for

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


def loop_on(memory: MemorySource, sink: MemorySink, dead: MemoryDeadLetters | None = None,
            **overrides: object) -> ConsumerLoop:
    return ConsumerLoop(settings(**overrides), sink, "g", ["t"], source=memory,
                        dead_letters=dead if dead is not None else MemoryDeadLetters())


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


def test_batches_are_cut_by_size() -> None:
    memory, sink = source(), MemorySink()
    with running(loop_on(memory, sink, consumer_batch_max_age_s=3600)):
        wait_for(lambda: sink.rows() == 1200)
    assert ranges(sink, 0) == ranges(sink, 1) == [(0, 299), (300, 599)]


def test_batches_are_cut_by_bytes() -> None:
    memory, sink = source(partitions=1), MemorySink()
    limit = sum(map(len, VALUES[:100]))  # the first 100 values reach it exactly
    with running(loop_on(memory, sink, consumer_batch_max_bytes=limit, consumer_batch_max_age_s=3600)):
        wait_for(lambda: sink.rows() >= 500)
    assert ranges(sink, 0)[0] == (0, 99)


def test_a_batch_is_cut_by_age() -> None:
    memory, sink = source(partitions=1, per_partition=50), MemorySink()
    started = time.monotonic()
    with running(loop_on(memory, sink, consumer_batch_max_messages=100_000, consumer_batch_max_age_s=0.3)):
        wait_for(lambda: sink.rows() == 50)  # written while running: the age cut it, not the stop
        assert time.monotonic() - started >= 0.3
        wait_for(lambda: memory.committed_offsets == {("t", 0): 50})
    assert ranges(sink, 0) == [(0, 49)]


def test_pending_end_holds_the_batch_until_its_end_is_consumed() -> None:
    memory, sink = source(partitions=1, per_partition=100), MemorySink()
    sink.begun[("t", 0, 0)] = 149  # begun by a previous owner; offsets 100-149 are not in the log yet
    loop = loop_on(memory, sink, consumer_batch_max_messages=50, consumer_batch_max_age_s=0.05)
    with running(loop):
        wait_for(lambda: loop.stats.consumed == 100)
        time.sleep(0.2)
        assert sink.rows() == 0, "the policy must not cut a begun batch short"
        memory.produce("t", 0, VALUES[100:200])
        wait_for(lambda: sink.rows() == 200)
    assert ranges(sink, 0)[0] == (0, 149)


def test_a_failed_write_pauses_and_retries_the_same_batch_without_committing() -> None:
    memory, sink = source(partitions=1, per_partition=300), MemorySink(fail_writes=2)
    loop = loop_on(memory, sink, consumer_retry_initial_s=0.3)
    with running(loop):
        wait_for(lambda: ("t", 0) in memory.paused)  # the failing partition stops fetching meanwhile
        assert memory.commits == [] and sink.batches == {}
        wait_for(lambda: memory.committed_offsets == {("t", 0): 300})
        assert memory.paused == set()
    assert sink.writes == 3 and loop.stats.write_errors == 2
    assert ranges(sink, 0) == [(0, 299)] and memory.commits == [{("t", 0): 300}]


def test_a_failed_commit_is_retried_without_writing_again() -> None:
    memory, sink = source(partitions=1, per_partition=300), MemorySink()
    memory.fail_commits = 2
    loop = loop_on(memory, sink)
    with running(loop):
        wait_for(lambda: memory.committed_offsets == {("t", 0): 300})
    assert sink.writes == 1 and loop.stats.write_errors == 2 and loop.stats.committed_batches == 1


def test_revocation_drops_the_buffered_batch_without_committing_it() -> None:
    memory, sink = source(), MemorySink()
    loop = loop_on(memory, sink, consumer_batch_max_messages=100_000, consumer_batch_max_age_s=3600)
    with running(loop):
        wait_for(lambda: loop.stats.consumed == 1200)
        memory.revoke([("t", 0)])
        wait_for(lambda: loop.stats.assigned == {("t", 1)})
    assert ranges(sink, 0) == [] and ranges(sink, 1) == [(0, 599)]  # only what we still owned, on stop
    assert memory.committed_offsets == {("t", 1): 600}


def test_a_lost_partition_that_comes_back_is_read_again_from_the_commit() -> None:
    memory, sink = source(partitions=1), MemorySink()
    loop = loop_on(memory, sink, consumer_batch_max_messages=100_000, consumer_batch_max_age_s=3600)
    with running(loop):
        wait_for(lambda: loop.stats.consumed == 600)
        memory.lose([("t", 0)])
        memory.assign([("t", 0)])
        wait_for(lambda: loop.stats.consumed == 1200)  # the dropped buffer is fetched again from offset 0
    assert ranges(sink, 0) == [(0, 599)] and memory.committed_offsets == {("t", 0): 600}


class OrderedDeadLetters(MemoryDeadLetters):
    """Records what was committed when each dead letter was stored."""

    def __init__(self, memory: MemorySource, fail_sends: int) -> None:
        super().__init__(fail_sends=fail_sends)
        self.memory = memory
        self.committed_at_send: list[int] = []

    def send(self, origin_topic: str, partition: int, poison: list[Poison]) -> None:
        self.committed_at_send.append(self.memory.committed_offsets.get((origin_topic, partition), 0))
        super().send(origin_topic, partition, poison)


def test_dead_letters_are_stored_before_the_commit_and_a_failure_holds_it() -> None:
    memory, sink = MemorySource({"t": 1}), MemorySink()
    memory.produce("t", 0, VALUES[:100] + [b'{"not": "an event"}'] + VALUES[100:199])
    dead = OrderedDeadLetters(memory, fail_sends=2)
    loop = loop_on(memory, sink, dead, consumer_batch_max_messages=200)
    with running(loop):
        wait_for(lambda: memory.committed_offsets == {("t", 0): 200})
    assert [(t, p, item.offset) for t, p, item in dead.sent] == [("t", 0, 100)]
    assert dead.committed_at_send == [0, 0, 0], "the batch's commit waits for its dead letters"
    assert sink.rows() == 199 and loop.stats.dead_letters == 1 and loop.stats.write_errors == 2
    assert ranges(sink, 0) == [(0, 199)]


class _ConcurrencyProbe(MemorySink):
    """A thread-safe sink that records how many writes overlapped and of which partitions."""

    def __init__(self) -> None:
        super().__init__()
        self.active: dict[int, int] = {}
        self.most_at_once = 0
        self.same_partition_overlap = False

    def write(self, batch) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.same_partition_overlap |= self.active.get(batch.partition, 0) > 0
            self.active[batch.partition] = self.active.get(batch.partition, 0) + 1
            self.most_at_once = max(self.most_at_once, sum(self.active.values()))
        time.sleep(0.02)  # long enough for the other partitions' batches to arrive meanwhile
        with self.lock:
            self.active[batch.partition] -= 1
        super().write(batch)


def test_loop_config_with_own_parse_step_and_several_writer_threads() -> None:
    """The stage-2 worker's shape: a LoopConfig, a parse step of its own, a thread-safe sink on 3 writers."""
    from consumers.runtime.buffer import FlushPolicy
    from consumers.runtime.commit import RetryPolicy
    from consumers.runtime.config import LoopConfig
    from consumers.runtime.parse import Parsed

    def lengths(offsets: list[int], values: list[bytes]) -> Parsed[list[int]]:
        good = [(o, len(v)) for o, v in zip(offsets, values) if not v.startswith(b"bad")]
        poison = [Poison(o, v, "starts with bad") for o, v in zip(offsets, values) if v.startswith(b"bad")]
        return Parsed([n for _, n in good], poison, [o for o, _ in good])

    memory = MemorySource({"t": 3})
    for partition in range(3):
        memory.produce("t", partition, [b"bad one"] + [b"x" * (i % 7 + 1) for i in range(599)])
    sink, dead = _ConcurrencyProbe(), MemoryDeadLetters()
    config = LoopConfig(FlushPolicy(100, 1 << 20, 0.2), RetryPolicy(0.01, 0.05), poll_messages=100,
                        buffer_max_bytes=1 << 24, shutdown_timeout_s=5, write_threads=3)
    loop = ConsumerLoop(config, sink, "g", ["t"], source=memory, dead_letters=dead, parse=lengths)
    with running(loop):
        wait_for(lambda: memory.committed_offsets == {("t", p): 600 for p in range(3)})
    assert sink.rows() == 3 * 599 and len(dead.sent) == 3
    assert sum(sum(b.table) for b in sink.batches.values()) == 3 * sum(i % 7 + 1 for i in range(599))
    assert sink.most_at_once > 1  # partitions were written in parallel...
    assert not sink.same_partition_overlap  # ...but one partition's batches strictly in sequence


def test_a_loop_config_without_a_source_is_refused() -> None:
    import pytest

    from consumers.runtime.buffer import FlushPolicy
    from consumers.runtime.commit import RetryPolicy
    from consumers.runtime.config import LoopConfig

    config = LoopConfig(FlushPolicy(100, 1 << 20, 0.2), RetryPolicy(0.01, 0.05), 100, 1 << 24, 5)
    with pytest.raises(TypeError, match="needs its source"):
        ConsumerLoop(config, MemorySink(), "g", ["t"])
