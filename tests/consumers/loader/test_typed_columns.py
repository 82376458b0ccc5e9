"""Typed p_<property> columns in ClickHouse: added from the plans, right for rows stored before, additive."""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from consumers.loader.sink import ClickHouseSink
from consumers.loader.tables import Tables, add_column_migrations, migrate
from consumers.loader.typed import TypedColumnKeeper, add_typed_columns, typed_column_migrations
from evpipe.clickhouse import connect
from evpipe.plans.columns import planned_columns
from evpipe.plans.load import load_directory
from schemas.typed import Scalar, TypedColumn
from tests.consumers.loader.events import batch, event
from tests.plans.samples import ORDER_SCHEMA, plan, write
from tests.providers import Service

REVENUES: list[Any] = [12.5, 3, 0, -1.25, None, "absent", 1e6]


@pytest.fixture
def client(clickhouse: Service) -> Client:
    return connect(clickhouse.url)


def _events(revenues: list[Any], start: int) -> list[dict[str, Any]]:
    rows = []
    for i, revenue in enumerate(revenues):
        row = event(start + i)
        properties = {"order_id": f"o-{start + i}", "order-id": "x"}
        if revenue != "absent":
            properties["revenue"] = revenue
        row["properties"] = orjson.dumps(properties).decode()
        rows.append(row)
    return rows


def _insert(client: Client, database: str, rows: list[dict[str, Any]]) -> None:
    sink = ClickHouseSink(client, database, dead_letter=lambda *_args: None)
    b = batch(rows, first=int(rows[0]["properties"].split('"o-')[1].split('"')[0]))  # a batch identity each
    sink.begin(b)
    sink.write(b)


def _plans(tmp_path: Path, **schemas: Any) -> Any:
    tmp_path.mkdir(exist_ok=True)
    write(tmp_path, "source_a.yaml", plan(**schemas))
    return load_directory(tmp_path)


def _types(client: Client, database: str) -> dict[str, tuple[str, str]]:
    rows = client.query("SELECT name, type, default_kind FROM system.columns WHERE database = {d:String} "
                        "AND table = 'events' AND startsWith(name, 'p_')", parameters={"d": database}).result_rows
    return {name: (kind, default) for name, kind, default in rows}


def test_typed_sum_equals_the_json_extracted_sum(client: Client, ch_database: str, tmp_path: Path) -> None:
    migrate(client, ch_database)
    _insert(client, ch_database, _events(REVENUES, 1))  # before the column exists: computed when read
    TypedColumnKeeper(client, ch_database)(_plans(tmp_path))
    _insert(client, ch_database, _events(REVENUES, 100))  # after: computed at insert
    assert _types(client, ch_database) == {
        "p_order_id": ("Nullable(String)", "MATERIALIZED"), "p_revenue": ("Nullable(Float64)", "MATERIALIZED"),
        "p_currency": ("Nullable(String)", "MATERIALIZED")}
    typed, extracted, rows, nulls = client.query(
        f"SELECT sum(p_revenue), sum(JSONExtractFloat(properties, 'revenue')), count(), countIf(p_revenue IS NULL) "
        f"FROM {Tables(ch_database).events}").result_rows[0]
    assert rows == 14 and nulls == 4  # null and absent, before and after
    assert typed == pytest.approx(extracted) == pytest.approx(2 * (12.5 + 3 - 1.25 + 1e6))


def test_a_value_of_another_json_type_is_null_not_coerced(client: Client, ch_database: str, tmp_path: Path) -> None:
    migrate(client, ch_database)
    TypedColumnKeeper(client, ch_database)(_plans(tmp_path))
    _insert(client, ch_database, _events(["12", True, 7], 1))  # a tag-mode event, a source without a plan
    got = client.query(f"SELECT p_revenue FROM {Tables(ch_database).events} ORDER BY event_id").result_rows
    assert sorted(got, key=str) == sorted([(None,), (None,), (7.0,)], key=str)


def test_evolution_is_additive_and_a_changed_type_keeps_the_first_column(
        client: Client, ch_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    migrate(client, ch_database)
    keeper = TypedColumnKeeper(client, ch_database)
    keeper(_plans(tmp_path / "v1"))
    v2 = {"type": "object", "properties": {"revenue": {"type": "string"}, "coupon": {"type": "string"},
                                           "items": {"type": ["integer", "null"]}, "tags": {"type": "array"}}}
    keeper(_plans(tmp_path / "v2", order_completed={"properties": v2}))
    assert _types(client, ch_database) == {
        "p_order_id": ("Nullable(String)", "MATERIALIZED"), "p_revenue": ("Nullable(Float64)", "MATERIALIZED"),
        "p_currency": ("Nullable(String)", "MATERIALIZED"), "p_coupon": ("Nullable(String)", "MATERIALIZED"),
        "p_items": ("Nullable(Int64)", "MATERIALIZED")}
    assert "p_revenue stays Nullable(Float64)" in caplog.text
    assert keeper.added == ["events add column p_order_id", "events add column p_revenue",
                            "events add column p_currency", "events add column p_coupon", "events add column p_items"]
    assert add_typed_columns(client, ch_database, planned_columns([]).columns) == []
    _insert(client, ch_database, _events([5], 1))  # inserts still name their columns: the p_ ones are computed
    assert client.query(f"SELECT p_revenue FROM {Tables(ch_database).events}").result_rows == [(5.0,)]


def test_names_are_sanitized_and_conflicts_resolved_predictably(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {
        "order_id": {"type": "string"}, "order-id": {"type": "string"}, "a b.c": {"type": "boolean"},
        "n": {"type": "integer"}, "x" * 150: {"type": "number"}}}
    other = {"type": "object", "properties": {"n": {"type": "number"}, "order_id": {"type": "integer"}}}
    plans = _plans(tmp_path, order_completed={"properties": schema}, refund={"properties": other})
    planned = planned_columns(plans.plans.values())
    names = {c.name: (c.key, c.scalar) for c in planned.columns}
    assert names["p_order_id"] == ("order_id", Scalar.STRING)  # the first declaration's type
    assert names["p_a_b_c"] == ("a b.c", Scalar.BOOLEAN)
    assert names["p_n"] == ("n", Scalar.NUMBER)  # integer in one event type, number in another: number
    long_name = next(n for n in names if n.startswith("p_xxx"))
    assert len(long_name) == 100 and long_name.endswith("_" + format(zlib.crc32(b"x" * 150), "08x"))
    assert len(planned.conflicts) == 2  # order-id meets order_id; order_id is an integer in refund


def test_cluster_ddl_adds_to_the_local_table_then_the_distributed_one() -> None:
    column = TypedColumn("p_revenue", "revenue", Scalar.NUMBER)
    migrations = typed_column_migrations({}, Tables("db"), [column], cluster="c")
    assert [m.id for m in migrations] == ["events_local add column p_revenue", "events add column p_revenue"]
    assert migrations[0].statement == (
        "ALTER TABLE `db`.`events_local` ON CLUSTER 'c' ADD COLUMN IF NOT EXISTS `p_revenue` Nullable(Float64) "
        "MATERIALIZED if(JSONType(properties, 'revenue') IN ('Int64', 'UInt64', 'Double'), "
        "JSONExtract(properties, 'revenue', 'Nullable(Float64)'), NULL)")
    # Same shape as the fields' own additive migrations.
    assert [m.id for m in add_column_migrations(Tables("db"), [], "c")] == []
    assert ORDER_SCHEMA["properties"]["revenue"]["type"] == "number"


def test_the_loader_adds_the_columns_at_start_and_after_a_plan_change(
        clickhouse: Service, client: Client, ch_database: str, tmp_path: Path) -> None:
    from consumers.loader.settings import LoaderSettings
    from consumers.loader.typed import watch_plans
    from evpipe.settings import ConfigError

    migrate(client, ch_database)
    write(tmp_path, "source_a.yaml", plan())
    settings = LoaderSettings(tracking_plans=str(tmp_path), tracking_plans_reload_s=0.05)
    watcher = watch_plans(settings, clickhouse.url, ch_database, "")
    assert watcher is not None and set(_types(client, ch_database)) == {"p_order_id", "p_revenue", "p_currency"}
    watcher.start()
    try:
        write(tmp_path, "source_b.yaml", plan(source="b", signup={"properties": {
            "type": "object", "properties": {"plan": {"type": "string"}}}}))
        deadline = time.monotonic() + 10
        while "p_plan" not in _types(client, ch_database) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "p_plan" in _types(client, ch_database)
    finally:
        watcher.stop()
    write(tmp_path, "source_c.yaml", "version: [")
    with pytest.raises(ConfigError, match="TRACKING_PLANS: source_c.yaml"):
        watch_plans(settings, clickhouse.url, ch_database, "")


def test_integer_and_boolean_columns_take_only_their_json_type(client: Client, ch_database: str, tmp_path: Path) -> None:
    migrate(client, ch_database)
    schema = {"type": "object", "properties": {"items": {"type": "integer"}, "gift": {"type": "boolean"}}}
    TypedColumnKeeper(client, ch_database)(_plans(tmp_path, order_completed={"properties": schema}))
    texts = ['{"items": 3, "gift": true}', '{"items": 2.5, "gift": 1}', '{"items": "4", "gift": "true"}',
             '{"items": -7, "gift": false}', '{"items": 1180591620717411303424}']
    rows = [dict(event(i), properties=text) for i, text in enumerate(texts)]
    sink = ClickHouseSink(client, ch_database, dead_letter=lambda *_args: None)
    b = batch(rows)
    sink.begin(b)
    sink.write(b)
    got = client.query(f"SELECT p_items, p_gift FROM {Tables(ch_database).events}").result_rows
    assert sorted(got, key=str) == sorted([(3, True), (None, None), (None, None), (-7, False), (None, None)], key=str)
