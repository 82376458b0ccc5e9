"""`evpipe query "SQL"`: run an analyst query against the configured ClickHouse."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from evpipe.settings import ClickHouseSettings, StateSettings, describe, load

if TYPE_CHECKING:
    from consumers.loader.query import Result


class QuerySettings(StateSettings, ClickHouseSettings):
    """Where ClickHouse is (the same variables the loader reads)."""


DESCRIPTION = """\
Run SQL against ClickHouse and print the result. With CLICKHOUSE_URL set, the
query goes to that server; otherwise to the embedded engine under
EVPIPE_STATE_DIR. The embedded engine's data directory can be open in one
process only: while `evpipe loader` runs on it, the query is sent to the
loader's read-only /query endpoint instead (found automatically).
Unqualified table names resolve in CLICKHOUSE_DATABASE.

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
    """Run on the server, the embedded engine, or the loader holding the embedded engine."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from consumers.loader.engine import EngineLocked, open_client
    from consumers.loader.query import QueryError, endpoint_file, run_local, run_remote
    from evpipe.clickhouse import embedded_path

    path = embedded_path(settings.clickhouse_url, settings.evpipe_state_dir)
    database = settings.clickhouse_database
    try:
        client = open_client(settings.clickhouse_url, settings.evpipe_state_dir)
    except EngineLocked:
        assert path is not None
        endpoint = endpoint_file(path)
        if not endpoint.exists():
            raise QueryError(
                f"the embedded engine at {path} is locked by another process that serves no query endpoint; "
                "stop that process, or run the loader (it serves queries on its admin port)"
            ) from None
        return run_remote(endpoint.read_text().strip(), sql, database)
    except Exception as exc:  # noqa: BLE001 (shown as a one-line error, not a traceback)
        raise QueryError(f"cannot connect to ClickHouse: {exc}") from None
    try:
        return run_local(client, sql, _existing(client, database))
    except ClickHouseError as exc:
        raise QueryError(str(exc).strip()) from None


def _existing(client: object, database: str) -> str | None:
    """The configured database if it exists (a fresh engine has none yet: query `default`)."""
    rows = client.query(  # type: ignore[attr-defined]
        "SELECT count() FROM system.databases WHERE name = {d:String}", parameters={"d": database}
    ).result_rows
    return database if rows[0][0] else None
