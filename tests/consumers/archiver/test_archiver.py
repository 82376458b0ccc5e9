"""The archiver end to end against the broker, writing to a local directory."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from consumers.archiver.layout import data_key
from consumers.archiver.sink import ParquetSink, split_by_hour
from consumers.archiver.store import LocalStore, open_store
from consumers.runtime import Batch, ConsumerLoop
from schemas.arrow import arrow_schema, parse_ndjson
from schemas.fields import FIELDS, Field, Kind, Origin
from tests.consumers.archiver.helpers import archiver_env, assert_placement, read_archive, settings, with_resends
from tests.consumers.runtime.events import create_topic, events, produce, read_all
from tests.consumers.runtime.loops import running, wait_for
from tests.providers import Service, unique_name


def test_archives_every_event_once_in_its_hour(kafka: Service, topic: str, tmp_path: Path) -> None:
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, 3)
    create_topic(kafka.url, dlq, 1)
    generated = list(events(6000, hours=5))
    messages: list[tuple[bytes | None, bytes]] = [(k, v) for k, v, _, _ in generated]
    messages.insert(2500, (b"src:u1", b"\x00 not json"))
    produce(kafka.url, topic, messages)
    env = archiver_env(kafka.url, topic, dlq, str(tmp_path), unique_name("g"))
    loop = ConsumerLoop(settings(env), ParquetSink(LocalStore(tmp_path)), env["ARCHIVER_GROUP"], [topic])
    with running(loop):
        wait_for(lambda: loop.stats.rows == 6000 and loop.stats.dead_letters == 1)
    table = read_archive(tmp_path)
    ids = table.column("event_id").to_pylist()
    assert len(ids) == 6000 and set(ids) == {e for _, _, e, _ in generated}
    assert set(table.column("topic").to_pylist()) == {topic}
    assert sorted(set(table.column("hour").to_pylist())) == ["10", "11", "12", "13", "14"]
    assert_placement(table)
    # Manifests and names: one manifest per batch, files named by partition and offset range.
    assert list(tmp_path.glob("_manifests/*/*/*.json"))
    names = [p.name for p in tmp_path.glob("topic=*/dt=*/hour=*/*.parquet")]
    assert names and all(n.startswith(f"{topic}-") for n in names)
    dead = read_all(kafka.url, dlq, 1)
    assert len(dead) == 1 and dead[0].value() == b"\x00 not json"
    assert dict(dead[0].headers())["topic"] == topic.encode()


def test_client_resends_are_archived_once(kafka: Service, topic: str, tmp_path: Path) -> None:
    """Resent copies (same key and event_id, later received_at) in the same batch and in later ones."""
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, 3)
    create_topic(kafka.url, dlq, 1)
    generated = list(events(6000, hours=2))
    messages = with_resends(generated, every=10)
    produce(kafka.url, topic, messages)
    env = archiver_env(kafka.url, topic, dlq, str(tmp_path), unique_name("g"), CONSUMER_BATCH_MAX_MESSAGES="500")
    loop = ConsumerLoop(settings(env), ParquetSink(LocalStore(tmp_path)), env["ARCHIVER_GROUP"], [topic])
    with running(loop):
        wait_for(lambda: loop.stats.rows == len(messages))
    ids = read_archive(tmp_path).column("event_id").to_pylist()
    assert len(messages) > 7000
    assert len(ids) == len(set(ids)) == 6000 and set(ids) == {e for _, _, e, _ in generated}


def _batch(table: pa.Table, first: int) -> Batch:
    return Batch("ev", 0, first, first + table.num_rows - 1, table, 0)


def test_rewriting_a_batch_replaces_its_files(tmp_path: Path) -> None:
    sink = ParquetSink(LocalStore(tmp_path))
    table = parse_ndjson(b"\n".join(v for _, v, _, _ in events(100, hours=2)))
    batch = _batch(table, 500)
    assert sink.pending_end("ev", 0, 500) is None
    sink.begin(batch)
    sink.write(batch)
    sink.write(batch)  # a retry after a crash between write and commit
    assert sink.pending_end("ev", 0, 500) == 599
    assert len(list(tmp_path.rglob("*.parquet"))) == 2  # two hours, one file each
    assert read_archive(tmp_path).num_rows == 100
    hour, _ = split_by_hour(table)[0]
    assert (tmp_path / data_key("ev", 0, 500, 599, hour)).exists()


def test_added_optional_field_reads_with_old_files(tmp_path: Path) -> None:
    sink = ParquetSink(LocalStore(tmp_path))
    old = parse_ndjson(b"\n".join(v for _, v, _, _ in events(10)))
    sink.write(_batch(old, 0))
    extra = Field("page_url", Kind.TEXT, False, Origin.CLIENT, "URL of the page.")
    fields = (*FIELDS, extra)
    values = [v[:-1] + b',"page_url":"https://x"}' for _, v, _, _ in events(10)]
    new = parse_ndjson(b"\n".join(values), fields)
    sink.write(_batch(new, 10))
    schema = arrow_schema(fields)
    table = ds.dataset(str(tmp_path), format="parquet", schema=schema).to_table()
    assert table.num_rows == 20
    urls = table.column("page_url").to_pylist()
    assert urls.count(None) == 10 and urls.count("https://x") == 10


def test_archive_uri_forms(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
    with pytest.raises(ValueError, match="unsupported scheme"):
        open_store("ftp://x/y")
    with pytest.raises(ValueError, match="no bucket"):
        open_store("s3:///prefix")
