"""`evpipe loader`: the ClickHouse loader consumer group (Kafka -> ClickHouse, exactly once)."""

from __future__ import annotations

import argparse
import sys

from consumers.loader.settings import LoaderSettings
from evpipe.settings import describe, load

DESCRIPTION = """\
Consume the events topic as a member of the loader consumer group and insert
each partition's batches into the ClickHouse at CLICKHOUSE_URL (a server, a
cluster, ClickHouse Cloud, or `evpipe clickhouse serve`). Tables are created or
migrated at start. Offsets are committed only after the insert; a replayed
batch or a client's retried event_id counts once, with any number of loaders.
Rows ClickHouse rejects go to the dead-letter topic with the error. Serves
/metrics and /healthz on METRICS_PORT."""


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
    from evpipe.observability.logs import configure_process

    settings = load(LoaderSettings)
    configure_process("info", settings.evpipe_log_format)
    if args.migrate_only:
        return migrate_only(settings)
    from consumers.loader.app import Loader
    from consumers.runtime.metrics import process_registry
    from consumers.runtime.process import run_until_signalled
    from evpipe.clickhouse import ClickHouseUnreachable
    from evpipe.gctune import tune_for_throughput

    try:
        loader = Loader(settings, registry=process_registry())
    except ClickHouseUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tune_for_throughput(settings.consumer_gc_gen0_threshold)  # after start-up: what was built so far is frozen
    run_until_signalled(loader)
    return 0


def migrate_only(settings: LoaderSettings) -> int:
    from consumers.loader.tables import migrate
    from consumers.loader.typed import migrate_typed
    from evpipe.clickhouse import ClickHouseUnreachable, connect_waiting

    try:
        client = connect_waiting(settings.clickhouse_url, settings.loader_connect_wait_s)
    except ClickHouseUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    applied = migrate(client, settings.clickhouse_database, dedup_days=settings.loader_dedup_days,
                      cluster=settings.clickhouse_cluster)
    applied += migrate_typed(settings, settings.clickhouse_url, settings.clickhouse_database,
                             settings.clickhouse_cluster)
    print("\n".join(applied) if applied else "schema up to date")
    return 0
