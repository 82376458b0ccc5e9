"""The suppression list's matching and the runtime's suppression step, without any server."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, Counter

from consumers.runtime.parse import parse_values
from consumers.runtime.suppress import SuppressingParse, filter_arrow
from consumers.worker.metrics import WorkerMetrics
from consumers.worker.parse import RowParser, filter_entries
from evpipe.privacy.cache import StaleSuppressions, SuppressionCache
from evpipe.privacy.store import PrivacyStoreError
from evpipe.privacy.subjects import Subject, SuppressionSet

LIST = SuppressionSet([Subject("user_id", "A"), Subject("anonymous_id", "dev-9", "s2")])


def wire(n: int, user: str | None, anon: str | None = None, source: str = "s1") -> bytes:
    event = {"event_id": f"00000000-0000-4000-8000-{n:012d}", "type": "t", "source_id": source,
             "user_id": user, "anonymous_id": anon, "received_at": "2026-11-21T10:00:00.000Z",
             "properties": "{}", "context": "{}", "schema_version": 1}
    return orjson.dumps(event)


class FakeStore:
    name = "fake"

    def __init__(self, found: SuppressionSet | None) -> None:
        self.found = found

    def suppressions(self) -> SuppressionSet:
        if self.found is None:
            raise PrivacyStoreError("down")
        return self.found


def test_matches_global_and_per_source() -> None:
    assert LIST.matches("s1", "A", None)
    assert LIST.matches("s9", None, None) is False
    assert LIST.matches("s2", "B", "dev-9")
    assert not LIST.matches("s1", "B", "dev-9")  # dev-9 only for source s2
    assert not SuppressionSet().matches("s1", "A", None)


def test_filter_arrow_drops_only_suppressed_rows() -> None:
    table = pa.table({"source_id": ["s1", "s2", "s1", "s2"], "user_id": ["A", None, "B", "C"],
                      "anonymous_id": [None, "dev-9", "dev-9", None]})
    rows, kept = filter_arrow(table, LIST)  # type: ignore[misc]
    assert kept == [2, 3]
    assert rows.column("user_id").to_pylist() == ["B", "C"]
    assert filter_arrow(table, SuppressionSet([Subject("user_id", "Z")])) is None


def test_suppressing_parse_keeps_offsets_aligned() -> None:
    cache = SuppressionCache(FakeStore(LIST), refresh_s=60, max_stale_s=60)  # type: ignore[arg-type]
    counter = Counter("s", "s", registry=CollectorRegistry())
    parse = SuppressingParse(parse_values, cache, counter)
    values = [wire(1, "A"), wire(2, "B"), wire(3, None, "dev-9", "s2"), wire(4, "C")]
    parsed = parse([10, 11, 12, 13], values)
    assert parsed.table.column("user_id").to_pylist() == ["B", "C"]
    assert parsed.offsets == [11, 13]
    assert counter._value.get() == 2


def test_worker_rows_filtered() -> None:
    parsed = RowParser(WorkerMetrics())([1, 2, 3], [wire(1, "A"), wire(2, "B"), wire(3, "A", source="s7")])
    rows, kept = filter_entries(parsed.table, LIST)  # type: ignore[misc]
    assert kept == [1] and len(rows) == 1


def test_cache_fails_closed_past_the_staleness_bound() -> None:
    now = [0.0]
    store = FakeStore(LIST)
    cache = SuppressionCache(store, refresh_s=1, max_stale_s=5, clock=lambda: now[0])  # type: ignore[arg-type]
    assert cache.current() is LIST
    store.found = None
    now[0] = 3.0
    assert cache.current() is LIST  # the last copy, within the bound
    now[0] = 6.0
    with pytest.raises(StaleSuppressions):
        cache.current()
    store.found = SuppressionSet()
    now[0] = 7.5
    assert cache.current().empty
