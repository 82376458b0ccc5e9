"""Arrow rows back to wire messages: the exact inverse of parsing, and nulls for fields a file predates."""

from __future__ import annotations

import orjson

from schemas.arrow import parse_ndjson
from schemas.envelope import Enrichment, EventValidator
from schemas.rows import wire_events, wire_values


def _wire(n: int) -> list[bytes]:
    validator = EventValidator()
    enrichment = Enrichment(source_id="s", received_at="2026-11-21T03:55:10.123Z", ip="10.0.0.1")
    return [validator.encode({"type": "t", "user_id": f"u{i}", "occurred_at": 1_700_000_000_000 + i,
                              "properties": {"i": i, "big": 2**70}}, enrichment)[1] for i in range(n)]


def test_parsed_rows_become_the_same_messages() -> None:
    values = _wire(50)
    table = parse_ndjson(b"\n".join(values))
    assert wire_values(table) == values  # byte for byte, timestamps with milliseconds and a Z


def test_a_field_the_rows_lack_is_null() -> None:
    table = parse_ndjson(b"\n".join(_wire(3))).drop_columns(["occurred_at"])
    assert [event["occurred_at"] for event in wire_events(table)] == [None, None, None]
    assert isinstance(orjson.loads(wire_values(table)[0])["received_at"], str)


