"""ClickHouse column definitions and DDL derived from ``FIELDS``."""

from __future__ import annotations

from schemas.fields import FIELDS, Field, Kind

_CLICKHOUSE_TYPES: dict[Kind, str] = {
    Kind.UUID: "UUID",
    Kind.TEXT: "String",
    Kind.TIMESTAMP: "DateTime64(3, 'UTC')",
    Kind.JSON_OBJECT: "String",  # JSON text; query with JSONExtract*()
    Kind.SMALLINT: "UInt16",
    Kind.TEXT_LIST: "Array(String)",  # ClickHouse has no Nullable(Array): an absent list is []
}


def clickhouse_type(f: Field) -> str:
    base = _CLICKHOUSE_TYPES[f.kind]
    if f.low_cardinality and f.kind is Kind.TEXT:
        base = f"LowCardinality({base})"
    return base if f.required or f.kind is Kind.TEXT_LIST else f"Nullable({base})"


def clickhouse_columns(fields: tuple[Field, ...] = FIELDS) -> list[tuple[str, str]]:
    return [(f.name, clickhouse_type(f)) for f in fields]


def clickhouse_create_table(
    table: str,
    fields: tuple[Field, ...] = FIELDS,
    engine: str = "MergeTree",
    partition_by: str = "toYYYYMM(received_at)",
    order_by: str = "(source_id, type, received_at, event_id)",
    settings: str = "",
    on_cluster: str = "",
) -> str:
    """CREATE TABLE IF NOT EXISTS for the events table (engine and keys chosen by the caller).

    ``on_cluster``: a cluster clause such as ``" ON CLUSTER 'c'"``, spliced after the name.
    """
    columns = ",\n    ".join(f"`{name}` {ctype}" for name, ctype in clickhouse_columns(fields))
    ddl = (
        f"CREATE TABLE IF NOT EXISTS {table}{on_cluster} (\n    {columns}\n)\n"
        f"ENGINE = {engine}\nPARTITION BY {partition_by}\nORDER BY {order_by}"
    )
    return f"{ddl}\nSETTINGS {settings}" if settings else ddl


def clickhouse_add_column(table: str, f: Field, on_cluster: str = "") -> str:
    """Additive migration for one new (optional) field (``on_cluster`` as for the CREATE)."""
    return f"ALTER TABLE {table}{on_cluster} ADD COLUMN IF NOT EXISTS `{f.name}` {clickhouse_type(f)}"
