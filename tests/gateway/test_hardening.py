"""The front door holds: bodies read whole or refused, refusals kept with their raw bytes, numbers exact.

Runs the in-process app on the Redis backend and reads back what the backend stored.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.budget import Hold, KeyBudgets, MemoryBudget
from gateway.errors import BodyError
from gateway.failures import FailureLog
from gateway.settings import GatewaySettings
from tests.gateway.helpers import AUTH_A, event

GZIP = {**AUTH_A, "Content-Encoding": "gzip"}
NDJSON = {**AUTH_A, "Content-Type": "application/x-ndjson"}


@pytest.fixture
def store(redis_gateway_settings: GatewaySettings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_gateway_settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def small(redis_gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    settings = redis_gateway_settings.model_copy(update={
        "gateway_max_body_bytes": 64 * 1024, "gateway_max_decompressed_bytes": 128 * 1024,
        "gateway_max_event_bytes": 1024, "gateway_max_batch_events": 5, "gateway_max_kept_body_bytes": 4096,
    })
    with TestClient(create_app(settings)) as client:
        yield client


def _stored(store: redis.Redis, settings: GatewaySettings) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in store.lrange(settings.redis_queue_key, 0, -1)]


def _invalid(store: redis.Redis, settings: GatewaySettings) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in store.lrange(f"{settings.redis_queue_key}:invalid", 0, -1)]


def _raw_bytes(kept: dict[str, Any]) -> bytes:
    raw = kept["raw"]
    data = raw["data"]
    return base64.b64decode(data) if raw["encoding"] == "base64" else data.encode("utf-8")


# -- bodies are read whole or refused ------------------------------------------------------------------

def test_every_gzip_member_is_read(redis_client: TestClient, store: redis.Redis,
                                   redis_gateway_settings: GatewaySettings) -> None:
    """`cat a.gz b.gz` is legal gzip (RFC 1952): both members' events are accepted, none ignored."""
    first = gzip.compress(orjson.dumps(event(user_id="u")) + b"\n")
    second = gzip.compress(orjson.dumps(event(user_id="v")) + b"\n")
    response = redis_client.post("/v1/events", content=first + second,
                                 headers={**GZIP, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    assert sorted(e["user_id"] for e in _stored(store, redis_gateway_settings)) == ["u", "v"]


def test_many_small_members_in_one_chunk_and_split_across_chunks(redis_client: TestClient) -> None:
    members = b"".join(gzip.compress(orjson.dumps(event(user_id=f"u{i}")) + b"\n") for i in range(50))

    def dribble() -> Iterator[bytes]:
        for at in range(0, len(members), 7):  # member boundaries fall inside chunks
            yield members[at:at + 7]

    for content in (members, dribble()):
        response = redis_client.post("/v1/events", content=content,
                                     headers={**GZIP, "Content-Type": "application/x-ndjson"})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 50


@pytest.mark.parametrize("tail", [b"garbage after the stream", b"\x00" * 8, b"\n"])
def test_data_after_the_gzip_stream_is_400(redis_client: TestClient, tail: bytes) -> None:
    body = gzip.compress(orjson.dumps(event())) + tail
    response = redis_client.post("/v1/events", content=body, headers=GZIP)
    assert response.status_code == 400, response.text
    assert "gzip" in response.json()["error"]


def test_truncated_second_member_is_400(redis_client: TestClient) -> None:
    second = gzip.compress(orjson.dumps(event(user_id="v")))
    body = gzip.compress(orjson.dumps([event()])) + second[:-6]
    response = redis_client.post("/v1/events", content=body, headers=GZIP)
    assert response.status_code == 400
    assert "truncated" in response.json()["error"]


def test_decompressed_cap_applies_across_members(small: TestClient) -> None:
    member = gzip.compress(b" " * (100 * 1024))
    response = small.post("/v1/events", content=member + member + gzip.compress(b"[]"), headers=GZIP)
    assert response.status_code == 413
    assert "GATEWAY_MAX_DECOMPRESSED_BYTES" in response.json()["error"]


# -- whole-body refusals of an authenticated source are kept --------------------------------------------

WHOLE_BODY_REFUSALS = {
    "lone surrogate": (b'{"type":"t","user_id":"u","properties":{"s":"\\ud800"}}', {}, 400),
    "invalid utf-8": (b'{"type":"t","user_id":"\xff\xfe"}', {}, 400),
    "overlong utf-8": (b'{"type":"t","user_id":"\xc0\xaf"}', {}, 400),
    "byte-order mark": (b'\xef\xbb\xbf{"type":"t","user_id":"u"}', {}, 400),
    "NaN": (b'{"type":"t","user_id":"u","properties":{"x":NaN}}', {}, 400),
    "Infinity": (b'{"type":"t","user_id":"u","properties":{"x":-Infinity}}', {}, 400),
    "too deep": (b'{"type":"t","properties":' + b"[" * 5000 + b"]" * 5000 + b"}", {}, 400),
    "event over the limit": (orjson.dumps(event(properties={"pad": "x" * 2000})), {}, 413),
    "too many events": (orjson.dumps([event() for _ in range(6)]), {}, 413),
    "body over the limit": (b"[" + b" " * (70 * 1024) + b"]", {}, 413),
    "gzip bomb": (gzip.compress(b"[" + b" " * (1024 * 1024) + b"]"), {"Content-Encoding": "gzip"}, 413),
    "not gzip": (b"plain text", {"Content-Encoding": "gzip"}, 400),
    "unknown encoding": (b'{"type":"t"}', {"Content-Encoding": "br"}, 415),
    "unknown batch field": (b'{"batch":[{"type":"t","user_id":"u"}],"extra":1}', {}, 400),
}


@pytest.mark.parametrize("name", list(WHOLE_BODY_REFUSALS))
def test_whole_body_refusal_is_kept_with_its_raw_bytes(name: str, small: TestClient, store: redis.Redis,
                                                       redis_gateway_settings: GatewaySettings) -> None:
    body, headers, status = WHOLE_BODY_REFUSALS[name]
    response = small.post("/v1/events", content=body, headers={**AUTH_A, **headers})
    assert response.status_code == status, response.text
    kept = _invalid(store, redis_gateway_settings)
    assert len(kept) == 1, kept
    document = kept[0]
    assert document["source_id"] == "source_a"
    assert document["error"] == response.json()["error"].removesuffix(" (GATEWAY_MAX_EVENT_BYTES)")
    if "raw" not in document:  # a single event refused for its size is kept as the parsed event
        assert name == "event over the limit"
        assert document["payload"]["properties"]["pad"] == "x" * 2000
        return
    raw = document["raw"]
    assert _raw_bytes(document) == body[:4096]  # the first bytes exactly as sent, whatever they are
    if raw["complete"]:
        assert raw["size"] == len(body)
        assert raw["sha256"] == hashlib.sha256(body).hexdigest()
    else:  # refused before the end (over a limit): size and digest cover what arrived
        assert raw["size"] <= len(body)
        assert name in ("body over the limit", "gzip bomb")


def test_unauthenticated_garbage_is_counted_not_stored(small: TestClient, store: redis.Redis,
                                                       redis_gateway_settings: GatewaySettings) -> None:
    for body in (b"{not json", b'{"type":"t","writeKey":"wrong"}', b"\xff" * 100):
        assert small.post("/v1/events", content=body).status_code in (400, 401)
    assert small.post("/v1/events", content=b"{}", headers={"X-Api-Key": "guess"}).status_code == 401
    assert _invalid(store, redis_gateway_settings) == []
    metrics = small.get("/metrics").text
    assert 'evpipe_gateway_unauthenticated_refusals_total{status="400"} 2.0' in metrics
    assert 'evpipe_gateway_unauthenticated_refusals_total{status="401"} 2.0' in metrics


def test_ndjson_line_with_invalid_utf8_keeps_its_bytes(redis_client: TestClient, store: redis.Redis,
                                                       redis_gateway_settings: GatewaySettings) -> None:
    bad = b'{"type":"t","user_id":"caf\xe9"}'
    body = orjson.dumps(event()) + b"\n" + bad + b"\n"
    response = redis_client.post("/v1/events", content=body, headers=NDJSON)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    [kept] = _invalid(store, redis_gateway_settings)
    assert kept["payload"] is None
    assert kept["raw"]["encoding"] == "base64"
    assert _raw_bytes(kept) == bad


# -- numbers keep their value ----------------------------------------------------------------------------

EXACT_NUMBERS = ["18446744073709551616", "1180591620717411303424", "-9223372036854775809",
                 "12345678901234567890123", "1e308", "4.9e-324", "4.9e-325", "0.1", "1e400", "10.50",
                 "0.10000000000000001", "-0", "18446744073709551615", "-9223372036854775808"]


@pytest.mark.parametrize("ndjson", [False, True])
def test_numbers_reach_the_wire_as_sent(ndjson: bool, redis_client: TestClient, store: redis.Redis,
                                        redis_gateway_settings: GatewaySettings) -> None:
    properties = ",".join(f'"n{i}":{text}' for i, text in enumerate(EXACT_NUMBERS))
    nested = ",".join(f'[{text}]' for text in EXACT_NUMBERS)
    body = f'{{"type":"t","user_id":"u","properties":{{{properties},"list":[{nested}]}}}}'.encode()
    headers = NDJSON if ndjson else AUTH_A
    assert redis_client.post("/v1/events", content=body, headers=headers).status_code == 200
    [stored] = _stored(store, redis_gateway_settings)
    # The one respelling: the integer -0 is the integer 0.
    expected = properties.replace(":-0,", ":0,"), nested.replace("[-0]", "[0]")
    assert stored["properties"] == f"{{{expected[0]},\"list\":[{expected[1]}]}}"


def test_float_epoch_timestamp_and_numeric_segment_ids(redis_client: TestClient, store: redis.Redis,
                                                       redis_gateway_settings: GatewaySettings) -> None:
    native = b'{"type":"t","user_id":"u","occurred_at":1732000000123.0}'
    assert redis_client.post("/v1/events", content=native, headers=AUTH_A).status_code == 200
    segment = b'{"type":"track","event":"e","userId":1180591620717411303424,"anonymousId":2.50}'
    assert redis_client.post("/v1/track", content=segment, headers=AUTH_A).status_code == 200
    first, second = _stored(store, redis_gateway_settings)
    assert first["occurred_at"] == "2024-11-19T07:06:40.123Z"
    assert (second["user_id"], second["anonymous_id"]) == ("1180591620717411303424", "2.50")


def test_duplicate_keys_last_one_wins(redis_client: TestClient, store: redis.Redis,
                                      redis_gateway_settings: GatewaySettings) -> None:
    body = b'{"type":"a","type":"b","user_id":"u","properties":{"k":1,"k":2}}'
    assert redis_client.post("/v1/events", content=body, headers=AUTH_A).status_code == 200
    [stored] = _stored(store, redis_gateway_settings)
    assert (stored["type"], stored["properties"]) == ("b", '{"k":2}')


# -- budgets and the aggregate failure log (units) ----------------------------------------------------

def test_a_hold_charges_every_budget_or_none() -> None:
    shared = MemoryBudget(100, "GATEWAY_MAX_INFLIGHT_BYTES")
    keys = KeyBudgets(60)
    first = Hold((shared, keys.for_key("a")))
    first.charge(50)
    with pytest.raises(BodyError) as refused:
        first.charge(20)  # over the key's 60 though the gateway has room
    assert refused.value.status == 429
    assert "GATEWAY_MAX_INFLIGHT_BYTES_PER_KEY" in refused.value.message
    assert shared.used == 50  # nothing was charged by the refused step
    other = Hold((shared, keys.for_key("b")))
    other.charge(50)  # another key still gets its share
    with pytest.raises(BodyError) as full:
        other.charge(10)
    assert full.value.status == 503
    first.release()
    other.release()
    assert shared.used == 0
    keys.forget_idle(keys.for_key("a"), "a")
    assert len(keys) == 1  # "b" stays until forgotten; idle keys do not pile up


def test_failure_log_aggregates_per_minute_with_bounded_addresses(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    failures = FailureLog(window_s=60, max_addresses=3, top=2, clock=lambda: now[0])
    for i in range(3000):
        failures.record("401 unknown API key", f"10.0.0.{i % 10}")
    assert failures.pending() == 3000
    with caplog.at_level("WARNING", logger="evpipe.gateway.auth"):
        now[0] = 61.0
        failures.record("401 unknown API key", "10.0.0.1")  # the next minute: the last one is logged
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "3000 requests in the last 61s from 4 addresses" in lines[0]
    assert "other addresses x2100" in lines[0]
    assert failures.pending() == 1
