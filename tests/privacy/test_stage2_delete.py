"""Acceptance, stage 2: gateway -> Redis -> worker -> Postgres; delete A; A gone, B and C intact, row for row."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psycopg
import pytest
import redis
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.consumers.worker import harness
from tests.privacy.stage3 import AUTH, ROOT, send
from tests.providers import Service

pytestmark = pytest.mark.slow


def _ids(url: str, table: str, user: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT event_id::text FROM {table} WHERE user_id = %s ORDER BY 1", (user,)).fetchall()
    return [r[0] for r in rows]


def _wait(url: str, table: str, total: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url) as conn:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        except psycopg.errors.UndefinedTable:  # the worker is still creating it
            row = (0,)
        if row and row[0] >= total:
            return
        assert time.monotonic() < deadline, f"{row} of {total} stored"
        time.sleep(0.3)


def test_delete_a_on_postgres(postgres: Service, redis_server: Service, redis_prefix: str, pg_schema: str,
                              tmp_path: Path) -> None:
    table, queue = f"{pg_schema}.events", f"{redis_prefix}events"
    worker_settings = harness.settings(postgres.url, redis_server.url, queue, table, privacy_refresh_s=0.5)
    worker = harness.start_process(worker_settings, "w1", tmp_path / "worker.log")
    gateway = GatewaySettings(gateway_backend="redis", redis_url=redis_server.url, redis_queue_key=queue,
                              gateway_api_keys="key-a=web", database_url=postgres.url, gateway_postgres_table=table,
                              privacy_refresh_s=0.5)
    env = dict(os.environ) | {"PRIVACY_STORE": "postgres", "DATABASE_URL": postgres.url,
                              "PRIVACY_POSTGRES_TABLE": table, "PRIVACY_REFRESH_S": "0.5",
                              "PRIVACY_SETTLE_MARGIN_S": "1"}
    try:
        with TestClient(create_app(gateway)) as client:
            send(client, ["A", "B", "C"], 200)
            _wait(postgres.url, table, 600)
            before = {user: _ids(postgres.url, table, user) for user in ("B", "C")}
            deleted = subprocess.run([sys.executable, "-m", "evpipe", "privacy", "delete", "--user-id", "A"],
                                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
            assert deleted.returncode == 0, deleted.stdout + deleted.stderr
            assert "postgres" in deleted.stdout and "status done" in deleted.stdout
            assert _ids(postgres.url, table, "A") == []
            assert {user: _ids(postgres.url, table, user) for user in ("B", "C")} == before

            # New events of A: 2xx, never pushed; a re-delivered one (pushed behind the gateway) is dropped by the worker.
            answer = client.post("/v1/events", json=[{"type": "t", "user_id": "A"}], headers=AUTH)
            assert answer.status_code == 200 and answer.json()["accepted"] == 1
            late: dict[str, object] = {"event_id": "018f0000-0000-7000-8000-000000000001", "type": "t", "source_id": "web",
                    "user_id": "A", "anonymous_id": None, "occurred_at": None,
                    "received_at": "2026-12-01T10:00:00.000Z", "properties": {}, "context": {}, "schema_version": 1}
            redis.Redis.from_url(redis_server.url).rpush(queue, orjson.dumps(late))
            send(client, ["B"], 5, tag="late")
            _wait(postgres.url, table, 405)
            time.sleep(1)
            assert _ids(postgres.url, table, "A") == []
    finally:
        harness.stop_all([worker])
