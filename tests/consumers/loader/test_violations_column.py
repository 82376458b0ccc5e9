"""The tracking-plan `violations` field in ClickHouse: added to a table that predates it, written as an array."""

from __future__ import annotations

import pytest

from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import migrate
from evpipe.clickhouse import connect
from schemas.fields import FIELDS
from tests.consumers.loader.events import batch, event
from tests.providers import Service

TAGGED = ["/properties/plan: expected string, got integer", "/type: expected an event type of the tracking plan"]


@pytest.fixture
def client(clickhouse: Service):  # type: ignore[no-untyped-def]
    return connect(clickhouse.url)


def test_a_table_from_before_violations_gets_the_column_and_tagged_rows_keep_their_list(
        client, ch_database: str) -> None:  # type: ignore[no-untyped-def]
    before = tuple(f for f in FIELDS if f.name != "violations")
    migrate(client, ch_database, before)
    assert migrate(client, ch_database) == ["events add column violations"]
    sink = ClickHouseSink(client, ch_database, dead_letter=lambda *_args: None)
    tagged, clean = event(1), event(2)
    tagged["violations"] = TAGGED
    b = batch([tagged, clean])
    sink.begin(b)
    sink.write(b)
    rows = dict(client.query(f"SELECT event_id, violations FROM `{ch_database}`.events").result_rows)
    assert {str(k): v for k, v in rows.items()} == {tagged["event_id"]: TAGGED, clean["event_id"]: []}
    kind = client.query("SELECT type FROM system.columns WHERE database = {d:String} AND table = 'events' "
                        "AND name = 'violations'", parameters={"d": ch_database}).result_rows
    assert kind == [("Array(String)",)]
