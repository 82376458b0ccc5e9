"""Postgres backend (stage 1): committed inserts, idempotent client retry, invalid table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.helpers import AUTH_A, KEYS, event
from tests.providers import Service


@pytest.fixture
def pg_settings(postgres: Service, pg_schema: str) -> GatewaySettings:
    return GatewaySettings(gateway_backend="postgres", database_url=postgres.url,
                           gateway_postgres_table=f"{pg_schema}.events", gateway_api_keys=KEYS)


@pytest.fixture
def pg_client(pg_settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(pg_settings)) as client:
        yield client


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def test_insert_and_idempotent_retry(postgres: Service, pg_schema: str, pg_client: TestClient) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    batch = [event(event_id=i, user_id="u-1") for i in ids]
    first = pg_client.post("/v1/events", json=batch, headers=AUTH_A)
    assert first.status_code == 200 and first.json()["accepted"] == 3
    # The client did not see the answer and resends, plus one new event.
    extra = str(uuid.uuid4())
    retry = pg_client.post("/v1/events", json=[*batch, event(event_id=extra, user_id="u-1")], headers=AUTH_A)
    assert retry.status_code == 200
    assert _count(postgres.url, f"SELECT count(*) FROM {pg_schema}.events") == 4
    assert _count(postgres.url, f"SELECT count(DISTINCT event_id) FROM {pg_schema}.events") == 4
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute(f"SELECT source_id, user_id FROM {pg_schema}.events WHERE event_id = %s",
                           (extra,)).fetchone()
    assert row == ("source_a", "u-1")


def test_invalid_events_kept_in_invalid_table(postgres: Service, pg_schema: str, pg_client: TestClient) -> None:
    response = pg_client.post("/v1/events", json=[event(), {"type": "x"}, "text"], headers=AUTH_A)
    assert response.status_code == 200
    with psycopg.connect(postgres.url) as conn:
        rows = conn.execute(f"SELECT source_id, reason, payload FROM {pg_schema}.events_invalid "
                            "ORDER BY reason").fetchall()
    assert rows == [("source_a", "event must be a JSON object", "text"),
                    ("source_a", "one of user_id or anonymous_id is required", '{"type":"x"}')]


def test_database_down_is_503_then_recovers(pg_settings: GatewaySettings) -> None:
    from evpipe.local.daemon import free_port

    with TestClient(create_app(pg_settings)) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        good_url = gateway.backend.url
        gateway.backend.url = f"postgresql://127.0.0.1:{free_port()}/test"
        down = client.post("/v1/events", json=event(), headers=AUTH_A)
        assert down.status_code == 503 and "Retry-After" in down.headers
        assert client.get("/readyz").status_code == 503
        gateway.backend.url = good_url
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/events", json=event(), headers=AUTH_A).status_code == 200


def test_whole_body_refusal_kept_with_raw_bytes(postgres: Service, pg_schema: str, pg_client: TestClient) -> None:
    import base64
    import json

    body = b'{"type":"t","user_id":"\xff\xfe"}'
    assert pg_client.post("/v1/events", content=body, headers=AUTH_A).status_code == 400
    with psycopg.connect(postgres.url) as conn:
        rows = conn.execute(f"SELECT source_id, reason, payload FROM {pg_schema}.events_invalid").fetchall()
    [(source, reason, payload)] = rows
    raw = json.loads(payload)
    assert source == "source_a" and reason.startswith("body is not valid JSON")
    assert raw["encoding"] == "base64" and base64.b64decode(raw["data"]) == body and raw["size"] == len(body)
