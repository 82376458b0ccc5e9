"""Batch cutting and vectorised parsing with poison isolation (no servers)."""

from __future__ import annotations

import orjson
import pytest

from consumers.runtime.buffer import FlushPolicy, PartitionBuffer
from consumers.runtime.parse import parse_values
from tests.consumers.runtime.events import events

POLICY = FlushPolicy(max_messages=4, max_bytes=10_000, max_age_s=60)


def _values(n: int) -> list[bytes]:
    return [value for _, value, _, _ in events(n)]


def test_parse_clean_batch_keeps_order() -> None:
    values = _values(50)
    parsed = parse_values(list(range(50)), values)
    assert parsed.poison == []
    assert parsed.table.num_rows == 50
    assert parsed.table.column("event_id").to_pylist() == [orjson.loads(v)["event_id"] for v in values]


@pytest.mark.parametrize("bad", [
    b"not json",
    b'{"event_id": "x"}',  # required fields missing
    b"",
    b'{"a": 1}\n{"b": 2}',  # two lines in one value
])
def test_poison_is_isolated(bad: bytes) -> None:
    values = _values(40)
    values.insert(17, bad)
    parsed = parse_values(list(range(100, 141)), values)
    assert [p.offset for p in parsed.poison] == [117]
    assert parsed.poison[0].value == bad and parsed.poison[0].error
    assert parsed.table.num_rows == 40


def test_several_poison_messages() -> None:
    values = _values(30)
    for i in (0, 9, 29):
        values[i] = b"{broken"
    parsed = parse_values(list(range(30)), values)
    assert [p.offset for p in parsed.poison] == [0, 9, 29]
    assert parsed.table.num_rows == 27
    assert parsed.offsets == [i for i in range(30) if i not in (0, 9, 29)]  # each row's own offset


def test_row_offsets_follow_gaps_in_the_log() -> None:
    offsets = [5, 6, 9, 10, 11]  # e.g. transaction markers at 7 and 8
    parsed = parse_values(offsets, _values(5))
    assert parsed.offsets == offsets and parsed.table.num_rows == 5


def _add(buf: PartitionBuffer, offsets: range | list[int], size: int = 1) -> int:
    return buf.extend(list(offsets), [b"x" * size for _ in offsets])


def test_buffer_cuts_by_count_and_bytes() -> None:
    buf = PartitionBuffer("t", 0)
    assert _add(buf, range(10), 100) == 10
    assert buf.due(POLICY, now=0)
    assert buf.cut(POLICY).offsets == [0, 1, 2, 3]
    small = FlushPolicy(max_messages=100, max_bytes=250, max_age_s=60)
    cut = buf.cut(small)
    assert cut.offsets == [4, 5, 6] and cut.nbytes == 300 and (cut.first_offset, cut.last_offset) == (4, 6)
    assert len(buf) == 3 and buf.nbytes == 300


def test_buffer_counts_tombstones_as_empty() -> None:
    buf = PartitionBuffer("t", 0)
    assert buf.extend([0, 1], [None, b"abc"]) == 2  # type: ignore[list-item]
    assert buf.nbytes == 3


def test_buffer_cuts_by_age() -> None:
    buf = PartitionBuffer("t", 0)
    _add(buf, range(2))
    # Not exactly at 60: started + 60 - started can round to 59.999... (this failed once, for some clock values).
    assert not buf.due(POLICY, now=buf.started + 59.9)
    assert buf.due(POLICY, now=buf.started + 60.1)


def test_buffer_drops_redeliveries() -> None:
    buf = PartitionBuffer("t", 0)
    assert _add(buf, [5, 6]) == 2
    assert _add(buf, [3, 6]) == 0
    assert _add(buf, [6, 7]) == 1
    assert buf.offsets == [5, 6, 7]


def test_pending_end_overrides_policy() -> None:
    buf = PartitionBuffer("t", 0, pending_end=6)
    _add(buf, range(5))
    assert not buf.due(POLICY, now=1e12), "must wait for the begun batch's end, whatever the policy says"
    assert not buf.can_force()
    _add(buf, range(5, 9))
    assert buf.due(POLICY, now=0)
    assert buf.cut(POLICY).offsets == list(range(7))
    assert buf.pending_end is None and buf.offsets == [7, 8]


def test_kafka_source_groups_by_partition_and_skips_errors() -> None:
    from confluent_kafka import KafkaError, Message

    from consumers.runtime.kafka_source import KafkaSource, group_messages

    messages = [
        Message(topic="t", partition=0, offset=0, value=b"a"),
        Message(topic="t", partition=1, offset=7, value=b"b"),
        Message(topic="t", partition=0, offset=1, value=b"c"),
        Message(topic="t", partition=0, error=KafkaError(KafkaError._PARTITION_EOF)),
        Message(topic="t", partition=2, offset=3, value=b"revoked"),
        Message(topic="u", partition=0, offset=9, value=b"other topic, not assigned"),
    ]

    class Consumer:
        def consume(self, _n: int, _timeout: float) -> list[Message]:
            return messages

    source = KafkaSource({})
    source._consumer = Consumer()  # type: ignore[assignment]
    runs = {(r.topic, r.partition): (r.offsets, r.values) for r in source.poll(10, 0)}
    assert runs == {("t", 0): ([0, 1], [b"a", b"c"]), ("t", 1): ([7], [b"b"]), ("t", 2): ([3], [b"revoked"]),
                    ("u", 0): ([9], [b"other topic, not assigned"])}
    assert group_messages([]) == []


def test_route_skips_revoked_partitions() -> None:
    from consumers.runtime import ConsumerLoop, ConsumerSettings
    from consumers.runtime.memory import MemorySink
    from consumers.runtime.source import Fetched

    loop = ConsumerLoop(ConsumerSettings(), MemorySink(), "g", ["t"])
    buffers = loop.batching.buffers
    loop.batching.assign([("t", 0), ("t", 1)])
    added = list(loop.batching.route([
        Fetched("t", 0, [0, 1], [b"a", b"c"]), Fetched("t", 1, [7], [b"b"]), Fetched("t", 2, [3], [b"revoked"]),
        Fetched("u", 0, [9], [b"other topic, not assigned"]), Fetched("t", 0, [1], [b"c"]),  # a re-delivery
    ]))
    assert buffers[("t", 0)].offsets == [0, 1] and buffers[("t", 0)].values == [b"a", b"c"]
    assert buffers[("t", 1)].offsets == [7]
    assert added == [("t", 2), ("t", 1)]
