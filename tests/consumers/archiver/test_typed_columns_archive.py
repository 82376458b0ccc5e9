"""Typed p_<property> columns in the Parquet archive: computed per batch, read beside files without them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from consumers.archiver.reading import concat_unified, read_together
from consumers.archiver.sink import ParquetSink
from consumers.archiver.store import LocalStore
from consumers.archiver.typed import TypedColumns
from evpipe.plans.load import load_directory
from schemas.typed import Scalar, TypedColumn
from schemas.typed_arrow import typed_values, with_typed_columns
from tests.consumers.loader.events import batch, event
from tests.plans.samples import plan, write

REVENUE = TypedColumn("p_revenue", "revenue", Scalar.NUMBER)
ITEMS = TypedColumn("p_items", "items", Scalar.INTEGER)
COUPON = TypedColumn("p_coupon", "coupon", Scalar.STRING)
GIFT = TypedColumn("p_gift", "gift", Scalar.BOOLEAN)
ALL = [REVENUE, ITEMS, COUPON, GIFT]


def _events(properties: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    rows = []
    for i, props in enumerate(properties):
        row = event(start + i)
        row["properties"] = orjson.dumps(props).decode()
        rows.append(row)
    return rows


def _typed(properties: list[dict[str, Any]]) -> dict[str, list[Any]]:
    texts = pa.chunked_array([pa.array([json.dumps(p) for p in properties])])  # json: an int past 64 bits
    return {name: values.to_pylist() for name, values in typed_values(texts, ALL).items()}


def test_values_of_the_planned_json_type_and_null_otherwise() -> None:
    clean: list[dict[str, Any]] = [{"revenue": 1.5, "items": 2, "coupon": "A", "gift": True, "nested": {"x": [1]}}, {"revenue": 3},
             {}, {"revenue": None, "items": None}]
    assert _typed(clean) == {"p_revenue": [1.5, 3.0, None, None], "p_items": [2, None, None, None],
                             "p_coupon": ["A", None, None, None], "p_gift": [True, None, None, None]}
    # Another JSON type than planned (a tag-mode event, a source without a plan): the per-event path, same rule.
    mixed: list[dict[str, Any]] = clean + [{"revenue": "12", "items": 2.5, "coupon": 7, "gift": 1}, {"items": True, "revenue": False},
                     {"items": 2**70}]
    got = _typed(mixed)
    assert got["p_revenue"] == [1.5, 3.0, None, None, None, None, None]
    assert got["p_items"] == [2, None, None, None, None, None, None]
    assert got["p_coupon"] == ["A", None, None, None, None, None, None]
    assert got["p_gift"] == [True, None, None, None, None, None, None]


def test_a_large_batch_with_a_few_odd_values_keeps_every_other_value() -> None:
    properties: list[dict[str, Any]] = [{"revenue": i, "items": i} for i in range(3000)]
    properties[1234] = {"revenue": "1234", "items": 1234.5}
    properties[2999] = {"revenue": [1], "items": {"n": 1}}
    got = _typed(properties)
    expected = [None if i in (1234, 2999) else i for i in range(3000)]
    assert got["p_items"] == expected
    assert got["p_revenue"] == [None if v is None else float(v) for v in expected]


def _sink(tmp_path: Path, plans_dir: Path | None) -> ParquetSink:
    sink = ParquetSink(LocalStore(tmp_path / "archive"))
    if plans_dir is not None:
        columns = TypedColumns()
        columns(load_directory(plans_dir))
        sink.typed_columns = columns.current
    return sink


def _write(sink: ParquetSink, rows: list[dict[str, Any]], first: int) -> None:
    b = batch(rows, first=first)
    sink.begin(b)
    sink.write(b)


def test_old_and_new_files_read_together_with_the_typed_sum_equal_to_the_json_sum(tmp_path: Path) -> None:
    plans_dir = tmp_path / "plans"
    plans_dir.mkdir()
    write(plans_dir, "source_a.yaml", plan())
    revenues: list[Any] = [10.5, 2, None, "7", 0.25]
    props = [{"order_id": f"o{i}", "revenue": r} for i, r in enumerate(revenues)] + [{"order_id": "none"}]
    _write(_sink(tmp_path, None), _events(props, 1), 0)  # before the plans: no p_ columns
    _write(_sink(tmp_path, plans_dir), _events(props, 100), 100)
    files = sorted(str(p) for p in (tmp_path / "archive").rglob("*.parquet"))
    assert len(files) == 2
    old, new = (pq.read_schema(f) for f in files)
    assert "p_revenue" not in old.names and new.field("p_revenue").type == pa.float64()
    together = read_together(files)
    assert together.num_rows == 12
    typed = pc.sum(together.column("p_revenue")).as_py()
    extracted = sum(v for text in together.column("properties").to_pylist()
                    if isinstance(v := json.loads(text).get("revenue"), (int, float)) and not isinstance(v, bool))
    assert typed == pytest.approx(extracted) == pytest.approx(2 * 12.75)
    assert together.column("p_order_id").null_count == 0


def test_a_type_that_changed_between_files_keeps_the_first_files_type() -> None:
    first = with_typed_columns(_table([{"items": 3}]), [ITEMS])
    widened = with_typed_columns(_table([{"items": 2.5}]), [TypedColumn("p_items", "items", Scalar.NUMBER)])
    text = with_typed_columns(_table([{"items": "x"}]), [TypedColumn("p_items", "items", Scalar.STRING)])
    assert concat_unified([first, widened, text]).column("p_items").to_pylist() == [3, None, None]
    assert concat_unified([widened, first]).column("p_items").to_pylist() == [2.5, 3.0]


def _table(properties: list[dict[str, Any]]) -> pa.Table:
    from tests.consumers.loader.events import table

    return table(_events(properties, 1))


def test_a_plan_that_drops_or_retypes_a_property_keeps_the_archivers_column(tmp_path: Path) -> None:
    columns = TypedColumns()
    (tmp_path / "v1").mkdir()
    write(tmp_path / "v1", "a.yaml", plan())
    columns(load_directory(tmp_path / "v1"))
    (tmp_path / "v2").mkdir()
    write(tmp_path / "v2", "a.yaml", plan(order_completed={"properties": {
        "type": "object", "properties": {"revenue": {"type": "string"}, "coupon": {"type": "string"}}}}))
    columns(load_directory(tmp_path / "v2"))
    assert [(c.name, c.scalar) for c in columns.current()] == [
        ("p_order_id", Scalar.STRING), ("p_revenue", Scalar.NUMBER), ("p_currency", Scalar.STRING),
        ("p_coupon", Scalar.STRING)]


def test_the_archiver_follows_the_plans_of_its_settings(tmp_path: Path) -> None:
    from consumers.archiver.settings import ArchiverSettings
    from consumers.archiver.typed import watch_plans
    from evpipe.settings import ConfigError

    assert watch_plans(ArchiverSettings())[0] is None  # no TRACKING_PLANS: no columns, nothing watched
    write(tmp_path, "a.yaml", plan())
    watcher, columns = watch_plans(ArchiverSettings(tracking_plans=str(tmp_path)))
    assert watcher is not None and [c.name for c in columns.current()] == ["p_order_id", "p_revenue", "p_currency"]
    write(tmp_path, "b.yaml", plan(source="b", order_completed={"properties": {
        "type": "object", "properties": {"gift": {"type": "boolean"}}}}))
    assert watcher.poll() and columns.current()[-1] == GIFT
    write(tmp_path, "c.yaml", "source: [")
    with pytest.raises(ConfigError, match="TRACKING_PLANS: c.yaml"):
        watch_plans(ArchiverSettings(tracking_plans=str(tmp_path)))
