"""Tagged events from the gateway land in the Parquet archive with their violations, readable beside older files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from starlette.testclient import TestClient

from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import LocalStore
from consumers.runtime import ConsumerLoop
from gateway.app import create_app
from schemas.arrow import arrow_schema, parse_ndjson
from schemas.envelope import Enrichment, EventValidator
from tests.consumers.archiver.helpers import archiver_env, read_archive, settings
from tests.consumers.runtime.events import create_topic
from tests.consumers.runtime.loops import running, wait_for
from tests.gateway.helpers import AUTH_A, event, kafka_settings
from tests.plans.samples import plan, write
from tests.providers import Service, unique_name


def test_tagged_events_are_archived_with_their_violations(kafka: Service, topic: str, tmp_path: Path) -> None:
    plans, archive = tmp_path / "plans", tmp_path / "archive"
    plans.mkdir()
    write(plans, "source_a.yaml", plan(mode="tag"))
    with TestClient(create_app(kafka_settings(kafka.url, topic, gateway_tracking_plans=str(plans)))) as gateway:
        answer = gateway.post("/v1/events", headers=AUTH_A, json=[
            event(type="order_completed", properties={"order_id": "o-1", "revenue": 1}),
            event(type="order_completed", properties={"order_id": "o-2"})])
    assert answer.json() == {"accepted": 2, "rejected": []}
    dlq = unique_name("dlq")
    create_topic(kafka.url, dlq, 1)
    env = archiver_env(kafka.url, topic, dlq, str(archive), unique_name("g"))
    loop = ConsumerLoop(settings(env), ParquetSink(LocalStore(archive)), env["ARCHIVER_GROUP"], [topic])
    with running(loop):
        wait_for(lambda: loop.stats.rows == 2)
    table = read_archive(archive)
    assert sorted(table.column("violations").to_pylist(), key=str) == [
        None, ["/properties/revenue: expected a value (required), got nothing"]]
    # A file written before the field existed reads beside them, as null violations.
    wire = EventValidator().normalize(event(), Enrichment("source_a", "2026-12-04T10:00:00.000Z"))
    old = parse_ndjson(orjson.dumps(wire)).drop_columns(["violations"])
    pq.write_table(old, archive / "before-violations.parquet")
    together = ds.dataset(str(archive), format="parquet", schema=arrow_schema()).to_table()
    assert together.num_rows == 3 and together.column("violations").to_pylist().count(None) == 2
