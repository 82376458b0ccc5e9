"""The gateway bench's floor app: HTTP in, the gateway's durable produce out, nothing between."""

from __future__ import annotations

from starlette.testclient import TestClient

from bench.gateway_floor import BATCH, FloorApp
from tests.gateway.helpers import kafka_settings, read_topic
from tests.providers import Service


def test_each_post_produces_the_prepared_batch_before_answering(kafka: Service, topic: str) -> None:
    app = FloorApp(kafka_settings(kafka.url, topic))
    with TestClient(app) as client:
        for _ in range(2):
            answer = client.post("/v1/events", content=b"ignored: the floor does not parse bodies")
            assert answer.status_code == 200
            assert answer.json() == {"accepted": BATCH, "rejected": []}
    messages = read_topic(kafka.url, topic, 2 * BATCH)
    assert len(messages) == 2 * BATCH
    assert sorted(m.value() for m in messages) == sorted([r.value for r in app.records] * 2)
