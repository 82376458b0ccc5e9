"""A user's integration test: written against `evpipe.testing` alone (its fixture and types), as docs/testing.md shows.

It imports nothing else of evpipe's: events go in through the gateway (native and Segment-style routes),
and come back from ClickHouse and the Parquet archive.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from evpipe.testing import Pipeline


def _segment_post(pipeline: Pipeline, route: str, body: dict[str, object]) -> None:
    """A Segment SDK's request: the write key as the Basic-auth user name."""
    response = httpx.post(f"{pipeline.gateway_url}/v1/{route}", json=body, auth=(pipeline.api_key, ""), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True


@pytest.mark.slow
def test_native_and_segment_events_are_loaded_and_archived(evpipe_pipeline: Pipeline) -> None:
    native = evpipe_pipeline.send([
        {"type": "signup", "user_id": "u1", "properties": {"plan": "pro"}},
        {"type": "page_view", "anonymous_id": "a1", "properties": {"path": "/pricing"}},
    ])
    track_id, identify_id, batch_id = (str(uuid.uuid4()) for _ in range(3))
    _segment_post(evpipe_pipeline, "track", {"messageId": track_id, "userId": "u1", "event": "Order Completed",
                                             "properties": {"total": 42.5}})
    _segment_post(evpipe_pipeline, "batch", {"batch": [
        {"type": "identify", "messageId": identify_id, "userId": "u1", "traits": {"email": "u1@example.com"}},
        {"type": "page", "messageId": batch_id, "anonymousId": "a1", "name": "Pricing"},
    ]})
    ids = [*native, track_id, identify_id, batch_id]
    assert len(native) == 2

    evpipe_pipeline.wait_loaded(ids, timeout=90)
    quoted = ",".join(f"'{i}'" for i in ids)
    rows = evpipe_pipeline.query(f"SELECT type, source_id, user_id, properties FROM events "
                                 f"WHERE event_id IN ({quoted}) ORDER BY type")
    assert [row[0] for row in rows] == ["Order Completed", "identify", "page", "page_view", "signup"]
    assert {row[1] for row in rows} == {"test"}  # the fixture's key is the source `test`
    by_type = {row[0]: row for row in rows}
    assert json.loads(by_type["Order Completed"][3]) == {"total": 42.5}
    assert json.loads(by_type["identify"][3])["traits"] == {"email": "u1@example.com"}

    evpipe_pipeline.wait_archived(ids, timeout=90)
    archive = evpipe_pipeline.archive_rows()
    archived = {r["event_id"]: r for r in archive.to_pylist() if r["event_id"] in set(ids)}
    assert len(archived) == len(ids)  # each once
    assert archived[native[0]]["type"] == "signup" and archived[native[0]]["topic"] == "events"


@pytest.mark.slow
def test_a_rejected_event_is_reported(evpipe_pipeline: Pipeline) -> None:
    from evpipe.testing import PipelineError

    with pytest.raises(PipelineError, match="rejected 1 of 2"):
        evpipe_pipeline.send([{"type": "ok", "user_id": "u2"}, {"type": "no identity"}])
    accepted = evpipe_pipeline.send([{"type": "ok", "user_id": "u3"}, {"type": "no identity"}], allow_rejected=True)
    assert len(accepted) == 1
    evpipe_pipeline.wait_loaded(accepted)
    assert evpipe_pipeline.query(f"SELECT user_id FROM events WHERE event_id = '{accepted[0]}'") == [("u3",)]
