"""The Arrow schema the archiver writes to Parquet, derived from ``FIELDS``."""

from __future__ import annotations

import pyarrow as pa

from schemas.fields import FIELDS, Field, Kind

# UUIDs and JSON objects are kept as text: that is what the wire format carries,
# so a batch parses straight into these types with pyarrow.json, and any reader
# of the archive (Spark, DuckDB, ClickHouse) understands plain strings.
_ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.UUID: pa.string(),
    Kind.TEXT: pa.string(),
    Kind.TIMESTAMP: pa.timestamp("ms", tz="UTC"),
    Kind.JSON_OBJECT: pa.string(),
    Kind.SMALLINT: pa.int16(),
    Kind.TEXT_LIST: pa.list_(pa.string()),
}


def arrow_field(f: Field) -> pa.Field:
    return pa.field(f.name, _ARROW_TYPES[f.kind], nullable=not f.required)


def arrow_schema(fields: tuple[Field, ...] = FIELDS) -> pa.Schema:
    return pa.schema([arrow_field(f) for f in fields])


def parse_ndjson(data: bytes, fields: tuple[Field, ...] = FIELDS, block_size: int = 1 << 24) -> pa.Table:
    """Parse newline-delimited wire-format events into a table with the archive schema.

    Vectorised: one call for a whole batch, no Python object per event. Raises
    ``pyarrow.ArrowInvalid`` if any line is not a valid event (the caller then
    isolates the bad lines). Unknown keys (a newer writer's optional fields)
    are ignored.
    """
    import io

    import pyarrow.json as pj

    schema = arrow_schema(fields)
    table = pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(block_size=max(block_size, len(data) + 1), use_threads=False),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    # The JSON reader marks every column nullable; casting restores NOT NULL and
    # fails if a required field is null.
    return table.cast(schema)
