"""Tests of the consumers that need a broker, ClickHouse or S3 are `slow`: `-m "not slow"` runs the rest
(the runtime on its in-memory source, the sinks' pure parts) with no server at all. The stage-2 worker's tests
need Redis or Postgres, so they are `slow` too."""

from __future__ import annotations

import pytest

SERVER_FIXTURES = frozenset({"kafka", "clickhouse", "ch_database", "s3", "s3_bucket", "s3_gateway",
                             "postgres", "redis_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
