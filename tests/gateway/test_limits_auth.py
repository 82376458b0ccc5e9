"""Limits (413), auth (401), rate limit (429), CORS, and the gzip bomb, on the Redis backend."""

from __future__ import annotations

import base64
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.helpers import AUTH_A, event
from tests.providers import Service


def _llen(url: str, key: str) -> int:
    return int(redis.Redis.from_url(url).llen(key))


@pytest.fixture
def small_limits(redis_gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    settings = redis_gateway_settings.model_copy(update={
        "gateway_max_body_bytes": 4096, "gateway_max_decompressed_bytes": 8192,
        "gateway_max_event_bytes": 1024, "gateway_max_batch_events": 5,
    })
    with TestClient(create_app(settings)) as client:
        yield client


def test_compressed_body_limit(small_limits: TestClient) -> None:
    body = orjson.dumps([event(properties={"pad": "x" * 900}) for _ in range(5)])
    response = small_limits.post("/v1/events", content=body, headers=AUTH_A)
    assert response.status_code == 413
    assert "GATEWAY_MAX_BODY_BYTES" in response.json()["error"]


def test_streamed_body_without_content_length_is_cut_at_the_limit(small_limits: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(100):
            yield orjson.dumps(event()) + b","
        yield b"{}]"

    response = small_limits.post("/v1/events", content=chunks(), headers=AUTH_A)
    assert response.status_code == 413
    assert "4096 bytes limit" in response.json()["error"]


def test_decompressed_limit(small_limits: TestClient) -> None:
    body = gzip.compress(orjson.dumps([event(properties={"pad": "y" * 900}) for _ in range(5)]) + b" " * 9000)
    assert len(body) < 4096
    response = small_limits.post("/v1/events", content=body, headers={**AUTH_A, "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "GATEWAY_MAX_DECOMPRESSED_BYTES" in response.json()["error"]


def test_event_limit_single_is_413_and_in_batch_is_a_rejection(small_limits: TestClient) -> None:
    big = event(properties={"pad": "z" * 1100})
    single = small_limits.post("/v1/events", json=big, headers=AUTH_A)
    assert single.status_code == 413
    assert "1024-byte limit" in single.json()["error"]
    batch = small_limits.post("/v1/events", json=[event(), big], headers=AUTH_A)
    assert batch.status_code == 200
    assert batch.json()["rejected"][0]["index"] == 1
    assert "1024-byte limit" in batch.json()["rejected"][0]["error"]


def test_batch_limit(small_limits: TestClient) -> None:
    response = small_limits.post("/v1/events", json=[event()] * 6, headers=AUTH_A)
    assert response.status_code == 413
    assert "5-event batch limit" in response.json()["error"]
    ndjson = b"\n".join(orjson.dumps(event()) for _ in range(6))
    response = small_limits.post("/v1/events", content=ndjson,
                                 headers={**AUTH_A, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 413


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """1 GiB of zeros, gzipped (about 1 MiB), built in a stream so the test itself stays small."""
    path: Path = tmp_path_factory.mktemp("bomb") / "bomb.gz"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(16 * 1024 * 1024)
    with path.open("wb") as out:
        for _ in range(64):
            out.write(compressor.compress(zeros))
        out.write(compressor.flush())
    return path.read_bytes()


@pytest.mark.slow
def test_gzip_bomb_is_cut_off_with_bounded_memory(redis_gateway_settings: GatewaySettings,
                                                  gzip_bomb: bytes) -> None:
    assert len(gzip_bomb) < 5 * 1024 * 1024  # under the compressed limit: only inflating catches it
    with TestClient(create_app(redis_gateway_settings)) as client:
        tracemalloc.start()
        try:
            response = client.post("/v1/events", content=gzip_bomb, headers={**AUTH_A, "Content-Encoding": "gzip"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 413
    assert "20 MiB limit" in response.json()["error"]
    # The inflated 1 GiB never exists: peak Python allocation stays near the 20 MiB cap.
    assert peak < 80 * 1024 * 1024, peak


def test_bad_gzip_and_unknown_encoding(redis_client: TestClient) -> None:
    bad = redis_client.post("/v1/events", content=b"not gzip", headers={**AUTH_A, "Content-Encoding": "gzip"})
    assert bad.status_code == 400
    truncated = gzip.compress(orjson.dumps(event()))[:-10]
    assert redis_client.post("/v1/events", content=truncated,
                             headers={**AUTH_A, "Content-Encoding": "gzip"}).status_code == 400
    br = redis_client.post("/v1/events", content=b"{}", headers={**AUTH_A, "Content-Encoding": "br"})
    assert br.status_code == 415


def test_auth_methods(redis_server: Service, redis_client: TestClient,
                      redis_gateway_settings: GatewaySettings) -> None:
    basic = base64.b64encode(b"key-b:").decode()
    accepted = [
        redis_client.post("/v1/events", json=event(), headers={"Authorization": "Bearer key-a"}),
        redis_client.post("/v1/events", json=event(), headers={"X-Api-Key": "key-b"}),
        redis_client.post("/v1/events", json=event(), headers={"Authorization": f"Basic {basic}"}),
        redis_client.post("/v1/events", json={**event(), "write_key": "key-a"}),
        redis_client.post("/v1/events", json={"write_key": "key-b", "batch": [event()]}),
    ]
    assert [r.status_code for r in accepted] == [200] * 5
    refused = [
        redis_client.post("/v1/events", json=event()),
        redis_client.post("/v1/events", json=event(), headers={"Authorization": "Bearer nope"}),
        redis_client.post("/v1/events", json=event(), headers={"X-Api-Key": "key-a "}),
        redis_client.post("/v1/events", json=event(), headers={"Authorization": "Basic !!!"}),
        redis_client.post("/v1/events", json={**event(), "write_key": "wrong"}),
        redis_client.post("/v1/events", json=[event()]),
    ]
    assert [r.status_code for r in refused] == [401] * 6
    stored = [orjson.loads(v) for v in redis.Redis.from_url(redis_server.url).lrange(
        redis_gateway_settings.redis_queue_key, 0, -1)]
    assert sorted(v["source_id"] for v in stored) == ["source_a", "source_a", "source_b", "source_b", "source_b"]


def test_keys_file(redis_gateway_settings: GatewaySettings, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# production keys\nfile-key = from_file\n")
    settings = redis_gateway_settings.model_copy(update={"gateway_api_keys_file": keys})
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json=event(), headers={"X-Api-Key": "file-key"}).status_code == 200
        assert client.post("/v1/events", json=event(), headers={"X-Api-Key": "key-a"}).status_code == 200


def test_rate_limit_429_with_retry_after(redis_server: Service, redis_gateway_settings: GatewaySettings) -> None:
    settings = redis_gateway_settings.model_copy(update={
        "gateway_rate_limit_events_per_s": 1.0, "gateway_rate_limit_burst": 3})
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json=[event()] * 3, headers=AUTH_A).status_code == 200
        limited = client.post("/v1/events", json=event(), headers=AUTH_A)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        # Another key has its own bucket.
        assert client.post("/v1/events", json=event(), headers={"X-Api-Key": "key-b"}).status_code == 200
    assert _llen(redis_server.url, settings.redis_queue_key) == 4


def test_cors_preflight_and_simple_request(redis_gateway_settings: GatewaySettings) -> None:
    settings = redis_gateway_settings.model_copy(update={"gateway_cors_origins": "https://shop.example"})
    with TestClient(create_app(settings)) as client:
        preflight = client.options("/v1/events", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        other = client.options("/v1/events", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert other.status_code == 400
        simple = client.post("/v1/events", json={**event(), "write_key": "key-a"},
                             headers={"Origin": "https://shop.example"})
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == "https://shop.example"


def test_memory_budget_for_bodies_in_flight(redis_gateway_settings: GatewaySettings) -> None:
    settings = redis_gateway_settings.model_copy(update={"gateway_max_inflight_bytes": 2000})
    with TestClient(create_app(settings)) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        small = client.post("/v1/events", json=event(), headers=AUTH_A)
        assert small.status_code == 200
        big = client.post("/v1/events", json=[event(properties={"pad": "p" * 500})] * 5, headers=AUTH_A)
        assert big.status_code == 503
        assert big.headers["Retry-After"] == "1"
        assert "GATEWAY_MAX_INFLIGHT_BYTES" in big.json()["error"]
        assert gateway.budget.used == 0  # every request released what it held
        assert client.post("/v1/events", json=event(), headers=AUTH_A).status_code == 200
