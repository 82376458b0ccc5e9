"""Postgres column definitions and DDL derived from ``FIELDS``."""

from __future__ import annotations

from schemas.fields import FIELDS, Field, Kind

_POSTGRES_TYPES: dict[Kind, str] = {
    Kind.UUID: "uuid",
    Kind.TEXT: "text",
    Kind.TIMESTAMP: "timestamptz",
    Kind.JSON_OBJECT: "jsonb",
    Kind.SMALLINT: "smallint",
    Kind.TEXT_LIST: "jsonb",  # a JSON array: one value per row, where text[] rows would not unnest side by side
}


def postgres_type(f: Field) -> str:
    return _POSTGRES_TYPES[f.kind]


def postgres_columns(fields: tuple[Field, ...] = FIELDS) -> list[tuple[str, str, bool]]:
    """(name, type, not_null) per field."""
    return [(f.name, postgres_type(f), f.required) for f in fields]


def postgres_create_table(
    table: str, fields: tuple[Field, ...] = FIELDS, partition_by: str | None = "RANGE (received_at)"
) -> str:
    """CREATE TABLE IF NOT EXISTS for the events table, declaratively partitioned by default."""
    cols = ",\n    ".join(
        f"{name} {ptype}{' NOT NULL' if not_null else ''}" for name, ptype, not_null in postgres_columns(fields)
    )
    suffix = f" PARTITION BY {partition_by}" if partition_by else ""
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {cols}\n){suffix}"


def postgres_add_column(table: str, f: Field) -> str:
    return f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {f.name} {postgres_type(f)}"
