"""Rebuilding ClickHouse from the Parquet archive: `evpipe replay archive --into clickhouse` vs a raw baseline.

1. an archive of N events over four hours is written with the archiver's own
   sink (Parquet, zstd, 50,000-event batches, one file per batch and hour);
2. raw baseline: every file read with pyarrow and inserted with
   ``client.insert_arrow`` into an empty plain events table (no window filter,
   no dedup);
3. the replay path: :func:`consumers.replay.archive.backfill` lists the hour
   directories, reads in chunks, filters on received_at and inserts through
   the loader's dedup path into a fresh database (tables created first, not
   timed);
4. the same backfill again (every event already loaded: all skipped as
   duplicates), reported as an extra row.

One file is inserted into a scratch table first, untimed, so neither path
pays the engine's first-use costs. Steps 2-4 run three times, alternating,
each into fresh databases; the result is the medians.

This is the measured rebuild rate docs/operations.md (disaster recovery) and docs/performance.md cite.
ClickHouse: CLICKHOUSE_URL if set, else a throw-away embedded engine.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.report import write_result

BATCH_ROWS = 50_000
HOURS = 4


def _archive(root: Path, topic: str, n: int) -> tuple[Any, dt.datetime]:
    """Write n events (spread over HOURS hours) with the archiver's sink; returns (store, first hour)."""
    import orjson

    from consumers.archiver.sink import ParquetSink
    from consumers.archiver.store import LocalStore
    from consumers.runtime.sink import Batch
    from schemas.arrow import parse_ndjson
    from schemas.envelope import Enrichment, EventValidator, format_timestamp

    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=HOURS)
    validator = EventValidator()
    store = LocalStore(root)
    sink = ParquetSink(store)
    step = dt.timedelta(hours=HOURS) / n
    for first in range(0, n, BATCH_ROWS):
        values = []
        for i in range(first, min(n, first + BATCH_ROWS)):
            enrichment = Enrichment("bench", format_timestamp(start + i * step), ip="10.1.2.3", user_agent="bench/1")
            values.append(orjson.dumps(validator.normalize({
                "type": f"type_{i % 20}", "user_id": f"u{i % 5000}",
                "properties": {"path": f"/p/{i % 300}", "ms": i % 1000},
                "context": {"library": {"name": "bench", "version": "1"}},
            }, enrichment)))
        table = parse_ndjson(b"\n".join(values))
        sink.write(Batch(topic, first // BATCH_ROWS % 6, first, first + table.num_rows - 1, table, 0))
    return store, start


def _raw(client: Any, database: str, store: Any, files: list[Any]) -> float:
    import pyarrow.parquet as pq

    from schemas.clickhouse import clickhouse_create_table

    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(clickhouse_create_table(f"`{database}`.raw_events"))
    started = time.perf_counter()
    for file in files:
        client.insert_arrow(f"`{database}`.raw_events", pq.read_table(store.root / file.key))
    return time.perf_counter() - started


def _count(client: Any, table: str) -> int:
    return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])


def run(quick: bool) -> dict[str, Any]:
    from consumers.replay.archive import Window, list_files
    from evpipe.clickhouse import connect

    n = 50_000 if quick else 200_000
    rounds = 3
    topic, tag = "events", uuid.uuid4().hex[:8]
    times: dict[str, list[float]] = {"raw": [], "replay": [], "again": []}
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        workdir = Path(tmp)
        print(f"writing an archive of {n:,} events over {HOURS} hours ...", flush=True)
        store, start = _archive(workdir / "archive", topic, n)
        window = Window(start, start + dt.timedelta(hours=HOURS))
        files = list_files(store, topic, window)
        server = None
        if not os.environ.get("CLICKHOUSE_URL"):  # a private `evpipe clickhouse serve`
            from evpipe.local.clickhouse import LocalClickHouse
            from evpipe.local.daemon import free_port

            server = LocalClickHouse(workdir / "state", free_port())
            server.ensure()
        try:
            client = connect(os.environ.get("CLICKHOUSE_URL") or (server.url if server else ""))
            warmup = f"bench_replay_{tag}_warmup"
            _raw(client, warmup, store, files[:1])  # first-use costs of the engine, timed by neither
            client.command(f"DROP DATABASE IF EXISTS `{warmup}`")
            # Alternate the paths, each into a fresh database, and keep medians: single runs are sub-second.
            for i in range(rounds):
                print(f"round {i + 1}/{rounds}: raw insert, replay, replay again ...", flush=True)
                _round(client, f"bench_replay_{tag}_{i}", store, files, topic, window, n, times)
        finally:
            if server is not None:
                server.stop()
    raw_s, first_s, again_s = (statistics.median(times[k]) for k in ("raw", "replay", "again"))
    rows = [
        {"path": label, "events": n, "median_s": round(median, 3), "events_per_s": round(n / median),
         "range_events_per_s": f"{round(n / max(times[key])):,}-{round(n / min(times[key])):,}"}
        for label, key, median in (("raw: pyarrow read + insert_arrow", "raw", raw_s),
                                   ("replay archive --into clickhouse", "replay", first_s),
                                   ("same backfill again (all duplicates)", "again", again_s))
    ]
    result = {"events_per_s": round(n / first_s), "baseline_events_per_s": round(n / raw_s),
              "ratio": round(raw_s / first_s, 3), "events": n, "files": len(files), "rounds": rounds,
              "rerun_events_per_s": round(n / again_s), "quick": quick}
    write_result("replay", result, rows)
    return result


def _round(client: Any, database: str, store: Any, files: list[Any], topic: str, window: Any, n: int,
           times: dict[str, list[float]]) -> None:
    try:
        times["raw"].append(_raw(client, f"{database}_raw", store, files))
        if _count(client, f"`{database}_raw`.raw_events") != n:
            raise RuntimeError("raw baseline did not store every event")
        seconds, first = _timed_backfill(client, database, store, topic, window)
        times["replay"].append(seconds)
        if (first.written, _count(client, f"`{database}`.events")) != (n, n):
            raise RuntimeError(f"replay wrote {first.written}, expected {n}")
        seconds, again = _timed_backfill(client, database, store, topic, window)
        times["again"].append(seconds)
        if again.duplicates != n or _count(client, f"`{database}`.events") != n:
            raise RuntimeError("the second backfill changed the table")
    finally:
        for db in (database, f"{database}_raw"):
            client.command(f"DROP DATABASE IF EXISTS `{db}`")


def _timed_backfill(client: Any, database: str, store: Any, topic: str, window: Any) -> tuple[float, Any]:
    from consumers.replay.archive import ClickHouseWriter, backfill

    writer = ClickHouseWriter(client, database, 30)  # creates the tables: not part of the rebuild rate
    started = time.perf_counter()
    summary = backfill(store, topic, window, writer)
    return time.perf_counter() - started, summary
