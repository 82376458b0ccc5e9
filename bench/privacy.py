"""Deleting one user: ClickHouse and the Parquet archive, against rewriting every archive file.

1. ClickHouse: N events (10 M; quick 1 M) in the loader's tables, one user's
   250 spread over the whole table, as a user's events are (user_id is
   not in the sorting key). Timed: `ClickHouseEraser.erase`, i.e. read the
   rollup counts, lightweight DELETE, APPLY DELETED MASK on the touched months,
   rollup correction, the check that 0 remain.
2. Archive: the same number of events in F files (300; quick 100) written by
   the archiver's sink (so each has its user index), the user in 5 of them.
   Timed: `ArchiveEraser.erase` (find the files by their index, rewrite those,
   check), against the baseline of rewriting every file without the user (what
   an archive with no index, or a scan of the data, has to do), on a copy.

ClickHouse: CLICKHOUSE_URL if set, else a private `evpipe clickhouse serve`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.report import write_result

TARGET = "target-user"
USERS = 100_000
START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _ch_events(client: Any, database: str, n: int, every: int) -> None:
    from consumers.loader.tables import migrate

    migrate(client, database)
    client.command(
        f"INSERT INTO `{database}`.events (event_id, type, source_id, user_id, received_at, properties, context, "
        "schema_version) SELECT generateUUIDv4(), concat('t', toString(number % 20)), 'web', "
        f"if(number % {every} = 7, '{TARGET}', concat('u', toString(number % {USERS}))), "
        f"toDateTime64('{START:%Y-%m-%d %H:%M:%S}', 3, 'UTC') + toIntervalMillisecond(number * 500), '{{}}', '{{}}', 1 "
        f"FROM numbers({n})", settings={"max_insert_block_size": 1_000_000})


def _bench_clickhouse(client: Any, database: str, n: int) -> dict[str, Any]:
    from consumers.privacy.clickhouse import ClickHouseEraser
    from evpipe.privacy.request import PrivacyRequest
    from evpipe.privacy.subjects import Subject

    every = n // 250
    print(f"clickhouse: inserting {n:,} events ...", flush=True)
    _ch_events(client, database, n, every)
    parts = int(client.query(f"SELECT count() FROM system.parts WHERE database = '{database}' AND "
                             "table = 'events' AND active").result_rows[0][0])
    request = PrivacyRequest.new("delete", Subject("user_id", TARGET), "bench")
    started = time.perf_counter()
    ClickHouseEraser(client, database).erase(request, lambda: None)
    seconds = time.perf_counter() - started
    step = request.step("clickhouse")
    rollup = int(client.query(f"SELECT sum(events) FROM `{database}`.events_per_minute").result_rows[0][0])
    assert step["remaining"] == 0 and rollup == n - step["rows_found"], (step, rollup)
    return {"events": n, "rows_deleted": step["rows_found"], "parts": parts, "seconds": round(seconds, 2)}


def _file_table(index: int, rows: int, holds_target: bool) -> pa.Table:
    first = index * rows
    users = [f"u{(first + i) * 7919 % USERS}" for i in range(rows)]
    if holds_target:
        for i in range(0, 40 * 97, 97):
            users[i % rows] = TARGET
    received = pa.array([int((START + dt.timedelta(hours=index)).timestamp() * 1000) + i for i in range(rows)],
                        pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    from schemas.arrow import arrow_schema

    schema = arrow_schema()
    columns = {
        "event_id": pa.array([str(uuid.UUID(int=first + i)) for i in range(rows)]),
        "type": pa.array([f"t{i % 20}" for i in range(rows)]),
        "source_id": pa.array(["web"] * rows), "user_id": pa.array(users),
        "anonymous_id": pa.nulls(rows, pa.string()), "occurred_at": pa.nulls(rows, pa.timestamp("ms", tz="UTC")),
        "received_at": received, "properties": pa.array([orjson.dumps({"i": i}).decode() for i in range(rows)]),
        "context": pa.array(['{"ip":"203.0.113.7"}'] * rows), "schema_version": pa.array([1] * rows, pa.int16()),
    }
    return pa.table(columns).cast(schema)


def _write_archive(root: Path, files: int, rows: int, holding: set[int]) -> None:
    from consumers.archiver.sink import ParquetSink
    from consumers.archiver.store import LocalStore
    from consumers.runtime.sink import Batch

    sink = ParquetSink(LocalStore(root), dedup_window_s=0)
    for f in range(files):
        table = _file_table(f, rows, f in holding)
        batch = Batch("events", f % 6, f * rows, f * rows + rows - 1, table, 0)
        sink.begin(batch)
        sink.write(batch)


def _rewrite_all(root: Path) -> tuple[float, int]:
    """The baseline: every data file read, filtered, written back (no index)."""
    from consumers.archiver.store import LocalStore
    from consumers.privacy.archive import ArchiveEraser

    store = LocalStore(root)
    eraser = ArchiveEraser(store, "events")
    keys = [k for k in store.list("topic=events/") if k.endswith(".parquet")]
    started = time.perf_counter()
    for key in keys:
        table = pq.read_table(store.open(key))
        keep = pc.invert(pc.fill_null(pc.equal(table.column("user_id"), TARGET), False))
        store.put(key, eraser.encode(table.filter(keep), table.schema))
    return time.perf_counter() - started, len(keys)


def _bench_archive(workdir: Path, n: int, files: int) -> dict[str, Any]:
    from consumers.archiver.store import LocalStore
    from consumers.privacy.archive import ArchiveEraser
    from evpipe.privacy.request import PrivacyRequest
    from evpipe.privacy.subjects import Subject

    rows = n // files
    holding = {files * k // 10 for k in (1, 3, 5, 7, 9)}
    root, copy = workdir / "archive", workdir / "archive-copy"
    print(f"archive: writing {files} files of {rows:,} events ...", flush=True)
    _write_archive(root, files, rows, holding)
    shutil.copytree(root, copy)
    print("archive: baseline, rewriting every file ...", flush=True)
    all_s, all_files = _rewrite_all(copy)
    request = PrivacyRequest.new("delete", Subject("user_id", TARGET), "bench")
    started = time.perf_counter()
    ArchiveEraser(LocalStore(root), "events").erase(request, lambda: None)
    seconds = time.perf_counter() - started
    step = request.step("archive")
    assert step["remaining"] == 0 and len(step["files_rewritten"]) == len(holding), step
    return {"events": rows * files, "files": files, "files_with_user": len(holding),
            "files_rewritten": len(step["files_rewritten"]), "rows_removed": step["rows_removed"],
            "seconds": round(seconds, 2), "rewrite_all_seconds": round(all_s, 2), "rewrite_all_files": all_files}


def run(quick: bool) -> dict[str, Any]:
    from evpipe.clickhouse import connect

    n, files = (1_000_000, 100) if quick else (10_000_000, 300)
    database = f"bench_privacy_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-privacy-") as tmp:
        workdir = Path(tmp)
        server = None
        if not os.environ.get("CLICKHOUSE_URL"):
            from evpipe.local.clickhouse import LocalClickHouse
            from evpipe.local.daemon import free_port

            server = LocalClickHouse(workdir / "state", free_port())
            server.ensure()
        client = connect(os.environ.get("CLICKHOUSE_URL") or (server.url if server else ""))
        try:
            ch = _bench_clickhouse(client, database, n)
            archive = _bench_archive(workdir, n, files)
        finally:
            client.command(f"DROP DATABASE IF EXISTS `{database}`")
            if server is not None:
                server.stop()
    rows = [
        {"store": "clickhouse", "events": ch["events"], "user rows": ch["rows_deleted"], "parts / files": ch["parts"],
         "rewritten": "", "seconds": ch["seconds"], "every file rewritten (s)": ""},
        {"store": "archive", "events": archive["events"], "user rows": archive["rows_removed"],
         "parts / files": archive["files"], "rewritten": archive["files_rewritten"], "seconds": archive["seconds"],
         "every file rewritten (s)": archive["rewrite_all_seconds"]},
    ]
    result = {"quick": quick, "clickhouse": ch, "archive": archive,
              "ratio": round(archive["rewrite_all_seconds"] / max(archive["seconds"], 1e-6), 1)}
    write_result("privacy", result, rows, required=("ratio",))
    return result
