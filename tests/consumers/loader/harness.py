"""Run `evpipe loader` as a real process against Kafka and ClickHouse, and read what it loaded.

Loaders are ClickHouse clients: the test reads through its own client, as an analyst would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.providers import Service

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Target:
    """Where the loaders write: the ClickHouse the fixtures chose, in a database of this test."""

    url: str
    database: str

    @classmethod
    def choose(cls, clickhouse: Service, database: str, tmp_path: Path | None = None) -> Target:
        return cls(clickhouse.url, database)

    def env(self) -> dict[str, str]:
        return {"CLICKHOUSE_URL": self.url, "CLICKHOUSE_DATABASE": self.database}

    def query(self, sql: str) -> list[dict[str, Any]]:
        from evpipe.clickhouse import connect

        client = connect(self.url)
        client.database = self.database
        result = client.query(sql)
        return [dict(zip(result.column_names, row)) for row in result.result_rows]

    def counts(self) -> tuple[int, int]:
        """(count(), uniqExact(event_id)) without FINAL; (0, 0) before the table exists."""
        try:
            row = self.query("SELECT count() AS n, uniqExact(event_id) AS u FROM events")[0]
        except Exception as exc:  # a loader still starting: no database or table yet
            if any(text in str(exc) for text in ("UNKNOWN_TABLE", "doesn't exist", "UNKNOWN_DATABASE",
                                                 "does not exist")):
                return 0, 0
            raise
        return int(row["n"]), int(row["u"])

    def wait_for(self, expected: int, timeout: float, alive: list[LoaderProcess] | None = None) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        got = (0, 0)
        while time.monotonic() < deadline:
            got = self.counts()
            if got[0] >= expected:
                return got
            for proc in alive or []:
                proc.check_alive()
            time.sleep(1.0)
        return got


@dataclass
class LoaderProcess:
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    history: list[str] = field(default_factory=list)

    def start(self) -> LoaderProcess:
        self.starts += 1
        handle = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "evpipe", "loader"], cwd=ROOT, env=self.env,
                                     stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.history.append("kill -9")

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.history.append(f"SIGTERM -> {code}")
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None and not self.history[-1:] == ["kill -9"]:
            raise AssertionError(f"loader exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def loader_env(kafka: Service, topic: str, group: str, target: Target, **extra: str) -> dict[str, str]:
    env = os.environ | target.env() | {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.url,
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "LOADER_CONSUME_REPLAY": "false",
        "LOADER_GROUP_ID": group,
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "CONSUMER_RETRY_MAX_S": "2",
        "CONSUMER_LAG_INTERVAL_S": "2",
        "METRICS_PORT": "0",
        "LOADER_ADMIN_HOST": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
    }
    return env | extra


def read_dead_letters(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[tuple[bytes, dict[str, str]]]:
    """(value, headers) of the messages on a dead-letter topic."""
    import uuid

    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000, "fetch.queue.backoff.ms": 10})
    consumer.subscribe([topic])
    found: list[tuple[bytes, dict[str, str]]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                if msg.error() is None:
                    headers = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
                    found.append((msg.value(), headers))
    finally:
        consumer.close()
    return found
