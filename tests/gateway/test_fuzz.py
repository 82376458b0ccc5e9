"""Thousands of malformed bodies and headers: every answer is a 4xx (or a 200 for a body that happens
to be valid), never a 5xx, and the app keeps serving afterwards."""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.gateway.helpers import AUTH_A, event

ROUTES = ["/v1/events", "/v1/batch", "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group",
          "/v1/alias"]
ALLOWED = {200, 400, 401, 413, 415, 429}
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["type", "user_id", "anonymous_id", "event_id", "occurred_at", "properties", "context",
                         "batch", "write_key", "event", "userId", "messageId", "timestamp", "sentAt", "traits",
                         "source_id", "x"]) | st.text(max_size=8), children, max_size=6),
    max_leaves=20,
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def _check(client: TestClient, response_status: int) -> None:
    assert response_status in ALLOWED, response_status


@FUZZ
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=300),
       content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/plain", "", "a/b;c=d"]),
       encoding=st.sampled_from([None, "gzip", "identity", "deflate", "GZIP", ""]))
def test_random_bytes(redis_client: TestClient, route: str, body: bytes, content_type: str,
                      encoding: str | None) -> None:
    headers = {**AUTH_A, "Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    _check(redis_client, redis_client.post(route, content=body, headers=headers).status_code)


@FUZZ
@given(route=st.sampled_from(ROUTES), document=json_values, compress=st.booleans(), ndjson=st.booleans())
def test_random_json_documents(redis_client: TestClient, route: str, document: object, compress: bool,
                               ndjson: bool) -> None:
    if ndjson and isinstance(document, list):
        body = b"\n".join(orjson.dumps(item) for item in document)
    else:
        body = orjson.dumps(document)
    headers = {**AUTH_A, "Content-Type": "application/x-ndjson" if ndjson else "application/json"}
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    _check(redis_client, redis_client.post(route, content=body, headers=headers).status_code)


@FUZZ
@given(route=st.sampled_from(ROUTES), authorization=header_text, api_key=header_text,
       basic=st.binary(max_size=30), forwarded=header_text, agent=header_text)
def test_random_headers(redis_client: TestClient, route: str, authorization: str, api_key: str, basic: bytes,
                        forwarded: str, agent: str) -> None:
    body = orjson.dumps(event())
    for headers in (
        {"Authorization": authorization, "X-Forwarded-For": forwarded, "User-Agent": agent},
        {"X-Api-Key": api_key},
        {"Authorization": "Basic " + base64.b64encode(basic).decode()},
        {**AUTH_A, "X-Forwarded-For": forwarded, "User-Agent": agent},
    ):
        _check(redis_client, redis_client.post(route, content=body, headers=headers).status_code)


def test_non_json_numbers_are_400(redis_client: TestClient) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"0x10"):
        body = b'{"type": "a", "anonymous_id": "b", "properties": {"n": ' + literal + b"}}"
        assert redis_client.post("/v1/events", content=body, headers=AUTH_A).status_code == 400


@pytest.mark.parametrize("route", ROUTES)
def test_still_serving_after_garbage(redis_client: TestClient, route: str) -> None:
    redis_client.post(route, content=b"\x1f\x8b\x08garbage", headers={**AUTH_A, "Content-Encoding": "gzip"})
    redis_client.post(route, content=b"[" * 5000 + b"]" * 5000, headers=AUTH_A)
    good = (event() if route == "/v1/events" else
            {"batch": [{"type": "track", "event": "e", "userId": "u"}]} if route == "/v1/batch" else
            {"event": "e", "userId": "u", "groupId": "g", "previousId": "p"})
    response = redis_client.post(route, json=good, headers=AUTH_A)
    assert response.status_code == 200, response.text
