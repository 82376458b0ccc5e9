"""The `violations` field (tracking plans, tag mode) through the archive schema and back to the wire."""

from __future__ import annotations

import io

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.arrow import arrow_schema, parse_ndjson
from schemas.envelope import Enrichment, EventValidator
from schemas.rows import wire_events

ENRICH = Enrichment(source_id="web", received_at="2026-12-04T10:00:00.000Z")
TAGGED = ["/properties/plan: expected string, got integer"]


def test_violations_survive_parquet_and_the_way_back_to_the_wire() -> None:
    validator = EventValidator()
    clean = validator.normalize({"type": "signup", "user_id": "u1"}, ENRICH)
    tagged = validator.normalize({"type": "signup", "user_id": "u2"}, ENRICH) | {"violations": TAGGED}
    assert clean["violations"] is None  # every wire event carries the field
    table = parse_ndjson(b"\n".join(orjson.dumps(e) for e in (clean, tagged)))
    assert table.schema.field("violations").type == pa.list_(pa.string())
    sink = io.BytesIO()
    pq.write_table(table, sink)
    archived = pq.read_table(io.BytesIO(sink.getvalue()))
    assert archived.schema == arrow_schema()
    assert [e["violations"] for e in wire_events(archived)] == [None, TAGGED]


def test_an_archive_file_from_before_the_field_reads_as_null_violations() -> None:
    validator = EventValidator()
    old = validator.normalize({"type": "signup", "user_id": "u1"}, ENRICH)
    del old["violations"]
    table = parse_ndjson(orjson.dumps(old)).drop_columns(["violations"])
    assert [e["violations"] for e in wire_events(table)] == [None]
