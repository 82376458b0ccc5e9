"""A stage-3 pipeline for the privacy tests: the gateway in-process, the archiver and loader as processes.

Everything is a test's own: topic, ClickHouse database, archive directory, groups.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.consumers.archiver.helpers import archiver_env, read_archive, start_process
from tests.consumers.loader.harness import LoaderProcess, Target, loader_env
from tests.consumers.runtime.events import create_topic
from tests.providers import Service, unique_name

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer key-a"}
REFRESH = {"PRIVACY_REFRESH_S": "0.5", "PRIVACY_SETTLE_MARGIN_S": "1"}


@dataclass
class Stage3:
    kafka: Service
    clickhouse: Service
    topic: str
    tmp: Path
    database: str = field(default_factory=lambda: unique_name("db"))
    loader_group: str = field(default_factory=lambda: unique_name("gl"))
    procs: list[Any] = field(default_factory=list)

    @property
    def archive(self) -> Path:
        return self.tmp / "archive"

    @property
    def target(self) -> Target:
        return Target(self.clickhouse.url, self.database)

    def create_topics(self, partitions: int = 2) -> None:
        for name in (self.topic, f"{self.topic}.dlq", f"{self.topic}.replay"):
            create_topic(self.kafka.url, name, partitions)

    def env(self, **extra: str) -> dict[str, str]:
        """The privacy command's and replay's environment."""
        return loader_env(self.kafka, self.topic, self.loader_group, self.target, ARCHIVE_URI=str(self.archive),
                          KAFKA_REPLAY_TOPIC=f"{self.topic}.replay", **REFRESH) | extra

    def start_archiver(self, batch: int = 200) -> subprocess.Popen[bytes]:
        env = archiver_env(self.kafka.url, self.topic, f"{self.topic}.dlq", str(self.archive), unique_name("ga"),
                           CONSUMER_BATCH_MAX_MESSAGES=str(batch), **self.target.env(), **REFRESH)
        proc = start_process(env, self.tmp / "archiver.log")
        self.procs.append(proc)
        return proc

    def start_loader(self, **extra: str) -> LoaderProcess:
        loader = LoaderProcess(self.env(CONSUMER_BATCH_MAX_AGE_S="0.5", **extra), self.tmp / "loader.log").start()
        self.procs.append(loader)
        return loader

    def stop(self) -> None:
        for proc in self.procs:
            if isinstance(proc, LoaderProcess):
                if proc.alive():
                    proc.terminate()
            elif proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        self.procs.clear()

    @contextmanager
    def gateway(self) -> Iterator[TestClient]:
        settings = GatewaySettings(kafka_bootstrap_servers=self.kafka.url, kafka_topic=self.topic,
                                   kafka_invalid_topic=f"{self.topic}.dlq", gateway_api_keys="key-a=web",
                                   gateway_fallback_uri="", clickhouse_url=self.clickhouse.url,
                                   clickhouse_database=self.database, privacy_refresh_s=0.5)
        with TestClient(create_app(settings)) as client:
            yield client

    def evpipe(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "evpipe", *args], cwd=ROOT, env=env or self.env(),
                              capture_output=True, text=True, timeout=300, check=False)

    # -- reading back ------------------------------------------------------------------------------

    def ch_ids(self, user: str) -> list[str]:
        rows = self.target.query(f"SELECT toString(event_id) AS id FROM events WHERE user_id = '{user}' ORDER BY id")
        return [r["id"] for r in rows]

    def archive_table(self) -> pa.Table:
        return read_archive(self.archive) if self.archive.exists() else pa.table({})

    def archive_ids(self, user: str) -> list[str]:
        table = self.archive_table()
        if table.num_rows == 0:
            return []
        mine = table.filter(pc.equal(table.column("user_id"), user))
        return sorted(mine.column("event_id").to_pylist())

    def archive_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.archive)) for p in self.archive.glob("topic=*/**/*.parquet"))

    def wait_loaded(self, total: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.target.counts()[0] < total:
            assert time.monotonic() < deadline, f"loaded {self.target.counts()} of {total}"
            time.sleep(0.5)

    def wait_archived(self, total: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.archive_table().num_rows < total:
            assert time.monotonic() < deadline, f"archived {self.archive_table().num_rows} of {total}"
            time.sleep(0.5)


def send(client: TestClient, users: list[str], per_user: int, tag: str = "t") -> None:
    """``per_user`` events of each user, interleaved, in requests of 50."""
    events = [{"type": f"{tag}{i % 3}", "user_id": user} for i in range(per_user) for user in users]
    for start in range(0, len(events), 50):
        answer = client.post("/v1/events", json=events[start:start + 50], headers=AUTH)
        assert answer.status_code == 200, answer.text
