"""Native API on the Kafka backend: every body form, gzip, mixed batches, enrichment, keys and ordering."""

from __future__ import annotations

import gzip
import uuid

import orjson
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.helpers import AUTH_A, event, read_topic, values
from tests.providers import Service


def test_single_event_is_produced_with_enrichment(kafka: Service, kafka_client: TestClient,
                                                  kafka_gateway_settings: GatewaySettings) -> None:
    given_id = str(uuid.uuid4())
    response = kafka_client.post("/v1/events", headers={**AUTH_A, "User-Agent": "ua-test/1"}, json=event(
        event_id=given_id, user_id="u-1", occurred_at=1_700_000_000_000, properties={"plan": "pro"},
        context={"locale": "de"}))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "rejected": []}
    [message] = read_topic(kafka.url, kafka_gateway_settings.kafka_topic, 1)
    value = orjson.loads(message.value())
    assert message.key() == b"source_a:u-1"
    assert value["event_id"] == given_id
    assert value["source_id"] == "source_a"
    assert value["occurred_at"] == "2023-11-14T22:13:20.000Z"
    assert orjson.loads(value["properties"]) == {"plan": "pro"}
    assert orjson.loads(value["context"]) == {"locale": "de", "ip": "203.0.113.7", "user_agent": "ua-test/1"}
    assert value["received_at"].endswith("Z")


def test_gateway_assigns_uuid7_when_absent(kafka: Service, kafka_client: TestClient,
                                           kafka_gateway_settings: GatewaySettings) -> None:
    assert kafka_client.post("/v1/events", headers=AUTH_A, json=event()).status_code == 200
    [value] = values(read_topic(kafka.url, kafka_gateway_settings.kafka_topic, 1))
    assert uuid.UUID(value["event_id"]).version == 7


def test_every_body_form_and_gzip(kafka: Service, kafka_client: TestClient,
                                  kafka_gateway_settings: GatewaySettings) -> None:
    def ev(n: int) -> dict[str, object]:
        return event(type=f"form_{n}")

    ndjson = b"\n".join(orjson.dumps(ev(n)) for n in (4, 5)) + b"\n"
    forms = [
        ({"content": orjson.dumps(ev(1))}, 1),
        ({"content": orjson.dumps([ev(2), ev(3)])}, 2),
        ({"content": orjson.dumps({"batch": [ev(6)]})}, 1),
        ({"content": ndjson, "headers": {"Content-Type": "application/x-ndjson"}}, 2),
        ({"content": gzip.compress(orjson.dumps([ev(7), ev(8)])), "headers": {"Content-Encoding": "gzip"}}, 2),
        ({"content": gzip.compress(ndjson.replace(b"form_4", b"form_9").replace(b"form_5", b"form_10")),
          "headers": {"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}}, 2),
    ]
    for kwargs, accepted in forms:
        headers = {**AUTH_A, "Content-Type": "application/json", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        response = kafka_client.post("/v1/events", headers=headers, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == accepted
    types = sorted(v["type"] for v in values(read_topic(kafka.url, kafka_gateway_settings.kafka_topic, 10)))
    assert types == sorted(f"form_{n}" for n in range(1, 11))


def test_mixed_batch_lists_exact_indices_and_keeps_invalid_events(
        kafka: Service, kafka_client: TestClient, kafka_gateway_settings: GatewaySettings) -> None:
    batch = [event(), {"type": "no_identity"}, event(source_id="forged"), "not an object",
             event(type=""), event(occurred_at="yesterday"), event(extra=1), event()]
    response = kafka_client.post("/v1/events", headers=AUTH_A, json=batch)
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "rejected": [
        {"index": 1, "error": "one of user_id or anonymous_id is required"},
        {"index": 2, "error": "source_id: set by the gateway, not by clients"},
        {"index": 3, "error": "event must be a JSON object"},
        {"index": 4, "error": "type: must not be empty"},
        {"index": 5, "error": "occurred_at: not an ISO 8601 timestamp: 'yesterday'"},
        {"index": 6, "error": "unknown field 'extra'"},
    ]}
    invalid = read_topic(kafka.url, kafka_gateway_settings.kafka_invalid_topic, 6)
    assert len(invalid) == 6
    by_payload = {orjson.dumps(orjson.loads(m.value())["payload"]): m for m in invalid}
    message = by_payload[orjson.dumps("not an object")]
    assert dict(message.headers())["error"] == b"event must be a JSON object"
    document = orjson.loads(message.value())
    assert document["error"] == "event must be a JSON object"
    assert document["source_id"] == "source_a" and document["received_at"].endswith("Z")
    assert len(read_topic(kafka.url, kafka_gateway_settings.kafka_topic, 2)) == 2


def test_all_invalid_is_400_with_the_list_and_still_kept(
        kafka: Service, kafka_client: TestClient, kafka_gateway_settings: GatewaySettings) -> None:
    body = b'{"type": "a"}\nnot json\n'
    response = kafka_client.post("/v1/events", content=body,
                                 headers={**AUTH_A, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 400
    rejected = response.json()["rejected"]
    assert [r["index"] for r in rejected] == [0, 1]
    assert rejected[1]["error"].startswith("line is not valid JSON")
    invalid = values(read_topic(kafka.url, kafka_gateway_settings.kafka_invalid_topic, 2))
    assert sorted(str(d["payload"]) for d in invalid) == sorted(["{'type': 'a'}", "not json"])


def test_per_user_order_on_one_partition(kafka: Service, topic: str) -> None:
    from tests.gateway.helpers import kafka_settings

    settings = kafka_settings(kafka.url, topic, partitions=6)
    users = [f"user-{n}" for n in range(8)]
    with TestClient(create_app(settings)) as client:
        for seq in range(5):
            batch = [event(user_id=u, properties={"seq": seq}) for u in users]
            assert client.post("/v1/events", headers=AUTH_A, json=batch).status_code == 200
    messages = read_topic(kafka.url, topic, 40)
    assert len(messages) == 40
    partitions: dict[str, set[int]] = {}
    sequences: dict[tuple[str, int], list[int]] = {}
    for m in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        value = orjson.loads(m.value())
        assert m.key() == f"source_a:{value['user_id']}".encode()
        partitions.setdefault(value["user_id"], set()).add(m.partition())
        sequences.setdefault((value["user_id"], m.partition()), []).append(orjson.loads(value["properties"])["seq"])
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1  # keys really spread over partitions
    assert all(seqs == list(range(5)) for seqs in sequences.values())


def test_client_ip_from_trusted_proxy_only(kafka: Service, topic: str) -> None:
    from tests.gateway.helpers import kafka_settings

    settings = kafka_settings(kafka.url, topic, gateway_trusted_proxies="10.0.0.0/8")
    forwarded = {**AUTH_A, "X-Forwarded-For": "198.51.100.9, 10.1.2.3"}
    with TestClient(create_app(settings), client=("10.0.0.5", 1234)) as via_proxy:
        assert via_proxy.post("/v1/events", headers=forwarded, json=event(type="proxied")).status_code == 200
    with TestClient(create_app(settings), client=("192.0.2.1", 1234)) as direct:
        assert direct.post("/v1/events", headers=forwarded, json=event(type="direct")).status_code == 200
    ips = {v["type"]: orjson.loads(v["context"])["ip"] for v in values(read_topic(kafka.url, topic, 2))}
    assert ips == {"proxied": "198.51.100.9", "direct": "192.0.2.1"}


def test_probes_and_metrics(kafka_client: TestClient) -> None:
    assert kafka_client.get("/healthz").status_code == 200
    ready = kafka_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    kafka_client.post("/v1/events", headers=AUTH_A, json=[event(), {"type": "x"}])
    text = kafka_client.get("/metrics").text
    assert 'evpipe_gateway_requests_total{route="/v1/events",status="200"} 1.0' in text
    assert "evpipe_gateway_events_accepted_total 1.0" in text
    assert 'evpipe_gateway_events_rejected_total{reason="one of user_id or anonymous_id is required"} 1.0' in text
    assert "evpipe_gateway_backend_latency_seconds_count 1.0" in text
    assert "evpipe_gateway_inflight_events 0.0" in text
    assert "evpipe_gateway_queued_events 0.0" in text


def test_readyz_fails_when_topic_missing(kafka: Service) -> None:
    settings = GatewaySettings(kafka_bootstrap_servers=kafka.url, kafka_topic=f"missing_{uuid.uuid4().hex[:8]}",
                               gateway_api_keys="k=s")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "missing" in response.json()["reason"]


def test_fatal_producer_error_fails_readiness_and_refuses(kafka_client: TestClient) -> None:
    from confluent_kafka import KafkaError

    backend = kafka_client.app.state.gateway.backend  # type: ignore[attr-defined]
    # What librdkafka's error callback reports when the idempotent producer cannot continue.
    backend._on_error(KafkaError(KafkaError._FATAL, "simulated fatal idempotence error", fatal=True))
    ready = kafka_client.get("/readyz")
    assert ready.status_code == 503 and "fatally" in ready.json()["reason"]
    refused = kafka_client.post("/v1/events", headers=AUTH_A, json=event())
    assert refused.status_code == 503 and "event_ids" not in refused.json()  # nothing produced


def test_huge_rejected_event_is_kept_truncated_and_does_not_fail_the_request(
        kafka: Service, kafka_client: TestClient, kafka_gateway_settings: GatewaySettings) -> None:
    huge = event(properties={"blob": "x" * (2 * 1024 * 1024)})  # over Kafka's 1 MB message default
    response = kafka_client.post("/v1/events", headers=AUTH_A, json=[event(type="small"), huge])
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["index"] == 1
    [kept] = values(read_topic(kafka.url, kafka_gateway_settings.kafka_invalid_topic, 1))
    assert kept["payload_truncated_from"] > 2 * 1024 * 1024
    assert kept["payload"].startswith('{"type":"page_view"') and len(kept["payload"]) == 256 * 1024


def test_whole_body_refusals_are_on_the_invalid_topic_with_their_raw_bytes(
    kafka: Service, kafka_client: TestClient, kafka_gateway_settings: GatewaySettings
) -> None:
    import base64
    import hashlib

    bodies = {
        b'{"type":"t","user_id":"\xff"}': ({}, 400),  # not UTF-8
        b'{"type":"t","properties":{"x":NaN}}': ({}, 400),
        gzip.compress(orjson.dumps(event())) + b"trailing": ({"Content-Encoding": "gzip"}, 400),
        b'{"type":"t"}': ({"Content-Encoding": "br"}, 415),
    }
    for body, (headers, status) in bodies.items():
        response = kafka_client.post("/v1/events", content=body, headers={**AUTH_A, **headers})
        assert response.status_code == status, response.text
    kept = values(read_topic(kafka.url, kafka_gateway_settings.kafka_invalid_topic, len(bodies)))
    assert len(kept) == len(bodies)
    recovered = set()
    for document in kept:
        raw = document["raw"]
        data = base64.b64decode(raw["data"]) if raw["encoding"] == "base64" else raw["data"].encode()
        assert (raw["size"], raw["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert document["whole_body"] is True and document["source_id"] == "source_a"
        recovered.add(data)
    assert recovered == set(bodies)
