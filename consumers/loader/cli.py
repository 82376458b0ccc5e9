"""`evpipe loader`: the ClickHouse loader consumer group (Kafka -> ClickHouse, exactly once)."""

from __future__ import annotations

import argparse
import sys

from consumers.loader.settings import LoaderSettings
from evpipe.settings import describe, load

DESCRIPTION = """\
Consume the events topic as a member of the loader consumer group and insert
each partition's batches into ClickHouse (the embedded engine by default, or
CLICKHOUSE_URL). Tables are created or migrated at start. Offsets are committed
only after the insert; a replayed batch or a client's retried event_id counts
once. Rows ClickHouse rejects go to the dead-letter topic with the error.
Serves /metrics on METRICS_PORT and, with the embedded engine, a read-only
/query that `evpipe query` uses while this process holds the engine's lock."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "loader", help="load events from Kafka into ClickHouse (consumer group, exactly once)",
        description=DESCRIPTION, epilog=describe(LoaderSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--migrate-only", action="store_true",
                        help="create or migrate the ClickHouse tables, print what was applied, and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from infra.observability.logs import configure_process

    settings = load(LoaderSettings)
    configure_process("info", settings.evpipe_log_format)
    if args.migrate_only:
        return migrate_only(settings)
    from consumers.loader.app import Loader
    from consumers.loader.engine import EngineLocked

    try:
        # This process holds the embedded engine's lock: stage tables there are leftovers of killed loaders.
        loader = Loader(settings, sole_process=True)
    except EngineLocked as exc:
        print(f"error: {exc}. Is another loader running on it? Run one loader per embedded engine, "
              "or set CLICKHOUSE_URL to a ClickHouse server to run several.", file=sys.stderr)
        return 1
    loader.run()
    return 0


def migrate_only(settings: LoaderSettings) -> int:
    from consumers.loader.tables import migrate
    from evpipe.clickhouse import connect

    client = connect(settings.clickhouse_url, settings.evpipe_state_dir)
    applied = migrate(client, settings.clickhouse_database, dedup_days=settings.loader_dedup_days)
    print("\n".join(applied) if applied else "schema up to date")
    return 0
