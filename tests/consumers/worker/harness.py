"""Helpers for the worker tests: settings, worker processes, queue filling, result counting."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis

from consumers.worker.settings import WorkerSettings
from consumers.worker.worker import Worker
from tests.consumers.worker.events import make_wire

REPO = Path(__file__).resolve().parents[3]

# Short timings so dead workers are noticed within a few seconds in tests.
FAST: dict[str, Any] = {
    "worker_batch_wait_ms": 100, "worker_heartbeat_s": 0.5, "worker_heartbeat_ttl_s": 2.0,
    "worker_reclaim_interval_s": 1.0, "worker_backoff_initial_s": 0.05, "worker_backoff_max_s": 1.0,
    "worker_metrics_port": 0, "worker_partition_days_ahead": 1,
}


def settings(database_url: str, redis_url: str, queue: str, table: str, **overrides: Any) -> WorkerSettings:
    values = {**FAST, "database_url": database_url, "redis_url": redis_url, "redis_queue_key": queue,
              "worker_table": table, **overrides}
    return WorkerSettings(**values)


def env(s: WorkerSettings) -> dict[str, str]:
    """The environment that gives a worker process these settings."""
    out = dict(os.environ)
    for name, value in s.model_dump().items():
        out[name.upper()] = str(value)
    return out


def start_process(s: WorkerSettings, worker_id: str = "", log: Path | None = None) -> subprocess.Popen[bytes]:
    """A worker process; its log goes to ``log`` (appended) so a full pipe can never stall it."""
    e = env(s)
    e["WORKER_ID"] = worker_id
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115  # closed by the child's exit
    return subprocess.Popen([sys.executable, "-m", "evpipe", "worker", "--log-level", "WARNING"],
                            cwd=REPO, env=e, stdout=subprocess.DEVNULL, stderr=out)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> list[int]:
    """SIGTERM every process, then wait; returns their exit codes."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout_s))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    return codes


class Producer(threading.Thread):
    """Pushes ``n`` fresh events to the queue in chunks at a steady pace, like the gateway would."""

    def __init__(self, client: redis.Redis, queue: str, n: int, seconds: float, start: int = 0,
                 chunk: int = 1000) -> None:
        super().__init__(daemon=True)
        self.client, self.queue, self.n, self.seconds, self.chunk = client, queue, n, seconds, chunk
        self.start_index = start  # events are numbered start_index.. (make_wire), so ranges never overlap
        self.pushed = 0

    def run(self) -> None:
        chunks = max(1, self.n // self.chunk)
        pause = self.seconds / chunks
        for start in range(0, self.n, self.chunk):
            push(self.client, self.queue, make_wire(min(self.chunk, self.n - start), self.start_index + start))
            self.pushed += min(self.chunk, self.n - start)
            time.sleep(pause)


class ThreadWorker:
    """A Worker running on a thread of the test process."""

    def __init__(self, s: WorkerSettings) -> None:
        self.worker = Worker(s)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.worker.run()
        self.exit_code = self.worker.exit_code

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "worker did not stop within 60 s"


def push(client: redis.Redis, queue: str, items: list[bytes], chunk: int = 5000) -> None:
    for i in range(0, len(items), chunk):
        client.rpush(queue, *items[i:i + chunk])


def fill(client: redis.Redis, queue: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n, 10_000):
        push(client, queue, make_wire(min(10_000, start + n - i), i))


def counts(database_url: str, table: str) -> tuple[int, int]:
    """(rows, distinct event ids) in the events table; (0, 0) before a worker created it."""
    with psycopg.connect(database_url) as conn:
        try:
            row = conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {table}").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0
        assert row is not None
        return int(row[0]), int(row[1])


def in_flight(client: redis.Redis, queue: str) -> int:
    """Events in the main list plus every processing list."""
    total = int(client.llen(queue))
    for key in client.scan_iter(match=f"{queue}:processing:*"):
        total += int(client.llen(key))
    return total


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
