"""Stage 2 under faults: gateway (Redis backend, private queue key), workers x2, Postgres, steady load.

Faults, shuffled, at random times: kill -9 of a worker (a new one starts), kill -9 of the gateway
(restarted on its port), Postgres cut for a few seconds and Redis cut (TCP proxies: the machine's
servers are never stopped; a Redis cut stands for a Redis restart with its data kept), and a rolling
restart of the workers (SIGTERM one at a time). Invariant: every 2xx'd event is in Postgres exactly
once; the rejected events only in `<queue>:invalid`; nothing dead-lettered; the queue drains.
EVPIPE_FULL=1: 30 s outages, every fault three times.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import psutil
import psycopg
import pytest
import redis

from consumers.worker.queue import ReliableQueue
from evpipe.local.daemon import free_port, port_open, terminate
from tests.consumers.worker import harness
from tests.consumers.worker.tcpproxy import TcpProxy
from tests.providers import Service
from tests.system.client import LOAD_TYPE, TrackingLoad
from tests.system.faults import wait_for
from tests.system.report import table

FULL = os.environ.get("EVPIPE_FULL") == "1"
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.fault, pytest.mark.timeout(1800 if FULL else 360)]

KEY = "stage2-key"
KINDS = ["kill9_worker", "kill9_gateway", "postgres_cut", "redis_cut", "rolling_restart"]
REPO = Path(__file__).resolve().parents[2]
RSS_BOUND_MIB = {"gateway": 600.0, "worker": 600.0}


class Stage2:
    """Gateway and workers, both reaching Redis (and the workers Postgres) through cuttable proxies."""

    def __init__(self, postgres: Service, redis_server: Service, queue: str, table: str, logs: Path) -> None:
        parts = urlsplit(redis_server.url)
        self.redis_proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
        redis_url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.redis_proxy.port}"))
        info = psycopg.conninfo.conninfo_to_dict(postgres.url)
        self.pg_proxy = TcpProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
        pg_url = psycopg.conninfo.make_conninfo(postgres.url, host="127.0.0.1", port=str(self.pg_proxy.port))
        self.worker_settings = harness.settings(pg_url, redis_url, queue, table, worker_batch_size=500)
        self.gateway_env = os.environ | {
            "GATEWAY_BACKEND": "redis", "REDIS_URL": redis_url, "REDIS_QUEUE_KEY": queue,
            "GATEWAY_API_KEYS": f"{KEY}=stage2", "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0", "GATEWAY_DEADLINE_S": "2"}
        self.port, self.logs, self.tag = free_port(), logs, uuid.uuid4().hex[:8]
        self.queue, self.redis = queue, redis.Redis.from_url(redis_server.url)  # direct, not through the proxy
        self.serial = iter(range(10_000))
        self.gateway = self.start_gateway()
        self.workers = [self.start_worker(), self.start_worker()]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_gateway(self) -> subprocess.Popen[bytes]:
        with (self.logs / "gateway.log").open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "evpipe", "gateway"], cwd=REPO, stdout=out,
                                    stderr=subprocess.STDOUT, env=self.gateway_env | {"GATEWAY_PORT": str(self.port)})
        wait_for(lambda: port_open("127.0.0.1", self.port) or proc.poll() is not None, 30, "gateway listening")
        assert proc.poll() is None, (self.logs / "gateway.log").read_text()[-2000:]
        return proc

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A new worker, returned once it is ready, as a Kubernetes rollout waits for readiness.

        Ready is its first heartbeat: sent from its run loop, so its SIGTERM handler is installed. A
        process signalled while Python is still importing dies of the signal (-15), with nothing taken."""
        worker_id = f"sys-{self.tag}-{next(self.serial)}"
        proc = harness.start_process(self.worker_settings, worker_id, self.logs / f"{worker_id}.log")
        heartbeat = ReliableQueue(self.redis, self.queue, worker_id).heartbeat_key  # the queue names it
        wait_for(lambda: bool(self.redis.exists(heartbeat)) or proc.poll() is not None, 60, f"{worker_id} ready")
        assert proc.poll() is None, self.log_tails()
        return proc

    def close(self) -> list[int]:
        if self.gateway.poll() is None:
            terminate(self.gateway.pid, 20)
        codes = harness.stop_all(self.workers)
        self.redis_proxy.close()
        self.pg_proxy.close()
        self.redis.close()
        return codes

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.logs.glob("*.log")))


def inject(stack: Stage2, kind: str, rng: random.Random) -> None:
    outage = rng.uniform(30, 45) if FULL else rng.uniform(3, 6)
    if kind == "kill9_worker":
        victim = stack.workers.pop(rng.randrange(len(stack.workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        stack.workers.append(stack.start_worker())
    elif kind == "kill9_gateway":
        stack.gateway.send_signal(signal.SIGKILL)
        stack.gateway.wait(10)
        stack.gateway = stack.start_gateway()
    elif kind in ("postgres_cut", "redis_cut"):
        proxy = stack.pg_proxy if kind == "postgres_cut" else stack.redis_proxy
        proxy.down()
        time.sleep(outage)
        proxy.up()
    elif kind == "rolling_restart":
        for i in range(len(stack.workers)):
            stack.workers[i].terminate()
            assert stack.workers[i].wait(60) == 0, stack.log_tails()
            stack.workers[i] = stack.start_worker()
            time.sleep(1.0)


def watch_rss(stack: Stage2, stop: threading.Event, peak: dict[str, float]) -> None:
    """Peak RSS (MiB) of the gateway and of the largest worker, once a second, across restarts."""
    while not stop.wait(1.0):
        for name, procs in (("gateway", [stack.gateway]), ("worker", list(stack.workers))):
            for proc in procs:
                try:
                    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                peak[name] = max(peak.get(name, 0.0), rss)


def stored_ids(database_url: str, table_name: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        try:
            rows = conn.execute(f"SELECT event_id::text FROM {table_name} WHERE type = %s", (LOAD_TYPE,)).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [r[0] for r in rows]


def invalid_ids(client: redis.Redis, queue: str) -> set[str]:
    found = set()
    for raw in client.lrange(f"{queue}:invalid", 0, -1):
        payload = orjson.loads(raw).get("payload")
        if isinstance(payload, dict):
            found.add(str(payload.get("event_id")))
    return found


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs"
    path.mkdir()
    yield path


def test_stage2_faults_lose_and_duplicate_nothing(postgres: Service, redis_server: Service, redis_prefix: str,
                                                   pg_schema: str, logs: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    queue, table_name = redis_prefix + "events", f"{pg_schema}.events"
    seed = random.randrange(1 << 30)
    rng, injected, recovery = random.Random(seed), Counter[str](), dict[str, float]()
    print(f"fault seed {seed}", flush=True)
    stack = Stage2(postgres, redis_server, queue, table_name, logs)
    load = TrackingLoad([stack.url], KEY, rate=400.0 if FULL else 150.0, threads=3)
    codes: list[int] = []
    peak: dict[str, float] = {}
    stop_rss = threading.Event()
    threading.Thread(target=watch_rss, args=(stack, stop_rss, peak), daemon=True).start()
    try:
        load.start()
        kinds = KINDS * (3 if FULL else 1)
        rng.shuffle(kinds)
        for kind in kinds:
            time.sleep(rng.uniform(1.0, 4.0))
            inject(stack, kind, rng)
            ended, snapshot = time.monotonic(), load.acked_now()
            wait_for(lambda s=snapshot: s <= set(stored_ids(postgres.url, table_name)), 120,  # type: ignore[misc]
                     f"caught up after {kind}", poll=0.5)
            injected[kind] += 1
            recovery[kind] = max(recovery.get(kind, 0.0), time.monotonic() - ended)
        time.sleep(3)
        load.finish()
        drain_s = wait_for(lambda: harness.in_flight(client, queue) == 0, 120, "the queue to drain", poll=0.5)
        alive = all(w.poll() is None for w in stack.workers) and stack.gateway.poll() is None
    finally:
        load.stop.set()
        stop_rss.set()
        codes = stack.close()
    stored = Counter(stored_ids(postgres.url, table_name))
    acked, invalid = set(load.acked), set(load.rejected)
    lost, dups = acked - set(stored), {i for i, n in stored.items() if n > 1}
    stray = set(stored) - acked - load.resent - load.pending
    kept_invalid = invalid_ids(client, queue)
    table("Stage 2 system run" + (" (full)" if FULL else " (CI form)"), {
        "faults injected": dict(injected),
        "events accepted (2xx)": len(acked),
        "resent after 503/cut": len(load.resent),
        "rejected (4xx'd events)": len(invalid),
        "lost (Postgres)": len(lost),
        "duplicated (Postgres)": len(dups),
        "answers by status": dict(load.statuses),
        "max recovery, fault end to caught up (s)": {k: round(v, 1) for k, v in recovery.items()},
        "queue drained after load (s)": round(drain_s, 1),
        "dead-lettered": client.llen(queue + ":dead"),
        "peak RSS MiB": {k: round(v) for k, v in peak.items()},
    })
    assert load.unexpected == [], load.unexpected[:5]
    assert alive, stack.log_tails()
    assert len(acked) > 1000, dict(load.statuses)
    assert sum(injected.values()) == len(KINDS) * (3 if FULL else 1)
    assert not lost, f"{len(lost)} acknowledged events missing from Postgres\n{stack.log_tails()}"
    assert not dups, f"{len(dups)} events twice in Postgres"
    assert not stray, f"{len(stray)} events in Postgres that were never sent"
    assert not invalid & set(stored), "a rejected event reached Postgres"
    assert invalid <= kept_invalid, f"{len(invalid - kept_invalid)} rejected events not kept in {queue}:invalid"
    assert client.llen(queue + ":dead") == 0
    assert codes == [0] * len(codes), stack.log_tails()
    assert peak and all(v < RSS_BOUND_MIB[k] for k, v in peak.items()), peak
