"""Run an analyst's SQL against ClickHouse and format the result (table, csv, json).

The embedded engine (chdb) locks its data directory: while a loader runs on
it, no other process can open it. The loader then serves read-only queries
on its admin port and writes that address next to the data directory
(:func:`endpoint_file`), and `evpipe query` sends the SQL there instead.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import ipaddress
import json
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

# Statements the loader's /query endpoint runs. ClickHouse's own `readonly` setting cannot
# be used there: on the embedded engine it is applied to the shared session, and a failed
# statement leaves it set (it then forbids the loader's own inserts).
READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
_COMMENTS = re.compile(r"(--[^\n]*\n|/\*.*?\*/|\s+)*", re.DOTALL)
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


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


def check_read_only(sql: str) -> None:
    """Raise QueryError unless ``sql`` is one reading statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)."""
    body = sql[_COMMENTS.match(sql).end():]  # type: ignore[union-attr]
    first = (body.split(None, 1) or [""])[0].upper().rstrip("(")
    if first not in READ_STATEMENTS:
        raise QueryError(f"read-only endpoint: {first or 'an empty query'} is not allowed "
                         f"(only {', '.join(sorted(READ_STATEMENTS))})")
    if ";" in body.rstrip().rstrip(";") or _OUTFILE.search(body):
        raise QueryError("read-only endpoint: one statement, and no INTO OUTFILE")


def run_local(client: Client, sql: str, database: str | None = None, readonly: bool = False) -> Result:
    """Run on a client; ``database`` resolves unqualified names (the caller serialises use of the client)."""
    if readonly:
        check_read_only(sql)
    previous = client.database
    client.database = database or previous
    try:
        result = client.query(sql)
    finally:
        client.database = previous
    return Result(list(result.column_names), [list(row) for row in result.result_rows])


def run_remote(endpoint: str, sql: str, database: str | None = None, timeout: float = 300.0) -> Result:
    url = f"{endpoint.rstrip('/')}/query" + (f"?database={database}" if database else "")
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise QueryError(exc.read().decode(errors="replace").strip() or str(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise QueryError(f"the loader's query endpoint {endpoint} does not answer ({exc}); "
                         "is the loader still running?") from None
    return Result(body["columns"], body["rows"])


def endpoint_file(data_path: Path) -> Path:
    """Where a loader holding the embedded engine at ``data_path`` publishes its query endpoint."""
    return data_path.with_name(data_path.name + ".query-endpoint")


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
