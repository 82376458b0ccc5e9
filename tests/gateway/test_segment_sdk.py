"""The real Segment Python SDK (segment-analytics-python) sends to the gateway by changing only its host."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
import uvicorn
from segment.analytics import client as analytics

from evpipe.local.daemon import free_port, port_open
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.providers import Service


@pytest.fixture
def served(redis_gateway_settings: GatewaySettings) -> Iterator[str]:
    """The gateway under uvicorn in a thread (no signal handling off the main thread)."""
    port = free_port()
    config = uvicorn.Config(create_app(redis_gateway_settings), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


def test_segment_python_sdk_unmodified(served: str, redis_server: Service,
                                       redis_gateway_settings: GatewaySettings) -> None:
    errors: list[Any] = []
    client = analytics.Client("key-a", host=served, gzip=True, sync_mode=True, max_retries=0,
                              on_error=lambda error, batch: errors.append(error))
    ids = {name: str(uuid.uuid4()) for name in ("track", "identify", "page", "screen", "group", "alias")}
    client.track("user-1", "Order Completed", {"revenue": 42.5}, message_id=ids["track"])
    client.identify("user-1", {"email": "a@example.com"}, message_id=ids["identify"])
    client.page("user-1", "Docs", "Pricing", {"url": "https://example.com/pricing"}, message_id=ids["page"])
    client.screen("user-1", "App", "Home", message_id=ids["screen"])
    client.group("user-1", "group-9", {"plan": "pro"}, message_id=ids["group"])
    client.alias("user-0", "user-1", message_id=ids["alias"])
    client.flush()
    assert errors == []
    stored = {e["event_id"]: e for e in (orjson.loads(v) for v in redis.Redis.from_url(redis_server.url).lrange(
        redis_gateway_settings.redis_queue_key, 0, -1))}
    assert set(stored) == set(ids.values())
    track = stored[ids["track"]]
    assert track["type"] == "Order Completed" and track["user_id"] == "user-1" and track["source_id"] == "source_a"
    assert orjson.loads(track["properties"]) == {"revenue": 42.5}
    assert orjson.loads(track["context"])["library"]["name"] == "analytics-python"
    assert orjson.loads(stored[ids["page"]]["properties"])["name"] == "Pricing"
    assert orjson.loads(stored[ids["group"]]["properties"])["group_id"] == "group-9"
    assert orjson.loads(stored[ids["alias"]]["properties"])["previous_id"] == "user-0"
    assert all(e["occurred_at"] for e in stored.values())
