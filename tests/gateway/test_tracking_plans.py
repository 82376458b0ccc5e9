"""Tracking plans at the gateway (Kafka backend): enforce, tag and unplanned types, native and Segment routes,
exact reasons in the response and on the invalid topic, and reloads that keep the old plan on a bad file."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.app import Gateway, create_app
from gateway.settings import GatewaySettings
from tests.gateway.helpers import AUTH_A, event, kafka_settings, read_topic, values
from tests.plans.samples import ORDER_SCHEMA, plan, write
from tests.providers import Service

AUTH_B = {"Authorization": "Bearer key-b"}
SIGNUP = {"type": "object", "required": ["plan"], "properties": {"plan": {"type": "string"}}}
PLAN_NOTE = "(plan source_a v1, source_a.yaml)"

MISSING = "/properties/revenue: expected a value (required), got nothing"
WRONG_TYPE = "/properties/revenue: expected number, got string"
EXTRA = "/properties/coupon: expected no such property (additionalProperties: false), got string"
UNKNOWN = '/type: expected an event type of the tracking plan, got "refund"'


def order(**properties: Any) -> dict[str, Any]:
    return event(type="order_completed", properties={"order_id": "o-1", "revenue": 42.5, **properties})


def track(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "track", "event": name, "anonymousId": "anon-1", "properties": properties}


@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    write(tmp_path, "source_a.yaml", plan(unplanned="reject", order_completed={"properties": ORDER_SCHEMA},
                                         signup={"properties": SIGNUP, "mode": "tag"}))
    return tmp_path


@pytest.fixture
def settings(kafka: Service, topic: str, plans_dir: Path) -> GatewaySettings:
    return kafka_settings(kafka.url, topic, gateway_tracking_plans=str(plans_dir))


@pytest.fixture
def client(settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def refusal(index: int, *violations: str) -> dict[str, Any]:
    documents = []
    for text in violations:
        pointer, rest = text.split(": expected ", 1)
        expected, got = rest.rsplit(", got ", 1)
        documents.append({"pointer": pointer, "expected": expected, "got": got})
    return {"index": index, "error": f"tracking plan: {'; '.join(violations)} {PLAN_NOTE}", "violations": documents}


BAD_ORDERS = [order(revenue=None) | {"properties": {"order_id": "o-1"}}, order(revenue="42"),
              order(coupon="SAVE"), event(type="refund")]
EXPECTED = [refusal(1, MISSING), refusal(2, WRONG_TYPE), refusal(3, EXTRA), refusal(4, UNKNOWN)]


def test_native_route_enforces_the_plan_with_exact_reasons_kept_on_the_invalid_topic(
        kafka: Service, client: TestClient, settings: GatewaySettings) -> None:
    response = client.post("/v1/events", headers=AUTH_A, json=[order(), *BAD_ORDERS])
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "rejected": EXPECTED}
    [kept] = values(read_topic(kafka.url, settings.kafka_topic, 1))
    assert orjson.loads(kept["properties"]) == {"order_id": "o-1", "revenue": 42.5}
    assert kept["violations"] is None
    invalid = values(read_topic(kafka.url, settings.kafka_invalid_topic, 4))
    by_error = {d["error"]: d for d in invalid}
    assert sorted(by_error) == sorted(e["error"] for e in EXPECTED)
    wrong = by_error[EXPECTED[1]["error"]]
    assert wrong["payload"] == BAD_ORDERS[1] and wrong["source_id"] == "source_a"
    assert wrong["violations"] == EXPECTED[1]["violations"]


def test_segment_route_enforces_the_same_plan(kafka: Service, client: TestClient,
                                              settings: GatewaySettings) -> None:
    batch = [track("order_completed", {"order_id": "o-1", "revenue": 42.5}),
             track("order_completed", {"order_id": "o-1"}),
             track("order_completed", {"order_id": "o-1", "revenue": "42"}),
             track("order_completed", {"order_id": "o-1", "revenue": 1, "coupon": "SAVE"}),
             track("refund", {})]
    response = client.post("/v1/batch", headers=AUTH_A, json={"batch": batch})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "rejected": EXPECTED, "success": True}
    assert len(values(read_topic(kafka.url, settings.kafka_invalid_topic, 4))) == 4
    single = client.post("/v1/track", headers=AUTH_A, json=track("order_completed", {"revenue": -1}))
    assert single.status_code == 400
    assert single.json()["rejected"] == [{
        "index": 0, "error": "tracking plan: /properties/order_id: expected a value (required), got nothing; "
        f"/properties/revenue: expected minimum 0, got -1 {PLAN_NOTE}",
        "violations": [{"pointer": "/properties/order_id", "expected": "a value (required)", "got": "nothing"},
                       {"pointer": "/properties/revenue", "expected": "minimum 0", "got": "-1"}]}]


def test_tag_mode_accepts_with_violations_on_the_wire_event(kafka: Service, client: TestClient,
                                                             settings: GatewaySettings) -> None:
    response = client.post("/v1/events", headers=AUTH_A, json=[
        event(type="signup", properties={"plan": "pro"}), event(type="signup", properties={"plan": 3})])
    assert response.json() == {"accepted": 2, "rejected": []}
    kept = {orjson.loads(v["properties"])["plan"]: v for v in values(read_topic(kafka.url, settings.kafka_topic, 2))}
    assert kept["pro"]["violations"] is None
    assert kept[3]["violations"] == ["/properties/plan: expected string, got integer"]
    segment = client.post("/v1/track", headers=AUTH_A, json=track("signup", {}))
    assert segment.json() == {"accepted": 1, "rejected": [], "success": True}


def test_unplanned_types_allowed_or_tagged_per_source(kafka: Service, client: TestClient, plans_dir: Path,
                                                       settings: GatewaySettings) -> None:
    gateway: Gateway = client.app.gateway  # type: ignore[attr-defined]
    assert client.post("/v1/events", headers=AUTH_B, json=event(type="anything")).json()["accepted"] == 1  # no plan
    write(plans_dir, "source_b.yaml", plan("source_b", unplanned="tag"))
    assert gateway.plans.reload()
    response = client.post("/v1/events", headers=AUTH_B, json=event(type="refund"))
    assert response.json() == {"accepted": 1, "rejected": []}
    tagged = [v for v in values(read_topic(kafka.url, settings.kafka_topic, 2)) if v["type"] == "refund"]
    assert tagged[0]["violations"] == [UNKNOWN]
    write(plans_dir, "source_b.yaml", plan("source_b", unplanned="allow"))
    assert gateway.plans.reload()
    client.post("/v1/events", headers=AUTH_B, json=event(type="refund2"))
    metrics = client.get("/metrics").text
    assert 'evpipe_gateway_plan_violations_total{path="/type",source="source_b",type="(unplanned)"} 1.0' in metrics


def test_a_broken_plan_file_leaves_the_old_plan_in_force(client: TestClient, plans_dir: Path) -> None:
    gateway: Gateway = client.app.gateway  # type: ignore[attr-defined]
    write(plans_dir, "source_a.yaml", "source: source_a\nversion: 2\nevents: {order_completed: {properties: [}")
    assert not gateway.plans.reload()
    assert not gateway.plans.reload()  # the same bad files are refused once, not again every few seconds
    response = client.post("/v1/events", headers=AUTH_A, json=order(revenue="42"))
    assert response.status_code == 400
    assert response.json()["rejected"] == [refusal(0, WRONG_TYPE)]
    metrics = client.get("/metrics").text
    assert "evpipe_gateway_plan_reload_failures_total 1.0" in metrics
    assert "evpipe_gateway_plan_files_refused 1.0" in metrics
    assert 'evpipe_gateway_plan_version{source="source_a"} 1.0' in metrics
    assert 'evpipe_gateway_plan_violations_total{path="/properties/revenue",source="source_a",' \
           'type="order_completed"} 1.0' in metrics
    write(plans_dir, "source_a.yaml", plan(version=2, mode="off"))
    assert gateway.plans.reload()
    assert client.post("/v1/events", headers=AUTH_A, json=order(revenue="42")).status_code == 200
    assert "evpipe_gateway_plan_files_refused 0.0" in client.get("/metrics").text


def test_a_bad_plan_at_start_is_a_configuration_error(kafka: Service, topic: str, tmp_path: Path) -> None:
    write(tmp_path, "web.yaml", {**plan(), "mode": "strict"})
    with pytest.raises(ValueError, match="web.yaml: /mode: expected one of enforce, tag, off"):
        create_app(kafka_settings(kafka.url, topic, gateway_tracking_plans=str(tmp_path)))


def test_the_gateway_rereads_changed_plans_on_its_own(kafka: Service, topic: str, plans_dir: Path) -> None:
    settings = kafka_settings(kafka.url, topic, gateway_tracking_plans=str(plans_dir),
                              gateway_tracking_plans_reload_s=0.1)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", headers=AUTH_A, json=order(revenue="42")).status_code == 400
        write(plans_dir, "source_a.yaml", plan(version=2, mode="off"))
        deadline = time.monotonic() + 10
        while client.get("/metrics").text.count('evpipe_gateway_plan_version{source="source_a"} 2.0') == 0:
            assert time.monotonic() < deadline, "the changed plan was not loaded"
            time.sleep(0.05)
        assert client.post("/v1/events", headers=AUTH_A, json=order(revenue="42")).status_code == 200
        assert "evpipe_gateway_plan_reloads_total 1.0" in client.get("/metrics").text


def test_reloads_under_load_lose_no_request_and_answer_no_5xx(kafka: Service, topic: str, plans_dir: Path) -> None:
    """Four clients send while the plan file is rewritten, good and broken in turn, and reread every 20 ms."""
    settings = kafka_settings(kafka.url, topic, gateway_tracking_plans=str(plans_dir),
                              gateway_tracking_plans_reload_s=0.02, gateway_rate_limit_events_per_s=0)
    statuses: list[int] = []
    accepted: list[int] = []

    def send(client: TestClient) -> None:
        for _ in range(60):
            response = client.post("/v1/events", headers=AUTH_A, json=[order() for _ in range(10)])
            statuses.append(response.status_code)
            accepted.append(response.json().get("accepted", 0))

    with TestClient(create_app(settings)) as client:
        senders = [threading.Thread(target=send, args=(client,)) for _ in range(4)]
        for sender in senders:
            sender.start()
        version = 1
        while any(s.is_alive() for s in senders):
            version += 1
            good = plan(version=version, unplanned="reject", order_completed={"properties": ORDER_SCHEMA})
            write(plans_dir, "source_a.yaml", good if version % 3 else "source: [")
            time.sleep(0.03)
        for sender in senders:
            sender.join()
        metrics = client.get("/metrics").text
    assert statuses == [200] * 240
    assert sum(accepted) == 2400
    assert len(read_topic(kafka.url, topic, 2400, timeout=60)) == 2400
    reloads = re.search(r"^evpipe_gateway_plan_reloads_total (\S+)", metrics, re.MULTILINE)
    refused = re.search(r"^evpipe_gateway_plan_reload_failures_total (\S+)", metrics, re.MULTILINE)
    assert reloads and refused and float(reloads.group(1)) >= 3 and float(refused.group(1)) >= 1
