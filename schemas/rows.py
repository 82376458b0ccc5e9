"""Arrow rows back to the wire format: the inverse of parsing wire messages into ``schemas.arrow`` tables.

Used wherever stored rows must become messages again (a replay from the archive,
rows ClickHouse rejected going to the dead-letter topic): every field of
``FIELDS`` in order, a field the rows lack (a file older than an optional field)
as null, timestamps as the wire's ISO 8601 text with milliseconds and a Z.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import arrow_schema
from schemas.fields import FIELDS, Field, Kind


def wire_events(rows: pa.Table, fields: tuple[Field, ...] = FIELDS) -> list[dict[str, Any]]:
    """Rows as wire-format envelopes (dicts), one C-level pass per column."""
    schema = arrow_schema(fields)
    columns = []
    for f in fields:
        if f.name in rows.column_names:
            column = rows.column(f.name)
        else:
            column = pa.nulls(rows.num_rows, schema.field(f.name).type)
        if f.kind is Kind.TIMESTAMP:
            # %S of a millisecond timestamp carries the fraction: 2026-11-21T03:55:10.123Z.
            column = pc.strftime(column.cast(pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        columns.append(column)
    events: list[dict[str, Any]] = pa.Table.from_arrays(columns, names=[f.name for f in fields]).to_pylist()
    return events


def wire_values(rows: pa.Table, fields: tuple[Field, ...] = FIELDS) -> list[bytes]:
    """Rows as the wire messages' bytes."""
    return [orjson.dumps(event) for event in wire_events(rows, fields)]
