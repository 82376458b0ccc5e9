"""One loader process: migrate the tables, then run the consumer loop into ClickHouseSink."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.loader.admin import AdminServer
from consumers.loader.deadletter import DeadLetterRows
from consumers.loader.metrics import LoaderMetrics
from consumers.loader.settings import LoaderSettings
from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from consumers.loader.typed import watch_plans
from consumers.runtime import ConsumerLoop
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.parse import parse_values
from consumers.runtime.suppress import suppressing
from evpipe.clickhouse import connect_waiting
from evpipe.kafka import producer_config
from evpipe.privacy.open import open_privacy_store, suppression_cache
from schemas.fields import FIELDS, Field

log = logging.getLogger("evpipe.loader")


class Loader:
    def __init__(
        self,
        settings: LoaderSettings,
        fields: tuple[Field, ...] = FIELDS,
        consumer_overrides: dict[str, Any] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        # One registry for the sink's and the runtime's metrics, served by the admin server; a new one
        # unless the process gives its own (tests run several loaders in one process).
        self.registry = registry if registry is not None else CollectorRegistry()
        # A ClickHouse server still starting (`evpipe dev up`, a pod restart) is waited for, not a crash.
        self.client = connect_waiting(settings.clickhouse_url, settings.loader_connect_wait_s,
                                      settings.clickhouse_timeout_s)
        applied = migrate(self.client, settings.clickhouse_database, fields, settings.loader_dedup_days,
                          settings.clickhouse_cluster)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        # The typed p_<property> columns of TRACKING_PLANS, added now and whenever the plans change.
        self.plans = watch_plans(settings, settings.clickhouse_url, settings.clickhouse_database,
                                 settings.clickhouse_cluster, self.registry)
        self.dead_letters = DeadLetters(producer_config(settings, **{"linger.ms": 0}), settings.kafka_dlq_topic)
        self.sink = ClickHouseSink(self.client, settings.clickhouse_database, fields,
                                   dead_letter=DeadLetterRows(self.dead_letters),
                                   clustered=bool(settings.clickhouse_cluster),
                                   metrics=LoaderMetrics(self.registry))
        self.admin = AdminServer(settings.loader_admin_host, settings.metrics_port, self.registry)
        topics = [settings.kafka_topic, settings.overflow_topic]  # the overflow lane is live traffic too
        topics += [settings.kafka_replay_topic] if settings.loader_consume_replay else []
        metrics = ConsumerMetrics(self.registry)
        privacy = open_privacy_store(settings.privacy_store, "clickhouse", clickhouse_url=settings.clickhouse_url,
                                     clickhouse_database=settings.clickhouse_database,
                                     clickhouse_cluster=settings.clickhouse_cluster)
        parse = suppressing(parse_values, suppression_cache(privacy, settings), metrics)
        self.loop = ConsumerLoop(settings, self.sink, settings.loader_group_id, topics, consumer_overrides,
                                 low_priority_topics=[settings.kafka_replay_topic], metrics=metrics, parse=parse)

    def run(self) -> None:
        """Blocks until :meth:`stop` (the entry point maps SIGTERM/SIGINT to it); then flushes, commits, cleans up."""
        self.admin.start()
        if self.plans is not None:
            self.plans.start()
        try:
            self.loop.run()
        finally:
            if self.plans is not None:
                self.plans.stop()
            self.admin.stop()
            self.dead_letters.close()

    def stop(self) -> None:
        self.loop.stop()
