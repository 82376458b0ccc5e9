"""One loader process: migrate the tables, then run the consumer loop into ClickHouseSink."""

from __future__ import annotations

import logging
import threading
from typing import Any

from consumers.loader.admin import AdminServer
from consumers.loader.engine import open_client
from consumers.loader.rejects import DeadLetterRows
from consumers.loader.settings import LoaderSettings
from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from consumers.runtime import ConsumerLoop
from consumers.runtime.deadletter import DeadLetters
from evpipe.clickhouse import embedded_path
from evpipe.kafka import producer_config
from schemas.fields import FIELDS, Field

log = logging.getLogger("evpipe.loader")


class Loader:
    def __init__(
        self,
        settings: LoaderSettings,
        fields: tuple[Field, ...] = FIELDS,
        consumer_overrides: dict[str, Any] | None = None,
        sole_process: bool = False,
    ) -> None:
        """``sole_process``: nothing else uses the embedded engine (true at `evpipe loader` start)."""
        self.settings = settings
        self.data_path = embedded_path(settings.clickhouse_url, settings.evpipe_state_dir)
        # An `evpipe query` may hold the embedded engine for a moment: wait for it rather than fail.
        self.client = open_client(settings.clickhouse_url, settings.evpipe_state_dir,
                                  wait_s=settings.loader_engine_wait_s)
        applied = migrate(self.client, settings.clickhouse_database, fields, settings.loader_dedup_days)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        if sole_process and self.data_path is not None:
            stale = ClickHouseSink.drop_stale_stages(self.client, settings.clickhouse_database)
            if stale:
                log.info("dropped stage tables of loaders that did not stop cleanly: %s", ", ".join(stale))
        lock = threading.Lock()
        self.dead_letters = DeadLetters(producer_config(settings, **{"linger.ms": 0}), settings.kafka_dlq_topic)
        self.sink = ClickHouseSink(
            self.client, settings.clickhouse_database, fields, dead_letter=DeadLetterRows(self.dead_letters),
            fail_file=settings.loader_fail_file, lock=lock,
        )
        # Embedded engine: analysts cannot open the locked data directory, so serve their queries.
        embedded = self.data_path is not None
        self.admin = AdminServer(
            settings.loader_admin_host, settings.metrics_port, client=self.client if embedded else None,
            lock=lock, database=settings.clickhouse_database, data_path=self.data_path,
        )
        topics = [settings.kafka_topic] + ([settings.kafka_replay_topic] if settings.loader_consume_replay else [])
        # The admin server serves /metrics for the runtime's metrics too (one registry, one port).
        runtime_settings = settings.model_copy(update={"metrics_port": 0})
        self.loop = ConsumerLoop(runtime_settings, self.sink, settings.loader_group_id, topics, consumer_overrides,
                                 low_priority_topics=[settings.kafka_replay_topic])

    def run(self) -> None:
        """Blocks until SIGTERM/SIGINT or :meth:`stop`; then flushes, commits and cleans up."""
        self.admin.start()
        try:
            self.loop.run()
        finally:
            self.admin.stop()
            self.sink.close()
            self.dead_letters.close()

    def stop(self) -> None:
        self.loop.stop()
