"""Run an analyst's SQL against ClickHouse and format the result (table, csv, json)."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import ipaddress
import json
import uuid
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError


class QueryError(RuntimeError):
    """The query could not run; the message says why and what to do."""


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": [[plain(v) for v in row] for row in self.rows]}


def plain(value: Any) -> Any:
    """A JSON-friendly form of a ClickHouse value (UUIDs, timestamps, decimals as text)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, uuid.UUID, decimal.Decimal, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def run_local(client: Client, sql: str, database: str | None = None) -> Result:
    """Run on a client; ``database`` resolves unqualified names (the caller serialises use of the client)."""
    previous = client.database
    client.database = database or previous
    try:
        result = client.query(sql)
        columns = list(result.column_names) or _columns_without_rows(client, sql)
    finally:
        client.database = previous
    return Result(columns, [list(row) for row in result.result_rows])


def _columns_without_rows(client: Client, sql: str) -> list[str]:
    """The columns of a query that returned no rows; [] for a statement with no result set.

    Over HTTP, ClickHouse answers a query without rows with an empty body, names and all (the Native
    format sends no block), so an empty SELECT looks like a CREATE. DESCRIBE of the query as a
    subquery gives its columns without running it; for a statement that is not a query it is a syntax
    error. The newline keeps a trailing -- comment from swallowing the parenthesis.
    """
    statement = sql.strip().rstrip(";").rstrip()
    try:
        described = client.query(f"DESCRIBE TABLE ({statement}\n)")
    except ClickHouseError:
        return []
    return [str(row[0]) for row in described.result_rows]


def render(result: Result, fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(result.columns, (plain(v) for v in row))) for row in result.rows],
                          indent=2, default=str)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([[_text(v) for v in row] for row in result.rows])
        return out.getvalue().rstrip("\n")
    return render_table(result)


def render_table(result: Result) -> str:
    if not result.columns:  # a statement with no result set (CREATE, INSERT, ...): no empty box
        return "OK (no result set)"
    cells = [[_text(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(result.columns)]
    numeric = [all(_is_number(row[i]) for row in result.rows) and bool(result.rows)
               for i in range(len(result.columns))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(values, widths, numeric)) + " |"

    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    body = [line(row) for row in cells]
    footer = f"{len(cells)} row{'s' if len(cells) != 1 else ''}"
    return "\n".join([rule, line(result.columns), rule, *body, rule, footer])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _text(value: Any) -> str:
    value = plain(value)
    if value is None:
        return "NULL"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)
