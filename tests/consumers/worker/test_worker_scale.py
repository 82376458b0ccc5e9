"""Several worker processes draining one list: every event stored exactly once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from tests.consumers.worker import harness
from tests.providers import Service


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_workers_store_each_event_once(
    workers: int, postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    queue, table, n = redis_prefix + "events", f"{pg_schema}.events", 30_000
    first = harness.make_wire(20_000)
    harness.push(client, queue, first + first[5000:7000])  # with re-delivered copies
    s = harness.settings(postgres.url, redis_server.url, queue, table, worker_batch_size=1000)
    tag = uuid.uuid4().hex[:8]
    procs = [harness.start_process(s, f"scale-{tag}-{i}", tmp_path / f"w{i}.log") for i in range(workers)]
    try:
        producer = harness.Producer(client, queue, n - 20_000, seconds=3, start=20_000)  # while they drain
        producer.start()
        producer.join()
        harness.wait_until(lambda: harness.in_flight(client, queue) == 0, 120, "the queue to drain")
        harness.wait_until(lambda: harness.counts(postgres.url, table)[0] >= n, 30, "all rows")
        assert all(p.poll() is None for p in procs), "a worker died"
        members = {m.decode() for m in client.smembers(queue + ":workers")}
        assert members == {f"scale-{tag}-{i}" for i in range(workers)}
    finally:
        codes = harness.stop_all(procs)
    assert codes == [0] * workers, [(tmp_path / f"w{i}.log").read_text() for i in range(workers)]
    assert harness.counts(postgres.url, table) == (n, n)
    assert client.llen(queue + ":dead") == 0
