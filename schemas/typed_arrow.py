"""A batch's typed columns (``schemas.typed``) computed from its ``properties`` text, for the archive.

Vectorised: the ``properties`` column's text is handed to ``pyarrow.json`` as it lies in memory (one JSON
object after another; no copy per event) with an explicit schema of the planned properties, so the
common batch costs one C++ parse of the properties and no Python per event. When a batch holds a value
of another JSON type than planned (a tag-mode event, a source without a plan), that parse refuses the
batch; it is then halved until the slices holding such values are small, and those take the per-event
path, which applies the same rule: the value of the planned JSON type, else null.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pj

from schemas.typed import Scalar, TypedColumn

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
PER_EVENT_ROWS = 512  # below this many rows a refused slice is read event by event
_ARROW_SCALARS = {s: TypedColumn("", "", s).arrow_type for s in Scalar}


def with_typed_columns(table: pa.Table, columns: Sequence[TypedColumn]) -> pa.Table:
    """``table`` with one nullable column per typed column appended (replacing any of the same name).

    Each field carries its property's key as metadata (``property``), so a reader can compute the column
    for an older file that lacks it (consumers/archiver/reading.py)."""
    if not columns:
        return table
    values = typed_values(table.column("properties"), columns) if table.num_rows else {
        c.name: pa.array([], c.arrow_type) for c in columns}
    for column in columns:
        if column.name in table.column_names:
            table = table.drop_columns([column.name])
        table = table.append_column(arrow_field(column), values[column.name])
    return table


def arrow_field(column: TypedColumn) -> pa.Field:
    return pa.field(column.name, column.arrow_type, nullable=True, metadata={b"property": column.key.encode()})


def column_of(field: pa.Field) -> TypedColumn | None:
    """The typed column an archive file's field is, from its type and metadata; None for another field."""
    key = (field.metadata or {}).get(b"property")
    scalar = next((s for s, t in _ARROW_SCALARS.items() if t == field.type), None)
    return TypedColumn(field.name, key.decode(), scalar) if key is not None and scalar is not None else None


def typed_values(properties: pa.ChunkedArray, columns: Sequence[TypedColumn]) -> dict[str, pa.Array]:
    """Each typed column's values for these ``properties`` texts, by column name."""
    text = properties.combine_chunks() if properties.num_chunks != 1 else properties.chunk(0)
    return _bisected(text, columns)


def _bisected(text: pa.Array, columns: Sequence[TypedColumn]) -> dict[str, pa.Array]:
    """Vectorised where it can be: a batch refused for a few odd values is halved until the halves that
    hold them are small enough for the per-event path (one odd event in 50,000 costs about two parses)."""
    try:
        return _vectorised(text, columns)
    except (pa.ArrowInvalid, ValueError):  # a value of another type than planned, or a text no object
        if len(text) <= PER_EVENT_ROWS:
            return _per_event(text.to_pylist(), columns)
    middle = len(text) // 2
    left, right = _bisected(text.slice(0, middle), columns), _bisected(text.slice(middle), columns)
    return {name: pa.concat_arrays([left[name], right[name]]) for name in left}


def _vectorised(text: pa.Array, columns: Sequence[TypedColumn]) -> dict[str, pa.Array]:
    if text.null_count:
        raise ValueError("null properties")
    _, offsets_buffer, data = text.buffers()
    width = pa.int64() if pa.types.is_large_string(text.type) else pa.int32()
    offsets = pa.Array.from_buffers(width, len(text) + 1, [None, offsets_buffer], offset=text.offset)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    body = data[start:end] if data is not None else pa.py_buffer(b"")
    # A key per distinct property; the JSON reader fills a column per key, then each typed column takes its own.
    keys = {c.key: c for c in columns}
    schema = pa.schema([pa.field(key, _read_type(c.scalar)) for key, c in keys.items()])
    parsed = pj.read_json(io.BytesIO(body), read_options=pj.ReadOptions(block_size=max(1 << 20, len(body) + 1),
                                                                       use_threads=False),
                          parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    if parsed.num_rows != len(text):
        raise ValueError(f"{parsed.num_rows} objects in {len(text)} properties")
    return {c.name: parsed.column(c.key).combine_chunks().cast(c.arrow_type) for c in columns}


def _read_type(scalar: Scalar) -> pa.DataType:
    # Integers read as int64 (pyarrow refuses 2.5 or 2**70 there: the per-event path then nulls them);
    # numbers as float64, which takes integers too, as a number column should.
    return {Scalar.STRING: pa.string(), Scalar.NUMBER: pa.float64(), Scalar.INTEGER: pa.int64(),
            Scalar.BOOLEAN: pa.bool_()}[scalar]


def _per_event(texts: list[str | None], columns: Sequence[TypedColumn]) -> dict[str, pa.Array]:
    objects = [_object(text) for text in texts]
    return {c.name: pa.array([_typed(obj.get(c.key), c.scalar) for obj in objects], c.arrow_type)
            for c in columns}


def _object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)  # reads an integer past 64 bits as a float, as the vectorised path does
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)  # what orjson refuses (1e400) may still be JSON to the gateway
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _typed(value: Any, scalar: Scalar) -> Any:
    """``value`` if its JSON type is ``scalar``, else None (the rule of schemas.typed)."""
    if isinstance(value, bool):
        return value if scalar is Scalar.BOOLEAN else None
    if scalar is Scalar.STRING:
        return value if isinstance(value, str) else None
    if scalar is Scalar.INTEGER:
        return value if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX else None
    if scalar is Scalar.NUMBER and isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None
