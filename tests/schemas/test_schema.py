"""The four schema outputs derive from one definition and agree field by field."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from schemas.arrow import arrow_schema, parse_ndjson
from schemas.clickhouse import clickhouse_add_column, clickhouse_columns, clickhouse_create_table
from schemas.envelope import Enrichment, EventValidator, InvalidEvent, kafka_key
from schemas.fields import FIELDS, Field, Kind, Origin
from schemas.postgres import postgres_add_column, postgres_columns, postgres_create_table

ENRICH = Enrichment(source_id="src", received_at="2026-11-21T10:00:00.000Z", ip="10.0.0.1", user_agent="ua/1")

# One expected mapping per logical kind: the test fails if any backend drifts.
EXPECTED = {
    Kind.UUID: (pa.string(), "UUID", "uuid"),
    Kind.TEXT: (pa.string(), "String", "text"),
    Kind.TIMESTAMP: (pa.timestamp("ms", tz="UTC"), "DateTime64(3, 'UTC')", "timestamptz"),
    Kind.JSON_OBJECT: (pa.string(), "String", "jsonb"),
    Kind.SMALLINT: (pa.int16(), "UInt16", "smallint"),
    Kind.TEXT_LIST: (pa.list_(pa.string()), "Array(String)", "jsonb"),
}


def _strip_ch(ctype: str) -> tuple[str, bool]:
    nullable = ctype.startswith("Nullable(")
    inner = ctype[len("Nullable("):-1] if nullable else ctype
    if inner.startswith("LowCardinality("):
        inner = inner[len("LowCardinality("):-1]
    return inner, nullable


def assert_outputs_agree(fields: tuple[Field, ...]) -> None:
    arrow = arrow_schema(fields)
    ch = clickhouse_columns(fields)
    pg = postgres_columns(fields)
    names = [f.name for f in fields]
    assert arrow.names == names
    assert [c[0] for c in ch] == names
    assert [c[0] for c in pg] == names
    for f, af, (_, ctype), (_, ptype, not_null) in zip(fields, arrow, ch, pg):
        arrow_type, ch_type, pg_type = EXPECTED[f.kind]
        assert af.type == arrow_type, f.name
        assert af.nullable == (not f.required), f.name
        inner, nullable = _strip_ch(ctype)
        # ClickHouse has no Nullable(Array(...)): an optional list is an array, empty when absent
        assert inner == ch_type and nullable == (not f.required and f.kind is not Kind.TEXT_LIST), f.name
        assert ptype == pg_type and not_null == f.required, f.name
    # The validator emits exactly these fields, in this order, and the Arrow
    # reader parses its output with the derived schema.
    validator = EventValidator(fields)
    _, value, event = validator.encode({"type": "t", "user_id": "u"}, ENRICH)
    assert list(event) == names
    table = parse_ndjson(value, fields)
    assert table.schema == arrow and table.num_rows == 1


def test_outputs_agree_field_by_field() -> None:
    assert_outputs_agree(FIELDS)


def test_adding_an_optional_field_flows_to_all_four() -> None:
    new = Field("session_id", Kind.TEXT, False, Origin.CLIENT, "Client session id.", max_length=100)
    evolved = FIELDS + (new,)
    assert_outputs_agree(evolved)
    assert "session_id" in arrow_schema(evolved).names
    assert "`session_id` Nullable(String)" in clickhouse_create_table("events", evolved)
    assert re.search(r"\bsession_id text\b", postgres_create_table("events", evolved))
    assert "ADD COLUMN IF NOT EXISTS `session_id`" in clickhouse_add_column("events", new)
    assert "ADD COLUMN IF NOT EXISTS session_id text" in postgres_add_column("events", new)
    event = EventValidator(evolved).normalize({"type": "t", "anonymous_id": "a", "session_id": "s1"}, ENRICH)
    assert event["session_id"] == "s1"
    with pytest.raises(InvalidEvent, match="unknown field 'session_id'"):
        EventValidator(FIELDS).normalize({"type": "t", "anonymous_id": "a", "session_id": "s1"}, ENRICH)


def test_old_archive_data_reads_with_the_new_schema(tmp_path: Path) -> None:
    """Additive evolution: a file written before a field existed reads under the new schema."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    new = Field("session_id", Kind.TEXT, False, Origin.CLIENT, "Client session id.")
    evolved = FIELDS + (new,)
    old_value = EventValidator(FIELDS).encode({"type": "t", "user_id": "u"}, ENRICH)[1]
    new_value = EventValidator(evolved).encode({"type": "t", "user_id": "u", "session_id": "s"}, ENRICH)[1]
    old = parse_ndjson(old_value, FIELDS)
    fresh = parse_ndjson(new_value, evolved)
    sink_old, sink_new = io.BytesIO(), io.BytesIO()
    pq.write_table(old, sink_old)
    pq.write_table(fresh, sink_new)
    directory = tmp_path / "archive"
    directory.mkdir()
    (directory / "old.parquet").write_bytes(sink_old.getvalue())
    (directory / "new.parquet").write_bytes(sink_new.getvalue())
    dataset = ds.dataset(str(directory), format="parquet", schema=arrow_schema(evolved))
    rows = sorted(dataset.to_table().to_pylist(), key=lambda r: r["session_id"] is not None)
    assert [r["session_id"] for r in rows] == [None, "s"]


def test_validator_enriches_and_encodes() -> None:
    validator = EventValidator()
    key, value, event = validator.encode(
        {"type": "signup", "user_id": "u1", "properties": {"plan": "pro"}, "occurred_at": "2026-11-21T12:00:00+02:00",
         "context": {"library": "js", "ip": "1.1.1.1"}},
        ENRICH,
    )
    assert key == b"src:u1"
    decoded = orjson.loads(value)
    assert decoded == event
    assert decoded["occurred_at"] == "2026-11-21T10:00:00.000Z"
    assert decoded["received_at"] == ENRICH.received_at and decoded["source_id"] == "src"
    assert orjson.loads(decoded["properties"]) == {"plan": "pro"}
    # The gateway's view of the client IP wins over a client-claimed one.
    assert orjson.loads(decoded["context"]) == {"library": "js", "ip": "10.0.0.1", "user_agent": "ua/1"}
    assert len(decoded["event_id"]) == 36 and decoded["event_id"][14] == "7"  # UUIDv7 assigned


def test_client_event_id_is_kept_canonical() -> None:
    event = EventValidator().normalize(
        {"type": "t", "anonymous_id": "a", "event_id": "0193A5B0-0000-4000-8000-000000000001"}, ENRICH)
    assert event["event_id"] == "0193a5b0-0000-4000-8000-000000000001"
    assert kafka_key(event) == b"src:a"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([], "event must be a JSON object"),
        ({"user_id": "u"}, "type: required"),
        ({"type": "", "user_id": "u"}, "type: must not be empty"),
        ({"type": "x" * 201, "user_id": "u"}, "type: longer than 200"),
        ({"type": 5, "user_id": "u"}, "type: expected a string"),
        ({"type": "t"}, "one of user_id or anonymous_id is required"),
        ({"type": "t", "user_id": "u", "event_id": "nope"}, "event_id: not a UUID"),
        ({"type": "t", "user_id": "u", "occurred_at": "yesterday"}, "occurred_at: not an ISO 8601"),
        ({"type": "t", "user_id": "u", "occurred_at": True}, "occurred_at: expected"),
        ({"type": "t", "user_id": "u", "properties": [1]}, "properties: expected a JSON object"),
        ({"type": "t", "user_id": "u", "received_at": "2026-01-01"}, "received_at: set by the gateway"),
        ({"type": "t", "user_id": "u", "bogus": 1}, "unknown field 'bogus'"),
    ],
)
def test_validator_rejects_with_reason(raw: object, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        EventValidator().encode(raw, ENRICH)


def test_event_size_limit() -> None:
    validator = EventValidator(max_event_bytes=1024)
    with pytest.raises(InvalidEvent, match="over the 1024-byte limit"):
        validator.encode({"type": "t", "user_id": "u", "properties": {"p": "x" * 2000}}, ENRICH)


def test_fields_are_well_formed() -> None:
    names = [f.name for f in FIELDS]
    assert len(names) == len(set(names))
    for f in FIELDS:
        assert dataclasses.is_dataclass(f) and f.doc


def test_per_request_template_follows_the_enrichment_and_never_shares_per_event_values() -> None:
    """The validator caches what a request's events share; a new request must not see the last one's values."""
    validator = EventValidator()
    other = Enrichment(source_id="other", received_at="2026-11-21T11:00:00.000Z", ip=None, user_agent=None)
    first = [validator.normalize({"type": "t", "user_id": "u"}, ENRICH) for _ in range(3)]
    second = validator.normalize({"type": "t", "user_id": "u"}, other)
    again = validator.normalize({"type": "t", "anonymous_id": "a", "context": {"k": 1}}, ENRICH)
    assert len({e["event_id"] for e in [*first, second, again]}) == 5  # a fresh UUIDv7 per event
    assert {e["source_id"] for e in first} == {"src"} and second["source_id"] == "other"
    assert second["received_at"] == "2026-11-21T11:00:00.000Z" and orjson.loads(second["context"]) == {}
    assert again["received_at"] == ENRICH.received_at and again["user_id"] is None
    assert orjson.loads(again["context"]) == {"k": 1, "ip": "10.0.0.1", "user_agent": "ua/1"}
    assert first[0]["user_id"] == "u" and first[0]["anonymous_id"] is None
