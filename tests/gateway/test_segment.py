"""Segment-compatible endpoints with payloads exactly as the Segment HTTP Tracking API documents them."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from gateway.settings import GatewaySettings
from tests.providers import Service

# Segment SDKs authenticate with HTTP Basic: the write key as user name, empty password.
SEGMENT_AUTH = {"Authorization": "Basic " + base64.b64encode(b"key-a:").decode()}

TRACK = {"userId": "019mr8mf4r", "event": "Item Purchased",
         "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
         "context": {"ip": "24.5.68.47"}, "timestamp": "2012-12-02T00:30:12.984Z"}
IDENTIFY = {"userId": "019mr8mf4r",
            "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons", "industry": "Technology"},
            "context": {"ip": "24.5.68.47"}, "timestamp": "2012-12-02T00:30:08.276Z"}
PAGE = {"userId": "019mr8mf4r", "name": "Tracking HTTP API", "timestamp": "2012-12-02T00:30:08.276Z"}
SCREEN = {"userId": "019mr8mf4r", "name": "Tracking HTTP API", "timestamp": "2012-12-02T00:30:08.276Z"}
GROUP = {"userId": "019mr8mf4r", "groupId": "8e9df332ac", "traits": {
    "name": "Initech", "industry": "Technology", "employees": 329, "plan": "enterprise", "total billed": 830}}
ALIAS = {"previousId": "39239-239239-239239-23923", "userId": "019mr8mf4r", "timestamp": "2012-12-02T00:30:08.276Z"}
BATCH = {
    "batch": [
        {"type": "identify", "userId": "019mr8mf4r", "traits": {"email": "jake@yahoo.com", "name": "Jake Peavy",
                                                                  "age": 26}, "timestamp": "2012-12-02T00:30:08.276Z"},
        {"type": "track", "userId": "019mr8mf4r", "event": "Song Played",
         "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"}, "timestamp": "2012-12-02T00:30:12.984Z"},
        {"type": "identify", "userId": "971mj8mk7p", "traits": {"email": "cindy@example.com",
                                                                  "name": "Cindy Gonzalez", "age": 23},
         "timestamp": "2012-12-02T00:30:08.276Z"},
        {"type": "track", "userId": "971mj8mk7p", "event": "Song Played",
         "properties": {"name": "Get Right", "artist": "Jennifer Lopez"}, "timestamp": "2012-12-02T00:30:12.984Z"},
    ],
    "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}},
}


def _stored(url: str, key: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in redis.Redis.from_url(url).lrange(key, 0, -1)]


@pytest.mark.parametrize(("call", "payload", "expected_type", "expected_props"), [
    ("track", TRACK, "Item Purchased", {"name": "Leap to Conclusions Mat", "revenue": 14.99}),
    ("identify", IDENTIFY, "identify", {"traits": IDENTIFY["traits"]}),
    ("page", PAGE, "page", {"name": "Tracking HTTP API"}),
    ("screen", SCREEN, "screen", {"name": "Tracking HTTP API"}),
    ("group", GROUP, "group", {"group_id": "8e9df332ac", "traits": GROUP["traits"]}),
    ("alias", ALIAS, "alias", {"previous_id": "39239-239239-239239-23923"}),
])
def test_each_segment_call(redis_server: Service, redis_client: TestClient, redis_gateway_settings: GatewaySettings,
                           call: str, payload: dict[str, Any], expected_type: str,
                           expected_props: dict[str, Any]) -> None:
    response = redis_client.post(f"/v1/{call}", json=payload, headers=SEGMENT_AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    [event] = _stored(redis_server.url, redis_gateway_settings.redis_queue_key)
    assert event["type"] == expected_type
    assert event["user_id"] == "019mr8mf4r"
    assert event["source_id"] == "source_a"
    assert orjson.loads(event["properties"]) == expected_props
    # No sentAt: the client's timestamp is taken as it is.
    assert event["occurred_at"] == payload.get("timestamp")


def test_segment_batch_with_batch_context(redis_server: Service, redis_client: TestClient,
                                          redis_gateway_settings: GatewaySettings) -> None:
    response = redis_client.post("/v1/batch", json=BATCH, headers=SEGMENT_AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 4, "rejected": [], "success": True}
    events = _stored(redis_server.url, redis_gateway_settings.redis_queue_key)
    assert [e["type"] for e in events] == ["identify", "Song Played", "identify", "Song Played"]
    assert all(orjson.loads(e["context"])["device"] == {"type": "phone", "name": "Apple iPhone 6"} for e in events)


def test_message_id_clock_skew_and_write_key_in_body(redis_server: Service, redis_client: TestClient,
                                                     redis_gateway_settings: GatewaySettings) -> None:
    given = str(uuid.uuid4())
    body = {"writeKey": "key-b", "sentAt": "2030-01-01T00:00:10.000Z", "batch": [
        # Device clock is 2030; the event happened 4 s before it was sent.
        {"type": "track", "event": "Clicked", "anonymousId": "a-1", "messageId": given,
         "timestamp": "2030-01-01T00:00:06.000Z"},
        {"type": "track", "event": "Clicked", "anonymousId": "a-1", "messageId": "ajs-next-1b2c3d",
         "originalTimestamp": "2030-01-01T00:00:10.000Z", "sentAt": "2030-01-01T00:00:10.000Z"},
    ]}
    response = redis_client.post("/v1/batch", json=body)
    assert response.status_code == 200, response.text
    first, second = _stored(redis_server.url, redis_gateway_settings.redis_queue_key)
    assert first["source_id"] == "source_b"
    assert first["event_id"] == given
    received_ms = _ms(first["received_at"])
    assert received_ms - _ms(first["occurred_at"]) == 4000  # skew removed: received - (sentAt - timestamp)
    assert second["occurred_at"] == second["received_at"]
    # A non-UUID messageId maps to a stable UUID (a retry dedupes) and is kept in context.
    assert second["event_id"] == str(uuid.uuid5(uuid.UUID("6f1d3c8e-3b7a-5f43-9a51-8d1f0c4b2e77"),
                                                "source_b\x00ajs-next-1b2c3d"))
    assert orjson.loads(second["context"])["message_id"] == "ajs-next-1b2c3d"


def _ms(stamp: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(stamp).timestamp() * 1000)


def test_segment_rejections(redis_client: TestClient) -> None:
    body = {"batch": [
        {"type": "track", "userId": "u"},  # no event name
        {"type": "unknown", "userId": "u"},
        {"type": "page", "name": "Home"},  # no identity
        {"type": "track", "userId": "u", "event": "ok", "bogus": 1},
        {"type": "track", "userId": "u", "event": "ok"},
    ]}
    response = redis_client.post("/v1/batch", json=body, headers=SEGMENT_AUTH)
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {"index": 0, "error": "event: required for track"},
        {"index": 1, "error": "type: expected one of track, identify, page, screen, group, alias"},
        {"index": 2, "error": "one of user_id or anonymous_id is required"},
        {"index": 3, "error": "unknown field 'bogus'"},
    ]
    wrong_route = redis_client.post("/v1/identify", json={**TRACK, "type": "track"}, headers=SEGMENT_AUTH)
    assert wrong_route.status_code == 400
    assert wrong_route.json()["rejected"] == [{"index": 0, "error": "type: 'track' sent to /v1/identify"}]
    assert redis_client.post("/v1/track", json=[TRACK], headers=SEGMENT_AUTH).status_code == 400
    assert redis_client.post("/v1/batch", json=TRACK, headers=SEGMENT_AUTH).status_code == 400


def test_segment_invalid_kept_in_redis(redis_server: Service, redis_client: TestClient,
                                       redis_gateway_settings: GatewaySettings) -> None:
    response = redis_client.post("/v1/track", json={"userId": "u"}, headers=SEGMENT_AUTH)
    assert response.status_code == 400
    [kept] = _stored(redis_server.url, f"{redis_gateway_settings.redis_queue_key}:invalid")
    assert kept["error"] == "event: required for track"
    assert kept["payload"] == {"userId": "u"}


def test_analytics_js_short_paths_with_text_plain(redis_server: Service, redis_client: TestClient,
                                                  redis_gateway_settings: GatewaySettings) -> None:
    """analytics.js sends text/plain bodies carrying the writeKey to /v1/t, /v1/p, ... (no preflight)."""
    headers = {"Content-Type": "text/plain"}
    track = {**TRACK, "type": "track", "writeKey": "key-a", "messageId": "ajs-next-abc"}
    assert redis_client.post("/v1/t", content=orjson.dumps(track), headers=headers).status_code == 200
    page = {**PAGE, "type": "page", "writeKey": "key-a"}
    assert redis_client.post("/v1/p", content=orjson.dumps(page), headers=headers).status_code == 200
    batch = {**BATCH, "writeKey": "key-a"}
    assert redis_client.post("/v1/b", content=orjson.dumps(batch), headers=headers).status_code == 200
    types = [e["type"] for e in _stored(redis_server.url, redis_gateway_settings.redis_queue_key)]
    assert types == ["Item Purchased", "page", "identify", "Song Played", "identify", "Song Played"]
