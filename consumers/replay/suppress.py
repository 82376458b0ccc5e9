"""A replay writer that leaves out suppressed users' rows: a backfill never brings them back.

Wraps either target of ``evpipe replay archive`` (ClickHouse or the replay
topic). The loader drops them from the replay topic anyway; this keeps them
off the topic, and out of a direct ClickHouse backfill, which has no consumer.
"""

from __future__ import annotations

import pyarrow as pa

from consumers.replay.archive import Summary, Writer
from consumers.runtime.suppress import filter_arrow
from evpipe.privacy.cache import SuppressionCache


class SuppressingWriter:
    def __init__(self, inner: Writer, cache: SuppressionCache) -> None:
        self.inner = inner
        self.cache = cache
        self.suppressed = 0

    def write(self, rows: pa.Table, identity: str, summary: Summary) -> None:
        filtered = filter_arrow(rows, self.cache.current())
        if filtered is not None:
            self.suppressed += rows.num_rows - filtered[0].num_rows
            rows = filtered[0]
        if rows.num_rows:
            self.inner.write(rows, identity, summary)

    def finish(self, summary: Summary) -> None:
        self.inner.finish(summary)
