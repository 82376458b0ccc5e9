"""Typed columns: a planned scalar property of ``properties`` as a column of its own (``p_<property>``).

Analysts sum ``p_revenue`` instead of ``JSONExtractFloat(properties, 'revenue')``. The columns are
derived from the tracking plans (``evpipe.plans.columns``); this module says what one column is in
each sink: its name, its ClickHouse type and MATERIALIZED expression, its Arrow type, and how a batch's
``properties`` text becomes its values (``schemas.typed_arrow``).

One rule everywhere: a row's value is the property's value when its JSON type is the planned one, else
NULL (absent, null, or another type: ``"12"`` is not a number here, although ClickHouse's JSONExtract
would read it as 12). Integers are JSON integers within Int64; ``5.0`` is not one. So ClickHouse and
the archive agree on every row, whatever a tag-mode event or a source without a plan sent.
"""

from __future__ import annotations

import enum
import re
import zlib
from dataclasses import dataclass

import pyarrow as pa

PREFIX = "p_"
MAX_NAME = 100  # ClickHouse and Parquet take longer names; analysts should not have to type them


class Scalar(enum.Enum):
    """A JSON Schema scalar type that gets a typed column."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"


_CLICKHOUSE: dict[Scalar, str] = {
    Scalar.STRING: "String", Scalar.NUMBER: "Float64", Scalar.INTEGER: "Int64", Scalar.BOOLEAN: "Bool",
}
_ARROW: dict[Scalar, pa.DataType] = {
    Scalar.STRING: pa.string(), Scalar.NUMBER: pa.float64(), Scalar.INTEGER: pa.int64(), Scalar.BOOLEAN: pa.bool_(),
}
# The JSONType() values a property may have for the column to hold it (see the module docstring).
_JSON_TYPES: dict[Scalar, str] = {
    Scalar.STRING: "'String'", Scalar.NUMBER: "'Int64', 'UInt64', 'Double'",
    Scalar.INTEGER: "'Int64', 'UInt64'", Scalar.BOOLEAN: "'Bool'",
}
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class TypedColumn:
    name: str  # p_<sanitized property>
    key: str  # the property's key in properties, as the plan names it
    scalar: Scalar

    @property
    def clickhouse_type(self) -> str:
        # Nullable: NULL says "absent or of another type", which a default of 0 or '' would hide in a sum or count.
        return f"Nullable({_CLICKHOUSE[self.scalar]})"

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.scalar]

    def clickhouse_expression(self, source: str = "properties") -> str:
        key = clickhouse_string(self.key)
        return (f"if(JSONType({source}, {key}) IN ({_JSON_TYPES[self.scalar]}), "
                f"JSONExtract({source}, {key}, '{self.clickhouse_type}'), NULL)")

    def clickhouse_definition(self) -> str:
        """The column as ADD COLUMN declares it: computed by ClickHouse at insert, from ``properties``."""
        return f"`{self.name}` {self.clickhouse_type} MATERIALIZED {self.clickhouse_expression()}"


def column_name(prop: str) -> str:
    """``p_`` and the property name with every character outside [A-Za-z0-9_] as ``_``.

    A name that had to change gets ``_`` and 8 hex digits of its CRC-32 as well when longer than
    MAX_NAME, so a cut name stays distinct; two properties that still meet on one name are a conflict
    the caller resolves (``evpipe.plans.columns``)."""
    name = PREFIX + _NOT_IDENTIFIER.sub("_", prop)
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 9]}_{zlib.crc32(prop.encode()):08x}"
    return name


def is_typed_column(name: str) -> bool:
    return name.startswith(PREFIX)


def clickhouse_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def clickhouse_add_typed_column(table: str, column: TypedColumn, on_cluster: str = "") -> str:
    return f"ALTER TABLE {table}{on_cluster} ADD COLUMN IF NOT EXISTS {column.clickhouse_definition()}"
