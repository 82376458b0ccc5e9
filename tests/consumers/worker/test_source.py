"""The Redis list as a loop source, on real Redis: slots filled a batch at a time, commits trim, pauses hold."""

from __future__ import annotations

import redis

from consumers.worker.metrics import WorkerMetrics
from consumers.worker.queue import ReliableQueue
from consumers.worker.source import RedisListSource
from evpipe.backoff import Backoff
from tests.providers import Service


def _source(redis_server: Service, key: str, capacity: int, slots: int = 3) -> RedisListSource:
    queue = ReliableQueue(redis.Redis.from_url(redis_server.url), key, "w", slots=slots)
    return RedisListSource(queue, capacity, WorkerMetrics(), heartbeat_s=0.5, heartbeat_ttl_s=2.0,
                           reclaim_interval_s=1.0, backoff=Backoff(0.01, 0.1))


def test_slots_fill_a_batch_at_a_time_and_commits_trim(redis_server: Service, redis_prefix: str) -> None:
    key = redis_prefix + "q"
    client = redis.Redis.from_url(redis_server.url)
    client.rpush(key, *[f"e{i}".encode() for i in range(25)])
    source = _source(redis_server, key, capacity=10)
    assigned: list[list[tuple[str, int]]] = []
    source.subscribe([key], assigned.append, lambda _: None, lambda _: None)
    try:
        assert source.poll(100, 0) == [] and assigned == [[(key, 0), (key, 1), (key, 2)]]
        runs = [source.poll(4, 0) for _ in range(5)]
        got = [(r[0].partition, r[0].offsets) for r in runs]
        assert got == [(0, [0, 1, 2, 3]), (0, [4, 5, 6, 7]), (0, [8, 9]), (1, [0, 1, 2, 3]), (1, [4, 5, 6, 7])]
        source.pause([(key, 1)])
        assert [(r.partition, r.offsets) for r in source.poll(100, 0)] == [(2, list(range(7)))]  # what is left
        source.commit({(key, 0): 6})
        assert client.lrange(source.queue.processing[0], 0, -1) == [b"e6", b"e7", b"e8", b"e9"]
        client.rpush(key, b"late")
        assert [(r.partition, r.offsets, r.values) for r in source.poll(100, 0)] == [(2, [7], [b"late"])]
    finally:
        source.close()
    assert not source.left_cleanly  # items still taken: left for another worker to re-queue
    assert not client.exists(source.queue.heartbeat_key)


def test_close_leaves_cleanly_when_everything_is_committed(redis_server: Service, redis_prefix: str) -> None:
    key = redis_prefix + "q"
    client = redis.Redis.from_url(redis_server.url)
    client.rpush(key, b"a", b"b")
    source = _source(redis_server, key, capacity=10, slots=1)
    source.subscribe([key], lambda _: None, lambda _: None, lambda _: None)
    source.poll(10, 0)
    [run] = source.poll(10, 0)
    source.commit({(key, 0): run.offsets[-1] + 1})
    source.close()
    assert source.left_cleanly and not client.sismember(source.queue.workers, "w")
