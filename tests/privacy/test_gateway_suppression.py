"""The gateway drops suppressed users' events (2xx, counted, never pushed), and its admin routes."""

from __future__ import annotations

import time

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from evpipe.privacy.postgres import PostgresPrivacyStore
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.helpers import AUTH_A, KEYS
from tests.providers import Service

ADMIN = {"Authorization": "Bearer admin-secret"}


def settings_for(redis_server: Service, redis_prefix: str, postgres: Service, pg_schema: str) -> GatewaySettings:
    return GatewaySettings(gateway_backend="redis", redis_url=redis_server.url,
                           redis_queue_key=f"{redis_prefix}events", gateway_api_keys=KEYS,
                           database_url=postgres.url, gateway_postgres_table=f"{pg_schema}.events",
                           gateway_admin_keys="admin-secret=alice", privacy_refresh_s=0.2)


def suppressed_metric(app: TestClient) -> float:
    for line in app.get("/metrics").text.splitlines():
        if line.startswith("evpipe_gateway_events_suppressed_total "):
            return float(line.split()[1])
    return 0.0


def test_suppressed_user_answered_2xx_and_never_pushed(redis_server: Service, redis_prefix: str,
                                                         postgres: Service, pg_schema: str) -> None:
    settings = settings_for(redis_server, redis_prefix, postgres, pg_schema)
    store = PostgresPrivacyStore(postgres.url, f"{pg_schema}.events")
    with TestClient(create_app(settings)) as app:
        made = app.post("/admin/privacy/requests", json={"action": "suppress", "user_id": "A"}, headers=ADMIN)
        assert made.status_code == 202, made.text
        assert made.json()["status"] == "done" and made.json()["requested_by"] == "admin:alice"
        time.sleep(0.6)  # two refreshes of the gateway's copy
        batch = [{"type": "t", "user_id": user} for user in ("A", "B", "A", "C")]
        answer = app.post("/v1/events", json=batch, headers=AUTH_A)
        assert answer.status_code == 200 and answer.json()["accepted"] == 4
        only_a = app.post("/v1/events", json={"type": "t", "user_id": "A"}, headers=AUTH_A)
        assert only_a.status_code == 200 and only_a.json()["accepted"] == 1
        assert suppressed_metric(app) == 3
    pushed = [orjson.loads(v) for v in redis.Redis.from_url(redis_server.url).lrange(settings.redis_queue_key, 0, -1)]
    assert [e["user_id"] for e in pushed] == ["B", "C"]
    assert [r["id"] for r in (d for d in store.requests())] == [made.json()["id"]]


def test_admin_routes_need_an_admin_key(redis_server: Service, redis_prefix: str, postgres: Service,
                                        pg_schema: str) -> None:
    settings = settings_for(redis_server, redis_prefix, postgres, pg_schema)
    with TestClient(create_app(settings)) as app:
        body = {"action": "delete", "anonymous_id": "dev-1", "source_id": "source_a"}
        assert app.post("/admin/privacy/requests", json=body, headers=AUTH_A).status_code == 401
        assert app.post("/admin/privacy/requests", json=body).status_code == 401
        made = app.post("/admin/privacy/requests", json=body, headers=ADMIN)
        assert made.status_code == 202 and made.json()["status"] == "pending"
        again = app.post("/admin/privacy/requests", json=body, headers=ADMIN)
        assert again.json()["id"] == made.json()["id"]  # idempotent: the same request
        one = app.get(f"/admin/privacy/requests/{made.json()['id']}", headers=ADMIN)
        assert one.status_code == 200 and one.json()["subject"]["value"] == "dev-1"
        assert len(app.get("/admin/privacy/requests", headers=ADMIN).json()["requests"]) == 1
        assert app.post("/admin/privacy/requests", json={"action": "x"}, headers=ADMIN).status_code == 400
    with pytest.raises(SystemExit, match="also an ingest key"):
        create_app(settings.model_copy(update={"gateway_admin_keys": "key-a=alice"}))
    off = settings.model_copy(update={"gateway_admin_keys": ""})
    with TestClient(create_app(off)) as app:
        assert app.get("/admin/privacy/requests", headers=ADMIN).status_code == 404
