"""Test helpers: wire-format events, Batch objects, Kafka producing, and ClickHouse counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pyarrow as pa

from consumers.runtime.sink import Batch
from schemas.arrow import parse_ndjson
from schemas.envelope import Enrichment, EventValidator, format_timestamp

BASE = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
_VALIDATOR = EventValidator()


def event(
    i: int, type_: str = "page_view", user: str | None = None, received: dt.datetime | None = None,
    event_id: str | None = None, source: str = "src",
) -> dict[str, Any]:
    """One wire-format envelope (a dict); ``event_id`` may be any string (even an invalid one)."""
    enrichment = Enrichment(source_id=source, received_at=format_timestamp(received or BASE + dt.timedelta(
        milliseconds=i)), ip="10.0.0.1")
    envelope = _VALIDATOR.normalize({"type": type_, "user_id": user or f"u{i % 97}", "properties": {"i": i}},
                                    enrichment)
    if event_id is not None:
        envelope["event_id"] = event_id
    return envelope


def table(events: Iterable[dict[str, Any]]) -> pa.Table:
    return parse_ndjson(b"\n".join(orjson.dumps(e) for e in events))


def batch(events: list[dict[str, Any]], topic: str = "events", partition: int = 0, first: int = 0) -> Batch:
    return Batch(topic, partition, first, first + len(events) - 1, table(events), 0)


def messages(events: Iterable[dict[str, Any]]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) Kafka messages for envelopes, keyed like the gateway does."""
    from schemas.envelope import kafka_key

    for e in events:
        yield kafka_key(e), orjson.dumps(e)


def counts(client: Any, database: str) -> tuple[int, int]:
    """(count(), uniqExact(event_id)) of the events table, without FINAL."""
    row = client.query(f"SELECT count(), uniqExact(event_id) FROM `{database}`.events").result_rows[0]
    return int(row[0]), int(row[1])
