"""`evpipe query "SQL"`: run an analyst query against the configured ClickHouse."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from evpipe.settings import ClickHouseSettings, describe, load

if TYPE_CHECKING:
    from consumers.loader.query import Result


class QuerySettings(ClickHouseSettings):
    """Where ClickHouse is (the same variables the loader reads)."""


DESCRIPTION = """\
Run SQL against the ClickHouse at CLICKHOUSE_URL (by default `evpipe
clickhouse serve` on 127.0.0.1:8123) and print the result, as any ClickHouse
client would. Unqualified table names resolve in CLICKHOUSE_DATABASE.

examples:
  evpipe query "SELECT type, count() FROM events GROUP BY type ORDER BY 2 DESC"
  evpipe query --format csv "SELECT * FROM events_per_minute LIMIT 10" > rollup.csv"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "query", help="run SQL against ClickHouse and print a table, CSV or JSON",
        description=DESCRIPTION, epilog=describe(QuerySettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sql", help="the SQL to run (quote it); '-' reads it from stdin")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output format (default: table)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from consumers.loader.query import QueryError, render

    settings = load(QuerySettings)
    sql = sys.stdin.read() if args.sql == "-" else args.sql
    try:
        result = execute(settings, sql)
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(result, args.format))
    return 0


def execute(settings: QuerySettings, sql: str) -> Result:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from consumers.loader.query import QueryError, run_local
    from evpipe.clickhouse import connect, redacted

    try:
        client = connect(settings.clickhouse_url, settings.clickhouse_timeout_s)
    except Exception as exc:  # noqa: BLE001 (shown as a one-line error, not a traceback)
        raise QueryError(f"cannot connect to ClickHouse at {redacted(settings.clickhouse_url)}: {exc}; start it "
                         "with `evpipe clickhouse serve` (or `evpipe dev up`), or set CLICKHOUSE_URL") from None
    try:
        return run_local(client, sql, _existing(client, settings.clickhouse_database))
    except ClickHouseError as exc:
        raise QueryError(str(exc).strip()) from None


def _existing(client: object, database: str) -> str | None:
    """The configured database if it exists (a fresh engine has none yet: query `default`)."""
    rows = client.query(  # type: ignore[attr-defined]
        "SELECT count() FROM system.databases WHERE name = {d:String}", parameters={"d": database}
    ).result_rows
    return database if rows[0][0] else None
