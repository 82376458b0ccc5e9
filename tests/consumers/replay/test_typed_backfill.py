"""A backfill from an archive mixing files without and with typed columns, into a ClickHouse with p_ columns."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import LocalStore
from consumers.archiver.typed import TypedColumns
from consumers.loader.typed import TypedColumnKeeper
from consumers.replay.archive import ClickHouseWriter, Window, backfill
from evpipe.clickhouse import connect
from evpipe.plans.load import load_directory
from tests.consumers.loader.events import BASE, batch, event
from tests.plans.samples import plan, write
from tests.providers import Service


def _events(start: int, n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(start, start + n):
        row = event(i, received=BASE + dt.timedelta(seconds=i))
        row["properties"] = orjson.dumps({"order_id": f"o{i}", "revenue": i / 4 if i % 5 else None}).decode()
        rows.append(row)
    return rows


def test_old_and_new_archive_files_backfill_with_the_typed_sum_equal_to_the_json_sum(
        tmp_path: Path, clickhouse: Service, ch_database: str) -> None:
    write(tmp_path, "source_a.yaml", plan())
    plans = load_directory(tmp_path)
    store = LocalStore(tmp_path / "archive")
    old, new = ParquetSink(store), ParquetSink(store)
    columns = TypedColumns()
    columns(plans)
    new.typed_columns = columns.current
    old.write(batch(_events(0, 200), topic="ev", first=0))
    new.write(batch(_events(200, 200), topic="ev", first=200))
    schemas = [pq.read_schema(p).names for p in sorted((tmp_path / "archive").rglob("*.parquet"))]
    assert ["p_revenue" in names for names in schemas] == [False, True]
    client = connect(clickhouse.url)
    writer = ClickHouseWriter(client, ch_database, 30)
    TypedColumnKeeper(client, ch_database)(plans)
    summary = backfill(store, "ev", Window(BASE, BASE + dt.timedelta(hours=1)), writer)
    assert (summary.written, summary.failed) == (400, 0)
    typed, extracted, counted = client.query(
        f"SELECT sum(p_revenue), sum(JSONExtractFloat(properties, 'revenue')), count(p_revenue) "
        f"FROM `{ch_database}`.events").result_rows[0]
    assert typed == pytest.approx(extracted) == pytest.approx(sum(i / 4 for i in range(400) if i % 5))
    assert counted == 320
