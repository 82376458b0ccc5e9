"""The typed ``p_<property>`` columns the archiver adds to the Parquet files it writes.

The same columns as ClickHouse's (consumers/loader/typed.py), from the same plans (TRACKING_PLANS, polled
like the gateway's), with the same rule per row (schemas/typed.py): the property's value when its JSON
type is the planned one, else null. They are computed per batch from the ``properties`` text with
pyarrow (schemas/typed_arrow.py), so a batch costs one more C++ parse of its properties, not Python per
event. Each file says its own columns; readers unify them (consumers/archiver/reading.py).

Additive, as in ClickHouse, for the life of the process: a property a new plan drops keeps its column,
and a column keeps the type it was first written with when a plan changes it (logged). A restarted
archiver starts from the plans in force; readers settle a type that differs between files.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from evpipe.plans.columns import planned_columns
from evpipe.plans.load import PlanSet
from evpipe.plans.model import PlanError
from evpipe.plans.settings import PlanSettings
from evpipe.plans.source import open_source
from evpipe.plans.watch import PlanWatcher, WatchMetrics
from evpipe.settings import ConfigError
from schemas.typed import TypedColumn

log = logging.getLogger("evpipe.archiver")


class TypedColumns:
    """The columns in force; the plan watcher's callback. Read by the sink's writer thread: one assignment."""

    def __init__(self) -> None:
        self.columns: tuple[TypedColumn, ...] = ()

    def __call__(self, plans: PlanSet) -> None:
        planned = planned_columns(plans.plans.values())
        for conflict in planned.conflicts:
            log.warning("typed columns: %s", conflict)
        self.columns = merged(self.columns, planned.columns)

    def current(self) -> tuple[TypedColumn, ...]:
        return self.columns


def merged(held: tuple[TypedColumn, ...], planned: tuple[TypedColumn, ...]) -> tuple[TypedColumn, ...]:
    """``held`` as they are, then the planned columns not held yet."""
    by_name = {column.name: column for column in held}
    for column in planned:
        kept = by_name.get(column.name)
        if kept is None:
            by_name[column.name] = column
        elif kept.scalar is not column.scalar or kept.key != column.key:
            log.warning("typed column %s stays %s of %r: the plans now say %s of %r (a column keeps its first type)",
                        kept.name, kept.scalar.value, kept.key, column.scalar.value, column.key)
    return tuple(by_name.values())


def watch_plans(settings: PlanSettings, registry: CollectorRegistry | None = None
                ) -> tuple[PlanWatcher | None, TypedColumns]:
    """The archiver's plan watcher (None without TRACKING_PLANS) and the columns it keeps current."""
    columns = TypedColumns()
    try:
        source = open_source(settings.tracking_plans, settings.s3_endpoint_url)
        if source is None:
            return None, columns
        watcher = PlanWatcher(source, settings.tracking_plans_reload_s, columns, WatchMetrics("archiver", registry))
    except PlanError as exc:  # at start a bad plan is a configuration error, as at the gateway
        raise ConfigError(f"TRACKING_PLANS: {exc}") from None
    return watcher, columns
