"""The consumer loop against a real broker with the in-memory sink (slow: the broker; see test_loop_memory.py)."""

from __future__ import annotations

import itertools
import time

import pytest

from consumers.runtime import ConsumerLoop, ConsumerSettings
from consumers.runtime.memory import MemorySink
from tests.consumers.runtime.events import committed, create_topic, events, produce, read_all
from tests.consumers.runtime.loops import running, wait_for
from tests.providers import Service, unique_name

pytestmark = pytest.mark.slow  # every test here starts or uses the real broker


def settings(kafka: Service, dlq: str, **overrides: object) -> ConsumerSettings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": kafka.url, "kafka_dlq_topic": dlq, "consumer_session_timeout_ms": 6000,
        "consumer_batch_max_messages": 400, "consumer_batch_max_age_s": 0.5, "consumer_retry_initial_s": 0.1,
        "consumer_retry_max_s": 0.5, "consumer_lag_interval_s": 1.0,
    }
    values.update(overrides)
    return ConsumerSettings(**values)  # type: ignore[arg-type]


def test_consumes_every_event_once_and_dead_letters_poison(kafka: Service, topic: str) -> None:
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, 3)
    create_topic(kafka.url, dlq, 1)
    generated = list(events(3000))
    messages: list[tuple[bytes | None, bytes]] = [(k, v) for k, v, _, _ in generated]
    messages.insert(1234, (b"src:u1", b'{"not": "an event"}'))
    produce(kafka.url, topic, messages)
    sink = MemorySink(fail_writes=3)  # the first writes fail: retried, nothing lost or doubled
    group = unique_name("g")
    loop = ConsumerLoop(settings(kafka, dlq), sink, group, [topic])
    with running(loop):
        wait_for(lambda: sink.rows() == 3000 and loop.stats.dead_letters == 1)
        wait_for(lambda: sum(committed(kafka.url, group, topic, 3).values()) == 3001)
    table = sink.table()
    assert table.num_rows == 3000
    assert sorted(table.column("event_id").to_pylist()) == sorted(e for _, _, e, _ in generated)
    assert loop.stats.write_errors >= 3
    # every batch covers a contiguous offset range and no two overlap
    for partition in range(3):
        ranges = sorted((b.first_offset, b.last_offset) for b in sink.batches.values() if b.partition == partition)
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    dead = read_all(kafka.url, dlq, 1)
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert dead[0].value() == b'{"not": "an event"}'
    assert headers["topic"] == topic.encode() and headers["error"]
    assert int(headers["offset"]) >= 0 and int(headers["partition"]) in range(3)


def test_reforms_a_begun_batch_exactly(kafka: Service, topic: str) -> None:
    """A previous owner began batch 0-122 and crashed before committing: the same batch is cut again."""
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, 1)
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in events(1000)])
    sink = MemorySink()
    sink.begun[(topic, 0, 0)] = 122
    loop = ConsumerLoop(settings(kafka, dlq, consumer_batch_max_messages=300), sink, unique_name("g"), [topic])
    with running(loop):
        wait_for(lambda: sink.rows() == 1000)
    ranges = sorted((b.first_offset, b.last_offset) for b in sink.batches.values())
    assert ranges[0] == (0, 122)
    assert ranges[1][0] == 123 and ranges[-1][1] == 999
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))


def test_stop_flushes_what_is_buffered(kafka: Service, topic: str) -> None:
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, 2)
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in events(500)])
    sink = MemorySink()
    group = unique_name("g")
    # Policy would hold everything for an hour: only the graceful stop writes it.
    loop = ConsumerLoop(settings(kafka, dlq, consumer_batch_max_messages=100_000, consumer_batch_max_age_s=3600),
                        sink, group, [topic])
    with running(loop):
        wait_for(lambda: loop.stats.consumed == 500)
        assert sink.rows() == 0
    assert sink.rows() == 500
    assert sum(committed(kafka.url, group, topic, 2).values()) == 500


def test_buffer_cap_bounds_memory(kafka: Service, topic: str) -> None:
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, 2)
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in events(4000)])
    sink = MemorySink()
    cap = 200_000  # ~600 events of ~330 bytes; the policy alone would hold all 4000
    loop = ConsumerLoop(settings(kafka, dlq, consumer_batch_max_messages=100_000, consumer_batch_max_age_s=3600,
                                 consumer_buffer_max_bytes=cap, consumer_poll_messages=200), sink,
                        unique_name("g"), [topic])
    with running(loop):
        wait_for(lambda: loop.stats.consumed == 4000, state=lambda: (
            f"consumed {loop.stats.consumed}, written {sink.rows()}, paused {sorted(loop.pauses.paused)}, "
            f"buffered {sorted((k, len(b)) for k, b in loop.batching.buffers.items())}"))
        # the cap, not the policy, wrote most of it already
        assert sink.rows() >= 4000 - cap // 200
    assert sink.rows() == 4000  # the rest on stop
    assert len(sink.batches) >= 4, "the cap forced early batches"
    # A batch is at most what was buffered when the cap tripped: the cap plus one poll's worth.
    assert max(b.raw_bytes for b in sink.batches.values()) <= cap + 200 * 400


def test_rebalance_between_two_members_loses_and_doubles_nothing(kafka: Service, topic: str) -> None:
    """A second member joins mid-stream (cooperative revocation of half the partitions), then leaves.

    Generous waits: each rebalance takes ~half the session timeout on Tansu, longer on a loaded box.
    """
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, 4)
    generated = list(events(8000))
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in generated[:4000]])
    sink = MemorySink()
    group = unique_name("g")
    slow = settings(kafka, dlq, consumer_batch_max_messages=200, consumer_poll_messages=100)
    first, second = ConsumerLoop(slow, sink, group, [topic]), ConsumerLoop(slow, sink, group, [topic])
    with running(first):
        wait_for(lambda: sink.rows() > 0, timeout=180)
        with running(second):
            # Trickled in until the second member writes: produced at once, the first member could
            # drain it all before the (slow, on Tansu) rebalance hands the second its share.
            rest = [(k, v) for k, v, _, _ in generated[4000:]]
            deadline = time.monotonic() + 180
            while rest and not (second.stats.assigned and second.stats.rows) and time.monotonic() < deadline:
                produce(kafka.url, topic, rest[:100])
                del rest[:100]
                time.sleep(0.5)
            produce(kafka.url, topic, rest)
            wait_for(lambda: bool(second.stats.assigned) and second.stats.rows > 0, timeout=180)
        wait_for(lambda: sink.rows() >= 8000, timeout=180)
        wait_for(lambda: sum(committed(kafka.url, group, topic, 4).values()) == 8000, timeout=180)
    ids = sink.table().column("event_id").to_pylist()
    assert len(ids) == 8000 and set(ids) == {e for _, _, e, _ in generated}
    for partition in range(4):
        ranges = sorted((b.first_offset, b.last_offset) for b in sink.batches.values() if b.partition == partition)
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges)), f"overlap or gap on {partition}"
