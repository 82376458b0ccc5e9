"""Redis backend (stage 2): RPUSH of wire values, saturation 503, invalid list, readiness."""

from __future__ import annotations

import orjson
import redis
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.helpers import AUTH_A, event
from tests.providers import Service


def test_rpush_in_order_wire_format(redis_server: Service, redis_client: TestClient,
                                    redis_gateway_settings: GatewaySettings) -> None:
    batch = [event(type=f"e{n}") for n in range(5)]
    assert redis_client.post("/v1/events", json=batch, headers=AUTH_A).status_code == 200
    client = redis.Redis.from_url(redis_server.url)
    key = redis_gateway_settings.redis_queue_key
    # The worker takes from the left: the oldest event first.
    assert [orjson.loads(client.lpop(key))["type"] for _ in range(5)] == [f"e{n}" for n in range(5)]


def test_saturated_queue_answers_503_and_pushes_nothing(redis_server: Service,
                                                         redis_gateway_settings: GatewaySettings) -> None:
    settings = redis_gateway_settings.model_copy(update={"gateway_redis_max_queue": 3})
    client = redis.Redis.from_url(redis_server.url)
    with TestClient(create_app(settings)) as app:
        assert app.post("/v1/events", json=[event()] * 3, headers=AUTH_A).status_code == 200
        assert app.get("/readyz").status_code == 503
        full = app.post("/v1/events", json=event(), headers=AUTH_A)
        assert full.status_code == 503
        assert full.headers["Retry-After"] == "5"
        assert "event_ids" not in full.json()  # nothing was pushed: a plain resend is safe
        assert client.llen(settings.redis_queue_key) == 3
        client.lpop(settings.redis_queue_key, 3)
        assert app.get("/readyz").status_code == 200
        assert app.post("/v1/events", json=event(), headers=AUTH_A).status_code == 200


def test_unreachable_redis_is_503_within_deadline(redis_gateway_settings: GatewaySettings) -> None:
    from evpipe.local.daemon import free_port

    settings = redis_gateway_settings.model_copy(update={
        "redis_url": f"redis://127.0.0.1:{free_port()}/0", "gateway_deadline_s": 1.0})
    with TestClient(create_app(settings)) as app:
        response = app.post("/v1/events", json=event(), headers=AUTH_A)
        assert response.status_code == 503
        assert "Retry-After" in response.headers
        assert app.get("/readyz").status_code == 503
        assert app.get("/healthz").status_code == 200


def test_drain_fails_readiness_and_refuses_new_events(redis_server: Service, redis_client: TestClient,
                                                      redis_gateway_settings: GatewaySettings) -> None:
    assert redis_client.get("/readyz").status_code == 200
    redis_client.app.state.gateway.begin_drain()  # type: ignore[attr-defined]  # what SIGTERM does first
    ready = redis_client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    refused = redis_client.post("/v1/events", json=event(), headers=AUTH_A)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert redis_client.get("/healthz").status_code == 200
    assert redis.Redis.from_url(redis_server.url).llen(redis_gateway_settings.redis_queue_key) == 0
