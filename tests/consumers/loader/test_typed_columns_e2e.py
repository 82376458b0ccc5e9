"""Gateway (tag mode) -> Kafka -> `evpipe loader` with TRACKING_PLANS -> an analyst's sum(p_revenue)."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from gateway.app import create_app
from tests.consumers.loader.harness import LoaderProcess, Target, loader_env
from tests.consumers.runtime.events import create_topic
from tests.gateway.helpers import AUTH_A, event, kafka_settings
from tests.plans.samples import plan, write
from tests.providers import Service, unique_name


def test_the_loader_process_adds_typed_columns_and_the_typed_sum_matches(
        kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    plans.mkdir()
    write(plans, "source_a.yaml", plan(mode="tag"))
    create_topic(kafka.url, f"{topic}.dlq", 1)
    revenues = [19.99, 5, 0.01, 120]
    with TestClient(create_app(kafka_settings(kafka.url, topic, gateway_tracking_plans=str(plans)))) as gateway:
        answer = gateway.post("/v1/events", headers=AUTH_A, json=[
            *(event(type="order_completed", properties={"order_id": f"o-{i}", "revenue": r})
              for i, r in enumerate(revenues)),
            event(type="order_completed", properties={"order_id": "o-text", "revenue": "12"})])  # tagged
    assert answer.json() == {"accepted": 5, "rejected": []}
    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    env = loader_env(kafka, topic, unique_name("g"), target, TRACKING_PLANS=str(plans))
    loader = LoaderProcess(env, tmp_path / "loader.log").start()
    try:
        assert target.wait_for(5, 120, [loader]) == (5, 5), loader.tail()
    finally:
        assert loader.terminate() == 0, loader.tail()
    [row] = target.query("SELECT sum(p_revenue) AS typed, sumIf(JSONExtractFloat(properties, 'revenue'), "
                         "empty(violations)) AS extracted, count(p_revenue) AS counted, "
                         "countIf(p_revenue IS NULL AND notEmpty(violations)) AS tagged_null FROM events")
    assert abs(row["typed"] - sum(revenues)) < 1e-9 and abs(row["extracted"] - sum(revenues)) < 1e-9
    assert (row["counted"], row["tagged_null"]) == (4, 1)
