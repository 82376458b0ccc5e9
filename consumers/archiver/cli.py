"""`evpipe archiver`: run one member of the archiver consumer group (Kafka -> Parquet)."""

from __future__ import annotations

import argparse

from evpipe.settings import describe

DESCRIPTION = """\
Consume the events topic as a member of the archiver group and write it as zstd Parquet,
hive-partitioned by received_at: <archive>/topic=T/dt=YYYY-MM-DD/hour=HH/T-P-FIRST-LAST.parquet.
Offsets are committed only after the files covering them are durable; a restarted member
rewrites the same files instead of adding new ones. Run several for more throughput: the
group spreads the topic's partitions over them. SIGTERM flushes, commits and exits.
A client's resends of an event (same event_id, same partition) are archived once if they come
within ARCHIVER_DEDUP_WINDOW_S of received_at time, as ClickHouse holds them once."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from consumers.archiver.settings import ArchiverSettings

    parser = subparsers.add_parser(
        "archiver", help="archive the events topic to Parquet on S3 or a local directory",
        description=DESCRIPTION, epilog=describe(ArchiverSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    import logging

    from consumers.archiver.metrics import ArchiverMetrics
    from consumers.archiver.settings import ArchiverSettings
    from consumers.archiver.sink import ParquetSink
    from consumers.archiver.store import LocalStore, open_store
    from consumers.archiver.typed import watch_plans
    from consumers.runtime import ConsumerLoop
    from consumers.runtime.metrics import ConsumerMetrics, process_registry, serve
    from consumers.runtime.parse import parse_values
    from consumers.runtime.process import run_until_signalled
    from consumers.runtime.suppress import suppressing
    from evpipe.gctune import tune_for_throughput
    from evpipe.observability.logs import configure_process
    from evpipe.privacy.open import open_privacy_store, suppression_cache
    from evpipe.settings import ConfigError, load

    settings = load(ArchiverSettings)
    configure_process(settings.log_level, settings.evpipe_log_format)
    uri = settings.archive_uri or str(settings.evpipe_state_dir / "archive")
    try:
        store = open_store(uri, settings.s3_endpoint_url, settings.s3_multipart_threshold_mb * 1024 * 1024,
                           settings.s3_timeout_s)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if isinstance(store, LocalStore):  # what a killed put left behind (S3 never shows a partial object)
        store.remove_stale_temp_files(settings.archiver_stale_temp_s)
    registry = process_registry()  # one per process: the sink's and the runtime's metrics, served together
    sink = ParquetSink(store, settings.archiver_row_group_rows, settings.archiver_zstd_level,
                       settings.archiver_dedup_window_s, settings.archiver_dedup_max_ids, ArchiverMetrics(registry),
                       folders={settings.overflow_topic: settings.kafka_topic})
    plans, typed = watch_plans(settings, registry)  # TRACKING_PLANS' typed p_ columns, kept current in a thread
    sink.typed_columns = typed.current
    metrics = ConsumerMetrics(registry)
    privacy = open_privacy_store(settings.privacy_store, "clickhouse", clickhouse_url=settings.clickhouse_url,
                                 clickhouse_database=settings.clickhouse_database,
                                 clickhouse_cluster=settings.clickhouse_cluster)
    parse = suppressing(parse_values, suppression_cache(privacy, settings), metrics)
    topics = [settings.kafka_topic, settings.overflow_topic]  # the overflow lane is live traffic too
    loop = ConsumerLoop(settings, sink, settings.archiver_group, topics, metrics=metrics, parse=parse)
    serve(registry, settings.metrics_port)
    logging.getLogger("evpipe.archiver").info(
        "archiving %s to %s (metrics on :%d)", " and ".join(topics), store.uri, settings.metrics_port)
    tune_for_throughput(settings.consumer_gc_gen0_threshold)  # after start-up: what was built so far is frozen
    if plans is not None:
        plans.start()
    run_until_signalled(loop)
    return 0
