"""The typed ``p_<property>`` columns of the events table, added as the tracking plans name them.

Each is a MATERIALIZED column (schemas/typed.py): ClickHouse computes it from ``properties`` as rows
arrive, and for rows stored before the column existed it computes it when they are read. So the loader's
insert is unchanged (it names its columns, and a MATERIALIZED one is never sent), and a column added
today is right for last year's rows too.

The loader adds them, at start and whenever the plans change (``TRACKING_PLANS``, polled in a thread),
because it already owns the table's DDL and its migration ledger; a separate command would be one more
step to forget after a plan change. Evolution is additive:

* a new property: ``ADD COLUMN IF NOT EXISTS``, recorded in ``schema_migrations``;
* a property a plan no longer names: its column stays (and keeps being filled);
* a column that exists with another type than the plans now say: it stays as it is, and the difference
  is logged. Changing it would rewrite the table; NULL for the values of the other type breaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from consumers.loader.tables import Migration, Tables, Topology, _run
from evpipe.clickhouse import connect
from evpipe.plans.columns import planned_columns
from evpipe.plans.load import PlanSet
from evpipe.plans.model import PlanError
from evpipe.plans.settings import PlanSettings
from evpipe.plans.source import open_source
from evpipe.plans.watch import PlanWatcher, WatchMetrics
from evpipe.settings import ConfigError
from schemas.typed import TypedColumn, clickhouse_add_typed_column

log = logging.getLogger("evpipe.loader")


def add_typed_columns(client: Client, database: str, columns: Sequence[TypedColumn], cluster: str = "") -> list[str]:
    """Add the columns the events table lacks; returns the ids of the migrations run now."""
    tables = Tables(database)
    ran = []
    for migration in typed_column_migrations(existing_types(client, database), tables, columns, cluster):
        _run(client, tables, migration, cluster)
        ran.append(migration.id)
    return ran


def typed_column_migrations(existing: dict[str, str], tables: Tables, columns: Sequence[TypedColumn],
                            cluster: str = "") -> list[Migration]:
    """The ALTERs for ``columns`` not in ``existing`` (name -> type); on a cluster local first, as for fields."""
    topo = Topology(cluster)
    names = [topo.storage("events"), "events"] if topo.clustered else ["events"]
    migrations = []
    for column in columns:
        held = existing.get(column.name)
        if held is not None:
            if held != column.clickhouse_type:
                log.warning("typed column %s stays %s: the plans now say %s for %r (a column keeps its first "
                            "type; values of the other type read as NULL)", column.name, held,
                            column.clickhouse_type, column.key)
            continue
        migrations += [Migration(f"{name} add column {column.name}",
                                 clickhouse_add_typed_column(tables.name(name), column, topo.on_cluster))
                       for name in names]
    return migrations


def existing_types(client: Client, database: str) -> dict[str, str]:
    """The events table's columns and their types (the Distributed table's on a cluster)."""
    result = client.query("SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'events'",
                          parameters={"db": database})
    return {row[0]: row[1] for row in result.result_rows}


class TypedColumnKeeper:
    """The watcher's callback: the plans' typed columns onto the table (its own client: the sink's is busy)."""

    def __init__(self, client: Client, database: str, cluster: str = "") -> None:
        self.client, self.database, self.cluster = client, database, cluster
        self.added: list[str] = []  # migration ids run so far (what `evpipe loader --migrate-only` prints)

    def __call__(self, plans: PlanSet) -> None:
        planned = planned_columns(plans.plans.values())
        for conflict in planned.conflicts:
            log.warning("typed columns: %s", conflict)
        ran = add_typed_columns(self.client, self.database, planned.columns, self.cluster)
        if ran:
            log.info("typed columns added: %s", ", ".join(ran))
        self.added += ran


def watch_plans(settings: PlanSettings, clickhouse_url: str, database: str, cluster: str,
                registry: CollectorRegistry | None = None) -> PlanWatcher | None:
    """The loader's plan watcher, its typed columns already added; None without TRACKING_PLANS."""
    try:
        source = open_source(settings.tracking_plans, settings.s3_endpoint_url)
        if source is None:
            return None
        keeper = TypedColumnKeeper(connect(clickhouse_url), database, cluster)
        return PlanWatcher(source, settings.tracking_plans_reload_s, keeper, WatchMetrics("loader", registry))
    except PlanError as exc:  # at start a bad plan is a configuration error, as at the gateway
        raise ConfigError(f"TRACKING_PLANS: {exc}") from None


def migrate_typed(settings: PlanSettings, clickhouse_url: str, database: str, cluster: str) -> list[str]:
    """The typed columns of TRACKING_PLANS added once, without watching (`evpipe loader --migrate-only`)."""
    watcher = watch_plans(settings, clickhouse_url, database, cluster)
    keeper = watcher.on_change if watcher is not None else None
    return keeper.added if isinstance(keeper, TypedColumnKeeper) else []
