"""The suppression step: rows of suppressed users leave a parsed batch before any sink sees it.

It wraps the loop's parse step, so it holds for every sink on the runtime (the
archive, ClickHouse, the stage-2 worker's Postgres) and every way an event
arrives there: live traffic, a replay onto the replay topic, a reset of offsets,
a drain of the gateway's fallback store. The list is read before the parse
(``SuppressionCache.current``): when it is too stale that raises, the batch's
values are still whole, and the runtime retries the batch like a failed write.

Dropped rows' offsets leave the batch's row offsets too; the batch's offset
range is unchanged, so they are committed with it and never come back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.parse import Parse, Parsed
from evpipe.privacy.cache import SuppressionCache
from evpipe.privacy.subjects import SuppressionSet

# Rows in, (rows kept, index of each kept row) out: one per kind of batch rows.
RowFilter = Callable[[Any, SuppressionSet], tuple[Any, list[int]] | None]


def arrow_drop_mask(table: pa.Table, suppressions: SuppressionSet) -> pa.ChunkedArray | None:
    """True for the rows of suppressed subjects, or None when no row is one (the common case)."""
    drop: Any = None
    for (kind, source), values in suppressions.groups().items():
        if kind not in table.column_names:
            continue
        column = table.column(kind)
        hit = pc.fill_null(pc.is_in(column, value_set=pa.array(values, column.type)), False)
        if source:
            hit = pc.and_(hit, pc.fill_null(pc.equal(table.column("source_id"), source), False))
        drop = hit if drop is None else pc.or_(drop, hit)
    if drop is None or not pc.any(drop).as_py():
        return None
    return drop


def filter_arrow(table: pa.Table, suppressions: SuppressionSet) -> tuple[pa.Table, list[int]] | None:
    """The table without suppressed rows and the kept rows' indices; None when nothing is dropped."""
    drop = arrow_drop_mask(table, suppressions)
    if drop is None:
        return None
    keep = pc.invert(drop)
    indices = pc.indices_nonzero(keep.combine_chunks() if isinstance(keep, pa.ChunkedArray) else keep)
    return table.filter(keep), indices.to_pylist()


class SuppressingParse:
    """A parse step that drops suppressed users' rows from what ``inner`` parsed."""

    def __init__(self, inner: Parse, cache: SuppressionCache, counter: Counter,
                 row_filter: RowFilter = filter_arrow) -> None:
        self.inner = inner
        self.cache = cache
        self.counter = counter
        self.row_filter = row_filter

    def __call__(self, offsets: list[int], values: list[bytes]) -> Parsed[Any]:
        suppressions = self.cache.current()  # may raise: the values are untouched, the batch is retried
        parsed = self.inner(offsets, values)
        if suppressions.empty:
            return parsed
        filtered = self.row_filter(parsed.table, suppressions)
        if filtered is None:
            return parsed
        rows, kept = filtered
        dropped = len(parsed.table) - len(kept)
        self.counter.inc(dropped)
        return Parsed(rows, parsed.poison, [parsed.offsets[i] for i in kept])


def suppressing(inner: Parse, cache: SuppressionCache | None, metrics: ConsumerMetrics,
                row_filter: RowFilter = filter_arrow) -> Parse:
    """``inner`` with the suppression step in front, or ``inner`` itself when privacy is off."""
    if cache is None:
        metrics.registry.unregister(metrics.suppression_age)
        return inner
    metrics.suppression_age.set_function(lambda: cache.age_s)
    return SuppressingParse(inner, cache, metrics.suppressed, row_filter)


