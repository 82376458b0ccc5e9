"""The reliable queue on real Redis: atomic numbered take, idempotent trim, reclaim of dead workers only."""

from __future__ import annotations

import time

import orjson
import redis

from consumers.worker.queue import DeadItem, ReliableQueue
from tests.providers import Service


def _client(redis_server: Service) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_provider_is_real(redis_server: Service) -> None:
    assert redis_server.provider in ("env", "local:redis") or redis_server.provider.startswith("testcontainers:")


def test_take_numbers_items_and_trim_commits_by_offset(redis_server: Service, redis_prefix: str) -> None:
    client, key = _client(redis_server), redis_prefix + "q"
    client.rpush(key, *[f"e{i}".encode() for i in range(10)])
    q = ReliableQueue(client, key, "w1")
    assert q.take(4, slot=0, expected=0) == (0, [b"e0", b"e1", b"e2", b"e3"])
    assert client.lrange(q.processing[0], 0, -1) == [b"e0", b"e1", b"e2", b"e3"]
    assert q.depth() == 6
    assert client.sismember(q.workers, "w1")
    assert q.take(1, slot=1, expected=0) == (0, [b"e4"])
    assert q.take(1, slot=0, expected=4) == (4, [b"e5"])
    assert q.processing_depth() == 6
    q.trim({0: 2})
    assert client.lrange(q.processing[0], 0, -1) == [b"e2", b"e3", b"e5"]
    q.trim({0: 2})  # repeated after a lost reply: removes nothing more
    assert client.lrange(q.processing[0], 0, -1) == [b"e2", b"e3", b"e5"]
    q.trim({0: 5, 1: 1})
    assert client.llen(q.processing[0]) == 0 and client.llen(q.processing[1]) == 0
    assert q.take(100, slot=0, expected=5) == (5, [f"e{i}".encode() for i in range(6, 10)])
    assert q.take(100, slot=0, expected=9) == (9, [])


def test_take_hands_out_again_what_a_lost_reply_kept(redis_server: Service, redis_prefix: str) -> None:
    client, key = _client(redis_server), redis_prefix + "q"
    client.rpush(key, *[f"e{i}".encode() for i in range(6)])
    q = ReliableQueue(client, key, "w1")
    assert q.take(2, slot=0, expected=0) == (0, [b"e0", b"e1"])
    q.take(2, slot=0, expected=2)  # its reply "lost": the worker still expects offset 2
    assert q.take(2, slot=0, expected=2) == (2, [b"e2", b"e3", b"e4", b"e5"])


def test_trim_after_a_reclaim_never_drops_later_items(redis_server: Service, redis_prefix: str) -> None:
    """A worker presumed dead (frozen) whose slot was re-queued commits late: it must not trim new items."""
    client, key = _client(redis_server), redis_prefix + "q"
    client.rpush(key, *[f"e{i}".encode() for i in range(4)])
    frozen, other = ReliableQueue(client, key, "frozen"), ReliableQueue(client, key, "other")
    frozen.heartbeat(0.1, {})
    assert frozen.take(2, slot=0, expected=0) == (0, [b"e0", b"e1"])
    time.sleep(0.2)
    assert other.reclaim_dead_workers() == 2
    assert frozen.take(1, slot=0, expected=2) == (2, [b"e0"])  # woke up: the list restarts at its offset
    frozen.trim({0: 2})  # the late commit of e0, e1 (written twice: the event id ledger keeps one)
    assert client.lrange(frozen.processing[0], 0, -1) == [b"e0"]
    frozen.trim({0: 3})
    assert client.llen(frozen.processing[0]) == 0


def test_dead_letter_of_binary_item_is_base64(redis_server: Service, redis_prefix: str) -> None:
    entry = orjson.loads(DeadItem(b"\xff\xfe", "not JSON", 1).encode("w"))
    assert entry["item_base64"] == "//4=" and "item" not in entry


def test_reclaim_requeues_only_dead_workers_in_order(redis_server: Service, redis_prefix: str) -> None:
    client, key = _client(redis_server), redis_prefix + "q"
    client.rpush(key, *[f"e{i}".encode() for i in range(6)])
    alive, dead, reclaimer = (ReliableQueue(client, key, w) for w in ("alive", "dead", "reclaimer"))
    alive.heartbeat(30, {})
    dead.heartbeat(0.2, {})
    assert alive.take(2, 0, 0) == (0, [b"e0", b"e1"])
    assert dead.take(2, 0, 0) == (0, [b"e2", b"e3"])
    assert dead.take(1, 1, 0) == (0, [b"e4"])
    assert reclaimer.reclaim_dead_workers() == 0  # both heartbeats live
    time.sleep(0.3)
    assert reclaimer.reclaim_dead_workers() == 3
    assert client.lrange(key, 0, -1) == [b"e2", b"e3", b"e4", b"e5"]  # back at the head, order kept
    assert client.llen(dead.processing[0]) == 0 and client.llen(dead.processing[1]) == 0
    assert not client.sismember(key + ":workers", "dead")
    assert not client.exists(key + ":base:dead:0")
    assert client.lrange(alive.processing[0], 0, -1) == [b"e0", b"e1"]


def test_deregister_only_when_nothing_in_flight(redis_server: Service, redis_prefix: str) -> None:
    client, key = _client(redis_server), redis_prefix + "q"
    client.rpush(key, b"x")
    q = ReliableQueue(client, key, "w")
    q.heartbeat(30, {})
    q.take(1, 0, 0)
    assert not q.deregister()
    q.trim({0: 1})
    assert q.deregister()
    assert not client.exists(q.heartbeat_key) and not client.sismember(q.workers, "w")
