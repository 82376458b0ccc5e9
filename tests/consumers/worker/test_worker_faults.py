"""Fault injection: kill -9 of workers, Postgres connections killed, Postgres unreachable.

CI-bounded by default. ``EVPIPE_FULL=1`` runs the issue's full form: 200k events
with >= 10 kills, and a 30 s Postgres outage.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

from tests.consumers.worker import harness
from tests.consumers.worker.tcpproxy import TcpProxy
from tests.providers import Service

FULL = os.environ.get("EVPIPE_FULL") == "1"
pytestmark = [pytest.mark.fault, pytest.mark.slow]


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(tmp_path.glob("*.log")))


def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    queue, table = redis_prefix + "events", f"{pg_schema}.events"
    n, seconds, kills = (200_000, 40.0, 12) if FULL else (50_000, 12.0, 10)
    s = harness.settings(postgres.url, redis_server.url, queue, table, worker_batch_size=1000)
    tag, rng = uuid.uuid4().hex[:8], random.Random()
    counter = iter(range(10_000))

    def start() -> tuple[str, object]:
        worker_id = f"k9-{tag}-{next(counter)}"
        return worker_id, harness.start_process(s, worker_id, tmp_path / f"{worker_id}.log")

    workers = dict(start() for _ in range(2))
    producer = harness.Producer(client, queue, n, seconds)
    producer.start()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))  # random points: mid-take, mid-COPY, between commit and ack
            victim = rng.choice(sorted(workers))
            workers.pop(victim).send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
            workers.update([start()])
        producer.join()
        harness.wait_until(lambda: harness.in_flight(client, queue) == 0, 180, "the queue to drain")
        harness.wait_until(lambda: harness.counts(postgres.url, table)[0] >= n, 30, "all rows")
        # every killed worker was found dead and its processing lists re-queued
        harness.wait_until(lambda: {m.decode() for m in client.smembers(queue + ":workers")} == set(workers),
                           30, "dead workers to be reclaimed")
    finally:
        codes = harness.stop_all(list(workers.values()))  # type: ignore[arg-type]
    assert producer.pushed == n
    assert harness.counts(postgres.url, table) == (n, n), _logs(tmp_path)
    assert client.llen(queue + ":dead") == 0
    assert codes == [0] * len(codes), _logs(tmp_path)


def test_postgres_connections_killed_repeatedly_lose_nothing(
    postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    queue, table, n = redis_prefix + "events", f"{pg_schema}.events", 30_000
    s = harness.settings(postgres.url, redis_server.url, queue, table, worker_batch_size=1000)
    tag = uuid.uuid4().hex[:8]
    procs = [harness.start_process(s, f"pgk-{tag}-{i}", tmp_path / f"w{i}.log") for i in range(2)]
    producer = harness.Producer(client, queue, n, seconds=8)
    terminated = 0
    stop = threading.Event()

    def terminator() -> None:
        nonlocal terminated
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            while not stop.wait(0.3):
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
                    (f"evpipe-worker-pgk-{tag}-%",)).fetchall()
                terminated += sum(1 for (ok,) in rows if ok)

    killer = threading.Thread(target=terminator, daemon=True)
    try:
        producer.start()
        killer.start()
        producer.join()
        time.sleep(2)
        stop.set()
        killer.join()
        harness.wait_until(lambda: harness.in_flight(client, queue) == 0, 120, "the queue to drain")
        assert all(p.poll() is None for p in procs), _logs(tmp_path)
    finally:
        stop.set()
        codes = harness.stop_all(procs)
    assert terminated >= 5, "the fault was not injected"
    assert harness.counts(postgres.url, table) == (n, n), _logs(tmp_path)
    assert client.llen(queue + ":dead") == 0
    assert codes == [0, 0], _logs(tmp_path)


def test_postgres_unreachable_for_a_while_loses_nothing(
    postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    queue, table, n = redis_prefix + "events", f"{pg_schema}.events", 20_000
    outage_s = 30.0 if FULL else 6.0
    info = psycopg.conninfo.conninfo_to_dict(postgres.url)
    proxy = TcpProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    via_proxy = psycopg.conninfo.make_conninfo(postgres.url, host="127.0.0.1", port=str(proxy.port))
    s = harness.settings(via_proxy, redis_server.url, queue, table, worker_batch_size=1000)
    proc = harness.start_process(s, f"out-{uuid.uuid4().hex[:8]}", tmp_path / "w.log")
    producer = harness.Producer(client, queue, n, seconds=outage_s + 4)
    try:
        producer.start()
        harness.wait_until(lambda: harness.counts(postgres.url, table)[0] > 0, 60, "the first rows")
        proxy.down()
        time.sleep(0.5)  # a commit already on its way when the cable was cut may still land
        stored_at_cut = harness.counts(postgres.url, table)[0]
        time.sleep(outage_s)
        assert harness.counts(postgres.url, table)[0] == stored_at_cut  # really cut off
        assert harness.in_flight(client, queue) > 0  # events wait in Redis meanwhile
        assert proc.poll() is None, _logs(tmp_path)
        proxy.up()
        producer.join()
        harness.wait_until(lambda: harness.in_flight(client, queue) == 0, 120, "the queue to drain")
    finally:
        codes = harness.stop_all([proc])
        proxy.close()
    assert harness.counts(postgres.url, table) == (n, n), _logs(tmp_path)
    assert client.llen(queue + ":dead") == 0
    assert codes == [0], _logs(tmp_path)
    assert "write failed" in _logs(tmp_path) and "retry in" in _logs(tmp_path)  # it backed off, did not fail


def test_redis_unreachable_for_a_while_loses_nothing(
    postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str, tmp_path: Path
) -> None:
    """The worker's Redis connection is cut (the gateway's is not): it retries taking and acknowledging."""
    from urllib.parse import urlsplit, urlunsplit

    client = redis.Redis.from_url(redis_server.url)
    queue, table, n = redis_prefix + "events", f"{pg_schema}.events", 20_000
    parts = urlsplit(redis_server.url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    via_proxy = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    s = harness.settings(postgres.url, via_proxy, queue, table, worker_batch_size=1000)
    proc = harness.start_process(s, f"rout-{uuid.uuid4().hex[:8]}", tmp_path / "w.log")
    producer = harness.Producer(client, queue, n, seconds=8)
    try:
        producer.start()
        harness.wait_until(lambda: harness.counts(postgres.url, table)[0] > 0, 60, "the first rows")
        proxy.down()
        time.sleep(4)
        assert proc.poll() is None, _logs(tmp_path)
        proxy.up()
        producer.join()
        harness.wait_until(lambda: harness.in_flight(client, queue) == 0, 120, "the queue to drain")
    finally:
        codes = harness.stop_all([proc])
        proxy.close()
    assert harness.counts(postgres.url, table) == (n, n), _logs(tmp_path)
    assert client.llen(queue + ":dead") == 0
    assert codes == [0], _logs(tmp_path)
    assert "Redis failed" in _logs(tmp_path)  # the cut was felt and retried
