"""ClickHouseSink against the real engine: exactly-once, client retries, rejected rows, ledger, migrations."""

from __future__ import annotations

import dataclasses
import threading
import uuid

import orjson
import pyarrow as pa
import pytest

from consumers.loader.sink import ClickHouseSink, UndeliverableRows
from consumers.loader.tables import applied, existing_columns, migrate
from evpipe.clickhouse import connect
from schemas.fields import FIELDS, Field, Kind, Origin
from tests.consumers.loader.events import batch, counts, event
from tests.providers import Service


@pytest.fixture
def client(clickhouse: Service):  # type: ignore[no-untyped-def]
    return connect(clickhouse.url)


@pytest.fixture
def sink(client, ch_database: str):  # type: ignore[no-untyped-def]
    migrate(client, ch_database)
    dead: list[tuple[str, pa.Table, list[int], str]] = []
    s = ClickHouseSink(client, ch_database,
                       dead_letter=lambda b, rows, offsets, err: dead.append((b.identity, rows, offsets, err)))
    s.dead = dead  # type: ignore[attr-defined]
    return s


def test_provider_is_real(clickhouse: Service) -> None:
    assert clickhouse.provider in ("env", "local:clickhouse-serve") or clickhouse.provider.startswith("testcontainers:")


def test_migrate_is_idempotent_and_recorded(client, ch_database: str) -> None:  # type: ignore[no-untyped-def]
    first = migrate(client, ch_database)
    assert "create events" in first and "create events_per_minute_mv" in first
    assert migrate(client, ch_database) == []
    assert set(first) <= applied(client, ch_database)
    engine = client.query(
        "SELECT engine, partition_key, sorting_key FROM system.tables WHERE database = {d:String} AND name = 'events'",
        parameters={"d": ch_database}).result_rows[0]
    assert engine == ("MergeTree", "toYYYYMM(received_at)", "source_id, type, received_at, event_id")
    types = dict(client.query(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = 'events'",
        parameters={"d": ch_database}).result_rows)
    assert types["event_id"] == "UUID" and types["type"] == "LowCardinality(String)"


def test_batch_written_twice_counts_once(sink: ClickHouseSink, client) -> None:  # type: ignore[no-untyped-def]
    b = batch([event(i) for i in range(1000)])
    sink.begin(b)
    sink.write(b)
    sink.write(b)  # a replay after a crash between insert and commit
    assert counts(client, sink.tables.database) == (1000, 1000)
    rollup = client.query(f"SELECT sum(events) FROM {sink.tables.rollup}").result_rows[0][0]
    assert rollup == 1000


def test_token_drops_a_replay_when_the_crash_came_between_events_and_event_ids(
    sink: ClickHouseSink, client  # type: ignore[no-untyped-def]
) -> None:
    b = batch([event(i) for i in range(500)], first=7000)
    sink.write(b)
    # The state a crash right after the events insert leaves: the ids were never recorded.
    client.command(f"TRUNCATE TABLE {sink.tables.event_ids}")
    sink.write(b)  # the replay passes the anti-join; insert_deduplication_token must drop it
    assert counts(client, sink.tables.database) == (500, 500)
    assert client.query(f"SELECT sum(events) FROM {sink.tables.rollup}").result_rows[0][0] == 500
    assert client.query(f"SELECT uniqExact(event_id) FROM {sink.tables.event_ids}").result_rows[0][0] == 500


def test_client_retry_with_new_offset_counts_once(sink: ClickHouseSink, client) -> None:  # type: ignore[no-untyped-def]
    first = [event(i) for i in range(100)]
    retried = [dict(e, received_at=e["received_at"]) for e in first[:10]]  # same ids, later batch
    inside = [event(200), event(201)]
    inside.append(dict(inside[0]))  # the same id twice within one batch
    sink.write(batch(first, first=0))
    sink.write(batch(retried + inside, first=100))
    assert counts(client, sink.tables.database) == (102, 102)
    rollup = client.query(f"SELECT sum(events) FROM {sink.tables.rollup}").result_rows[0][0]
    assert rollup == 102


def test_pending_end_reads_the_begun_range(sink: ClickHouseSink) -> None:
    b = batch([event(i) for i in range(5)], topic="t1", partition=3, first=40)
    assert sink.pending_end("t1", 3, 40) is None
    sink.begin(b)
    assert sink.pending_end("t1", 3, 40) == 44
    assert sink.pending_end("t1", 2, 40) is None and sink.pending_end("t1", 3, 41) is None


def test_rejected_rows_go_to_dead_letter_and_the_rest_is_inserted(
    sink: ClickHouseSink, client  # type: ignore[no-untyped-def]
) -> None:
    events = [event(i) for i in range(300)]
    events[7]["event_id"] = "not-a-uuid"
    events[250]["event_id"] = "also-bad"
    # Offsets with a gap (a dead-lettered message at 1100): each rejected row keeps its own offset.
    offsets = [1000 + i if i < 100 else 1001 + i for i in range(300)]
    b = dataclasses.replace(batch(events, first=1000), last_offset=1300, offsets=offsets)
    sink.write(b)
    assert counts(client, sink.tables.database) == (298, 298)
    dead = sink.dead  # type: ignore[attr-defined]
    rejected = sorted((offset, row["event_id"]) for _, rows, row_offsets, _ in dead
                      for offset, row in zip(row_offsets, rows.to_pylist(), strict=True))
    assert rejected == [(1007, "not-a-uuid"), (1251, "also-bad")]
    assert all(identity == b.identity and "UUID" in error for identity, _, _, error in dead)


def test_rejected_rows_without_dead_letter_fail_the_batch(client, ch_database: str) -> None:  # type: ignore[no-untyped-def]
    migrate(client, ch_database)
    sink = ClickHouseSink(client, ch_database)
    events = [event(i) for i in range(10)]
    events[3]["event_id"] = "bad"
    with pytest.raises(UndeliverableRows, match="no dead-letter"):
        sink.write(batch(events))
    assert counts(client, ch_database) == (0, 0)  # nothing half-written: the runtime retries the batch


NEW_FIELD = Field("campaign", Kind.TEXT, False, Origin.CLIENT, "Marketing campaign.", max_length=200)


def test_live_migration_adds_a_column_while_old_writers_insert(
    client, ch_database: str, clickhouse: Service  # type: ignore[no-untyped-def]
) -> None:
    migrate(client, ch_database)
    old = ClickHouseSink(connect(clickhouse.url), ch_database)  # its own connection: it runs in a thread
    errors: list[BaseException] = []

    def keep_writing() -> None:
        try:
            for n in range(20):
                old.write(batch([event(n * 100 + i) for i in range(100)], first=n * 100))
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    grown = FIELDS + (NEW_FIELD,)
    assert migrate(client, ch_database, grown) == ["events add column campaign"]
    new = ClickHouseSink(client, ch_database, grown)
    with_campaign = [dict(event(10_000 + i), campaign="spring") for i in range(50)]
    new.write(dataclasses.replace(batch(with_campaign, first=5000), table=_with_campaign(with_campaign)))
    writer.join()
    assert not errors
    assert "campaign" in existing_columns(client, ch_database, "events")
    assert counts(client, ch_database) == (2050, 2050)
    tagged = client.query(f"SELECT count() FROM `{ch_database}`.events WHERE campaign = 'spring'").result_rows[0][0]
    assert tagged == 50
    assert migrate(client, ch_database, grown) == []


def _with_campaign(events: list[dict]) -> pa.Table:  # type: ignore[type-arg]
    import orjson

    from schemas.arrow import parse_ndjson

    return parse_ndjson(b"\n".join(orjson.dumps(e) for e in events), FIELDS + (NEW_FIELD,))


def test_the_write_path_leaves_no_table_on_the_server(sink: ClickHouseSink, client) -> None:  # type: ignore[no-untyped-def]
    """Nothing per loader or per session lives on the server: any number of loaders can share it."""
    events = [event(i) for i in range(60)]
    sink.write(batch(events[:50]))
    sink.write(batch(events[40:], first=50))  # ten of them again: the dedup probe's path
    names = {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = {d:String}",
                                            parameters={"d": sink.tables.database}).result_rows}
    assert names == {"events", "event_ids", "events_per_minute", "events_per_minute_mv", "loader_batches",
                     "schema_migrations", "plan_violations_per_hour"}
    assert counts(client, sink.tables.database) == (60, 60)


def test_ids_are_uuid_typed(sink: ClickHouseSink, client) -> None:  # type: ignore[no-untyped-def]
    wanted = str(uuid.uuid4())
    sink.write(batch([event(1, event_id=wanted)]))
    got = client.query(f"SELECT event_id FROM {sink.tables.events}").result_rows[0][0]
    assert got == uuid.UUID(wanted)


def test_fresh_batches_go_in_whole_and_retries_without_their_known_rows(
    sink: ClickHouseSink, client, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    inserted: list[int] = []  # rows of each events insert
    insert = sink.client.insert_arrow

    def counting(table: str, rows: pa.Table, **kwargs: object) -> object:
        if table == sink.tables.events:
            inserted.append(rows.num_rows)
        return insert(table, rows, **kwargs)

    monkeypatch.setattr(sink.client, "insert_arrow", counting)
    first = [event(i) for i in range(100)]
    sink.write(batch(first, first=0))
    sink.write(batch([event(i) for i in range(100, 200)], first=100))
    sink.write(batch(first[:5] + [event(300)], first=200))  # a client retry of five known ids
    repeated = [event(400), event(401)]
    sink.write(batch(repeated + [dict(repeated[0])], first=300))  # an id twice in one batch
    sink.write(batch(first[:3], first=400))  # nothing new: no insert at all
    assert inserted == [100, 100, 1, 2]
    assert counts(client, sink.tables.database) == (203, 203)


def test_dead_letter_rows_carry_each_rows_own_offset() -> None:
    from consumers.loader.deadletter import DeadLetterRows
    from consumers.runtime.deadletter import DeadLetters
    from consumers.runtime.parse import Poison

    sent: list[tuple[str, int, list[Poison]]] = []

    class Capture(DeadLetters):
        def send(self, origin_topic: str, partition: int, poison: list[Poison], timeout: float = 30.0) -> None:
            sent.append((origin_topic, partition, poison))

    rows = [event(i) for i in range(3)]
    b = batch(rows, topic="events", partition=4, first=70)
    DeadLetterRows(Capture({}, "events.dlq"))(b, b.table, [70, 75, 79], "Cannot parse UUID")
    [(topic, partition, poison)] = sent
    assert (topic, partition) == ("events", 4)
    assert [p.offset for p in poison] == [70, 75, 79]
    assert [orjson.loads(p.value)["event_id"] for p in poison] == [r["event_id"] for r in rows]
    assert all(p.error.startswith(f"rejected by ClickHouse (batch {b.identity})") for p in poison)
