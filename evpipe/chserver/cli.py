"""`evpipe clickhouse serve`: the embedded ClickHouse engine as a server of ClickHouse's HTTP interface."""

from __future__ import annotations

import argparse

from evpipe.chserver.settings import ClickHouseServerSettings
from evpipe.settings import describe, load

DESCRIPTION = """\
Serve the embedded ClickHouse engine (chdb) over ClickHouse's HTTP interface,
so that the loader, `evpipe query`, clickhouse-connect, the official Node
client, Grafana and curl reach it as they reach a ClickHouse server. This
process alone owns the engine's data directory. It is the one-machine default
and the test server; in production point CLICKHOUSE_URL at a ClickHouse server,
cluster or ClickHouse Cloud instead.

The engine runs one statement at a time: a readonly user's statement is
stopped after CLICKHOUSE_READONLY_MAX_EXECUTION_TIME, which bounds how long an
insert can wait behind it. SIGTERM finishes in-flight requests, closes the
engine and exits 0.

examples:
  evpipe clickhouse serve
  echo 'SELECT 1' | curl --data-binary @- http://127.0.0.1:8123/
  CLICKHOUSE_USERS=analyst:secret:readonly evpipe clickhouse serve"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("clickhouse", help="the embedded ClickHouse engine as an HTTP server",
                                   description="ClickHouse commands.")
    commands = parser.add_subparsers(dest="clickhouse_command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve", help="serve the embedded engine over ClickHouse's HTTP interface", description=DESCRIPTION,
        epilog=describe(ClickHouseServerSettings), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evpipe.chserver.server import serve
    from evpipe.observability.logs import configure_process

    settings = load(ClickHouseServerSettings)
    configure_process("info", settings.evpipe_log_format)
    return serve(settings)
