"""The hot-key overflow lane: a key over its rate is spread over the overflow topic, keys under it keep
their partition and their order, and the lane shows in the metrics."""

from __future__ import annotations

import orjson
from starlette.testclient import TestClient

from evpipe.kafka import create_topics
from gateway.app import create_app
from gateway.backends.base import Record
from gateway.overflow import HotKeys
from tests.gateway.helpers import AUTH_A, event, kafka_settings, read_topic, values
from tests.providers import Service


def _records(key: bytes, count: int) -> list[Record]:
    return [Record(key, b"{}", {"event_id": f"{key.decode()}-{i}"}) for i in range(count)]


def test_a_key_over_its_bucket_is_spread_and_refills_at_its_rate() -> None:
    hot = HotKeys(events_per_s=100, burst=10)
    first = hot.split(_records(b"s:u", 15), now=0.0)
    assert [r.event["event_id"] for r in first.main] == [f"s:u-{i}" for i in range(10)]
    assert len(first.spread) == 5 and all(r.spread for r in first.spread) and not any(r.spread for r in first.main)
    assert len(hot.split(_records(b"s:u", 5), now=0.02).main) == 2  # 20 ms at 100/s: 2 tokens
    assert len(hot.split(_records(b"s:u", 20), now=10.0).main) == 10  # refilled to the burst, not beyond
    assert hot.by_source == {"s": 5 + 3 + 10}
    assert hot.top(3, now=10.0) == [("s:u", 18)]


def test_keys_in_one_request_are_charged_apart() -> None:
    hot = HotKeys(events_per_s=1, burst=3)
    records = [r for pair in zip(_records(b"s:hot", 6), _records(b"s:calm", 2), strict=False) for r in pair]
    records += _records(b"s:hot", 6)[2:]
    lanes = hot.split(records, now=0.0)
    assert [r.key for r in lanes.main].count(b"s:calm") == 2
    assert [r.key for r in lanes.main].count(b"s:hot") == 3
    assert {r.key for r in lanes.spread} == {b"s:hot"}
    assert hot.by_source == {"s": len(records) - 5}


def test_off_spreads_nothing_and_keeps_no_state() -> None:
    hot = HotKeys(events_per_s=0, burst=1)
    assert hot.split(_records(b"s:u", 1000), now=0.0).spread == []
    assert hot.tracked() == 0


def test_buckets_stay_bounded() -> None:
    hot = HotKeys(events_per_s=10, burst=5, max_keys=100)
    for i in range(1000):  # each key over its rate once, all still refilling: none may be dropped as idle
        assert len(hot.split(_records(f"s:{i}".encode(), 6), now=i * 0.001).spread) == 1
    assert hot.tracked() <= 100
    assert len(hot.split(_records(b"s:999", 6), now=1.0).spread) == 6  # a recent key kept its (empty) bucket...
    hot = HotKeys(events_per_s=10, burst=5, max_keys=100)
    for i in range(1000):
        hot.split(_records(f"s:{i}".encode(), 6), now=float(i))  # ...and idle, refilled ones are the ones dropped
    assert hot.tracked() <= 100


def test_keys_under_their_rate_get_no_bucket() -> None:
    hot = HotKeys(events_per_s=100, burst=1000)
    for second in range(5):
        assert hot.split([r for i in range(90) for r in _records(f"s:{i}".encode(), 1)], now=float(second)).spread == []
    assert hot.tracked() == 0


def test_a_key_just_over_its_rate_overflows_once_its_burst_is_spent() -> None:
    """Its events before it passed the rate in a second count against the bucket too: 150/s against 100/s
    drains a 1,000-event burst at 50/s, then about 50/s overflow."""
    hot = HotKeys(events_per_s=100, burst=1000)
    spread_by_second = []
    for second in range(40):
        spread = sum(len(hot.split(_records(b"s:u", 15), now=second + tick / 10).spread) for tick in range(10))
        spread_by_second.append(spread)
    assert spread_by_second[:15] == [0] * 15
    assert all(40 <= n <= 60 for n in spread_by_second[-10:]), spread_by_second


def test_top_keys_forget_a_key_that_calmed_down() -> None:
    hot = HotKeys(events_per_s=1, burst=1)
    hot.split(_records(b"s:u", 3), now=0.0)
    assert hot.top(5, now=5.0) == [("s:u", 2)]
    assert hot.top(5, now=25.0) == []


def test_a_hot_key_is_spread_keys_under_the_rate_keep_partition_and_order(kafka: Service, topic: str) -> None:
    settings = kafka_settings(kafka.url, topic, gateway_overflow_key_events_per_s=5, gateway_overflow_key_burst=20)
    create_topics(settings, [settings.overflow_topic], partitions=3)
    with TestClient(create_app(settings)) as client:
        for round_ in range(10):  # 10 rounds: each calm user sends 2, the hot one 30 per round
            for user in ("calm-1", "calm-2", "calm-3"):
                batch = [event(user_id=user, properties={"seq": round_ * 2 + i}) for i in range(2)]
                assert client.post("/v1/events", headers=AUTH_A, json=batch).status_code == 200
            hot = [event(user_id="hot", properties={"seq": round_ * 30 + i}) for i in range(30)]
            assert client.post("/v1/events", headers=AUTH_A, json=hot).status_code == 200
        metrics = client.get("/metrics").text
    main = read_topic(kafka.url, topic, 60 + 20)  # the calm users' 60 and at least the hot key's burst
    hot_main = [m for m in main if orjson.loads(m.value())["user_id"] == "hot"]
    spread = read_topic(kafka.url, settings.overflow_topic, 300 - len(hot_main))
    for user in ("calm-1", "calm-2", "calm-3"):
        mine = [m for m in main if orjson.loads(m.value())["user_id"] == user]
        assert len({m.partition() for m in mine}) == 1  # its key's partition, every time
        assert [orjson.loads(orjson.loads(m.value())["properties"])["seq"] for m in mine] == list(range(20))
    assert not any(orjson.loads(m.value())["user_id"].startswith("calm") for m in spread)
    assert len(hot_main) >= 20 and len(hot_main) + len(spread) == 300  # the burst, then ~5/s; the rest spread
    assert len({m.partition() for m in spread}) > 1  # spread over the overflow topic's partitions
    assert all(m.key() == orjson.loads(m.value())["event_id"].encode() for m in spread)
    assert f'evpipe_gateway_overflow_events_total{{source="source_a"}} {float(len(spread))}' in metrics
    assert 'evpipe_gateway_overflow_hot_keys{key="source_a:hot"}' in metrics


def test_without_the_overflow_topic_hot_keys_stay_on_their_partition(kafka: Service, topic: str) -> None:
    settings = kafka_settings(kafka.url, topic, gateway_overflow_key_events_per_s=1, gateway_overflow_key_burst=1)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/events", headers=AUTH_A, json=[event(user_id="hot") for _ in range(50)])
        assert response.status_code == 200, response.text
    assert len(values(read_topic(kafka.url, topic, 50))) == 50


def test_a_fallback_write_keeps_the_lane_send_gave(kafka: Service, topic: str) -> None:
    from gateway.backends.kafka import KafkaBackend

    settings = kafka_settings(kafka.url, topic)
    backend = KafkaBackend(settings, HotKeys(events_per_s=1, burst=1))
    backend._overflow_exists = True  # as the metadata check finds it when the topic exists
    records = _records(b"source_a:hot", 3)
    lanes = backend._lanes(records)  # what send() does first
    assert len(lanes.spread) == 2
    messages = backend.messages(records, [])
    assert [(m.topic, m.key) for m in messages] == [
        (topic, b"source_a:hot"),
        (settings.overflow_topic, b"source_a:hot-1"), (settings.overflow_topic, b"source_a:hot-2")]
