"""Reading archive files together whatever columns each has: old files, and files with typed columns.

A file written before a field existed reads with nulls there. A file written before a typed ``p_``
column existed gets the column computed from its ``properties`` (each file's typed fields carry their
property's key as metadata), as ClickHouse computes a MATERIALIZED column for rows stored before it was
added: so a sum over ``p_revenue`` covers every file, old or new.

A typed column that two files hold with different types (a plan changed a property's type between
them) takes the type of the first file read, as ClickHouse keeps a column's first type, with the same
rule for the other files' values: integers go into a float column, anything else is null (a string
"12" is not a number, a float is not an integer). ``properties`` keeps every value in any case.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.typed import TypedColumn
from schemas.typed_arrow import arrow_field, column_of, with_typed_columns


def read_together(files: Iterable[pq.ParquetFile | str]) -> pa.Table:
    """Every row of the files, in order, in one table with their columns unified."""
    tables = [(f if isinstance(f, pq.ParquetFile) else pq.ParquetFile(f)).read() for f in files]
    return concat_unified(tables)


def concat_unified(tables: list[pa.Table]) -> pa.Table:
    """The tables one after another: fields as nulls and typed columns computed where a table lacks them."""
    if not tables:
        return pa.table({})
    typed: dict[str, TypedColumn] = {}
    for table in tables:
        for field in table.schema:
            column = column_of(field)
            if column is not None:
                typed.setdefault(column.name, column)
    return pa.concat_tables([_aligned(table, typed) for table in tables], promote_options="default")


def _aligned(table: pa.Table, typed: dict[str, TypedColumn]) -> pa.Table:
    missing = [column for name, column in typed.items() if name not in table.column_names]
    if missing and "properties" in table.column_names:
        table = with_typed_columns(table, missing)
    for index, field in enumerate(table.schema):
        column = typed.get(field.name)
        if column is not None and field.type != column.arrow_type:
            table = table.set_column(index, arrow_field(column), _in_type(table.column(index), column.arrow_type))
    return table


def _in_type(values: pa.ChunkedArray, wanted: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_integer(values.type) and pa.types.is_floating(wanted):
        return values.cast(wanted)
    return pa.chunked_array([pa.nulls(len(values), wanted)])
