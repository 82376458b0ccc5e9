"""The tracking-plan `violations` field in ClickHouse: added to an older table, written as an array, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from evpipe.clickhouse import connect
from gateway.app import create_app
from schemas.fields import FIELDS
from tests.consumers.loader.events import batch, event
from tests.consumers.loader.harness import LoaderProcess, Target, loader_env
from tests.consumers.runtime.events import create_topic
from tests.gateway.helpers import AUTH_A, kafka_settings
from tests.gateway.helpers import event as gw_event
from tests.plans.samples import plan, write
from tests.providers import Service, unique_name

TAGGED = ["/properties/plan: expected string, got integer", "/type: expected an event type of the tracking plan"]


@pytest.fixture
def client(clickhouse: Service):  # type: ignore[no-untyped-def]
    return connect(clickhouse.url)


def test_a_table_from_before_violations_gets_the_column_and_tagged_rows_keep_their_list(
        client, ch_database: str) -> None:  # type: ignore[no-untyped-def]
    before = tuple(f for f in FIELDS if f.name != "violations")
    migrate(client, ch_database, before)
    assert migrate(client, ch_database) == ["events add column violations", "create plan_violations_per_hour"]
    sink = ClickHouseSink(client, ch_database, dead_letter=lambda *_args: None)
    tagged, clean = event(1), event(2)
    tagged["violations"] = TAGGED
    b = batch([tagged, clean])
    sink.begin(b)
    sink.write(b)
    rows = dict(client.query(f"SELECT event_id, violations FROM `{ch_database}`.events").result_rows)
    assert {str(k): v for k, v in rows.items()} == {tagged["event_id"]: TAGGED, clean["event_id"]: []}
    kind = client.query("SELECT type FROM system.columns WHERE database = {d:String} AND table = 'events' "
                        "AND name = 'violations'", parameters={"d": ch_database}).result_rows
    assert kind == [("Array(String)",)]


def test_tagged_events_from_the_gateway_land_with_their_violations(
        kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    """Gateway (tag mode) -> Kafka -> `evpipe loader` -> ClickHouse, as an analyst reads it."""
    plans = tmp_path / "plans"
    plans.mkdir()
    write(plans, "source_a.yaml", plan(mode="tag", unplanned="tag"))
    settings = kafka_settings(kafka.url, topic, gateway_tracking_plans=str(plans))
    create_topic(kafka.url, f"{topic}.dlq", 1)
    with TestClient(create_app(settings)) as gateway:
        answer = gateway.post("/v1/events", headers=AUTH_A, json=[
            gw_event(type="order_completed", properties={"order_id": "o-1", "revenue": 1}),
            gw_event(type="order_completed", properties={"order_id": "o-2", "revenue": "1"}),
            gw_event(type="refund")])
    assert answer.json() == {"accepted": 3, "rejected": []}
    target = Target.choose(clickhouse, unique_name("db"), tmp_path)
    loader = LoaderProcess(loader_env(kafka, topic, unique_name("g"), target), tmp_path / "loader.log").start()
    try:
        assert target.wait_for(3, 120, [loader]) == (3, 3), loader.tail()
    finally:
        assert loader.terminate() == 0, loader.tail()
    rows = target.query("SELECT type, JSONExtractString(properties, 'order_id') AS id, violations FROM events "
                        "ORDER BY type, id")
    assert [(r["type"], r["id"], r["violations"]) for r in rows] == [
        ("order_completed", "o-1", []),
        ("order_completed", "o-2", ["/properties/revenue: expected number, got string"]),
        ("refund", "", ['/type: expected an event type of the tracking plan, got "refund"'])]


def test_the_hourly_violations_view_counts_each_violation(client, ch_database: str) -> None:  # type: ignore[no-untyped-def]
    migrate(client, ch_database)
    sink = ClickHouseSink(client, ch_database, dead_letter=lambda *_args: None)
    tagged = [event(i) for i in range(3)]
    for e in tagged:
        e["violations"] = TAGGED[:1]
    tagged[0]["violations"] = TAGGED
    b = batch([*tagged, event(9)])
    sink.begin(b)
    sink.write(b)
    rows = client.query(f"SELECT source_id, type, violation, events FROM `{ch_database}`.plan_violations_per_hour "
                        "ORDER BY violation").result_rows
    assert rows == [("src", "page_view", TAGGED[0], 3), ("src", "page_view", TAGGED[1], 1)]
