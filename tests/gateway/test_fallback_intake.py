"""The gateway with its fallback: Kafka down -> 2xx once the store holds the events; Kafka and the store
down -> 503, never a 2xx; readiness; the background drain once Kafka is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.fallback.local import LocalFallbackStore
from gateway.fallback.objects import decode
from gateway.settings import GatewaySettings
from tests.gateway.fallback_fakes import FakeKafka
from tests.gateway.helpers import AUTH_A, KEYS, event


def _settings(uri: str, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(gateway_api_keys=KEYS, gateway_fallback_uri=uri, gateway_deadline_s=0.1,
                           gateway_fallback_timeout_s=0.5, gateway_fallback_drain_interval_s=0.1, **overrides)


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka(down=True)


@pytest.fixture
def client(tmp_path: Path, kafka: FakeKafka) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(str(tmp_path / "fallback")), backend=kafka)) as client:
        yield client


def _stored(root: Path) -> list[Any]:
    store = LocalFallbackStore(root)
    messages = []
    for pending in store.pending():
        claim = store.claim(pending.name, "test", 60)
        assert claim is not None
        messages += decode(store.read(claim) or b"")
        store.release(claim)
    return messages


def _metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_kafka_down_is_answered_2xx_once_the_events_are_stored(client: TestClient, kafka: FakeKafka,
                                                               tmp_path: Path) -> None:
    body = [event(event_id="0f8e7e2c-5b0a-4a36-9a53-3a0c2a1f0001"), {"type": 5}]
    response = client.post("/v1/events", headers=AUTH_A, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    stored = _stored(tmp_path / "fallback")
    # Exactly what would have gone to Kafka: the event on its topic with its key, the rejection on the invalid one.
    assert [(m.topic, m.key) for m in stored] == [("events", b"source_a:anon-1"), ("events.invalid", b"source_a")]
    assert orjson.loads(stored[0].value)["event_id"] == "0f8e7e2c-5b0a-4a36-9a53-3a0c2a1f0001"
    assert stored[1].headers and stored[1].headers[0][0] == "error"
    assert _metric(client, "evpipe_gateway_fallback_events_stored_total") == 2
    assert _metric(client, "evpipe_gateway_events_accepted_total") == 1


def test_events_kafka_acknowledged_before_failing_are_stored_too(client: TestClient, kafka: FakeKafka,
                                                                 tmp_path: Path) -> None:
    kafka.acks_before_down = 2  # Kafka took two of the three, then missed the deadline
    response = client.post("/v1/events", headers=AUTH_A, json=[event(user_id=f"u{n}") for n in range(3)])
    assert response.status_code == 200
    assert len(kafka.produced) == 2 and len(_stored(tmp_path / "fallback")) == 3  # the sinks drop the two copies


def test_the_background_drain_empties_the_store_once_kafka_is_back(client: TestClient, kafka: FakeKafka,
                                                                   tmp_path: Path) -> None:
    for n in range(5):
        assert client.post("/v1/events", headers=AUTH_A, json=[event(user_id=f"u{n}")] * 2).status_code == 200
    time.sleep(0.3)
    assert _metric(client, "evpipe_gateway_fallback_events_pending") == 10
    assert _metric(client, "evpipe_gateway_fallback_oldest_pending_age_seconds") > 0
    kafka.down = False
    deadline = time.monotonic() + 10
    while LocalFallbackStore(tmp_path / "fallback").pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert LocalFallbackStore(tmp_path / "fallback").pending() == []
    assert len(kafka.produced) == 10
    time.sleep(0.3)
    assert _metric(client, "evpipe_gateway_fallback_events_drained_total") == 10
    assert _metric(client, "evpipe_gateway_fallback_events_pending") == 0


def test_kafka_and_the_store_down_is_503_never_2xx(tmp_path: Path, kafka: FakeKafka) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("the store's directory cannot be made under a file")
    with TestClient(create_app(_settings(str(blocker / "fallback")), backend=kafka)) as client:
        response = client.post("/v1/events", headers=AUTH_A, json=[event(), event()])
        assert response.status_code == 503, response.text
        assert "fallback store" in response.json()["error"] and response.headers["Retry-After"]
        assert len(response.json()["event_ids"]) == 2  # Kafka may still deliver them: resend with these ids
        assert _metric(client, "evpipe_gateway_fallback_events_stored_total") == 0
        assert _metric(client, "evpipe_gateway_fallback_write_failures_total") == 1
        assert client.get("/readyz").status_code == 503


def test_a_hung_store_is_503_at_its_timeout(tmp_path: Path, kafka: FakeKafka) -> None:
    class HungStore(LocalFallbackStore):
        def put(self, name: str, data: bytes) -> None:
            time.sleep(1.5)  # past GATEWAY_FALLBACK_TIMEOUT_S (0.5 s): the write may land later, harmlessly

    app = create_app(_settings(""), backend=kafka)
    gateway = app.state.gateway
    from gateway.fallback.service import Fallback

    gateway.fallback = gateway.intake.fallback = Fallback.create(
        gateway.settings, kafka, gateway.metrics.fallback, HungStore(tmp_path / "hung"))
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.post("/v1/events", headers=AUTH_A, json=event())
        assert response.status_code == 503 and time.monotonic() - started < 1.4
        assert "no durable write within 0.5s" in response.json()["error"]


def test_fallback_off_answers_503_as_before(tmp_path: Path, kafka: FakeKafka) -> None:
    with TestClient(create_app(_settings(""), backend=kafka)) as client:
        assert client.app.state.gateway.fallback is None  # type: ignore[attr-defined]
        response = client.post("/v1/events", headers=AUTH_A, json=event())
        assert response.status_code == 503 and "fallback" not in response.json()["error"]
        assert client.get("/readyz").status_code == 503


def test_ready_while_kafka_is_down_as_long_as_the_store_takes_writes(client: TestClient, kafka: FakeKafka) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "fallback": "broker unreachable"}
    kafka.misconfigured_reason = "topic 'events' missing: run `evpipe topics create`"
    time.sleep(0.01)
    refused = client.get("/readyz")
    assert refused.status_code == 503 and "missing" in refused.json()["reason"]  # no fallback makes up for it


def test_rejected_only_requests_keep_their_rejections_in_the_store(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/v1/events", headers=AUTH_A, content=b"not json")
    assert response.status_code == 400
    stored = _stored(tmp_path / "fallback")
    assert [m.topic for m in stored] == ["events.invalid"]
    assert _metric(client, "evpipe_gateway_invalid_store_failures_total") == 0
