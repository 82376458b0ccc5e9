"""`evpipe replay`: move a stopped consumer group's offsets, or backfill from the archive."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field

from evpipe.privacy.settings import PrivacySettings
from evpipe.settings import ArchiveSettings, ClickHouseSettings, KafkaSettings, StateSettings, describe, load

if TYPE_CHECKING:
    from consumers.archiver.store import Store
    from consumers.replay.archive import Progress, Summary, Writer


class ArchiveReplaySettings(StateSettings, ArchiveSettings, ClickHouseSettings, KafkaSettings, PrivacySettings):
    """Environment of `evpipe replay archive`: where the archive is, and both possible targets."""

    loader_dedup_days: int = Field(
        30, ge=1, description="The loader's event_id window (used when the backfill creates missing tables)."
    )
    replay_batch_rows: int = Field(50_000, ge=1, description="Rows read and written per chunk (bounds memory).")
    replay_connect_wait_s: float = Field(
        10.0, ge=0, description="How long to wait for ClickHouse to answer at CLICKHOUSE_URL (--into clickhouse)."
    )


ARCHIVE_DESCRIPTION = """\
Backfill the window [--from, --to) of received_at from the Parquet archive
(ARCHIVE_URI: a directory or s3://bucket/prefix). Only the hour directories the
window overlaps are listed; files are read one by one in chunks of
REPLAY_BATCH_ROWS rows.

--into clickhouse: insert through the loader's insert path. Events whose
event_id is already loaded are skipped (counted as duplicates), so running the
same backfill twice adds nothing. Missing loader tables are created.

--into kafka: re-produce every event as its wire-format message (same key as
the gateway) to the replay topic, acknowledged by all in-sync replicas. The
loader consumes it when LOADER_CONSUME_REPLAY=true and deduplicates by event_id.

Exit status 1 if any event failed (the summary says how many and why)."""


def _iso(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r} (e.g. 2026-11-21T10:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _partitions(value: str) -> list[int]:
    try:
        return [int(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated partition numbers, got {value!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = subparsers.add_parser("replay", help="reset consumer-group offsets or backfill from the archive")
    actions = replay.add_subparsers(dest="action", metavar="ACTION", required=True)
    offsets = actions.add_parser(
        "offsets",
        help="reset a stopped consumer group's offsets (dry run unless --execute)",
        description="Reset a stopped consumer group's committed offsets on one topic. Without --execute it only "
        "prints the plan per partition. Refuses while the group has active members. Sinks are idempotent "
        "(archive file names and ClickHouse dedup tokens), so re-reading events does not duplicate them.",
        epilog=describe(KafkaSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    offsets.add_argument("--group", required=True, help="consumer group, e.g. evpipe-loader")
    offsets.add_argument("--topic", required=True, help="topic whose offsets move")
    where = offsets.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-datetime", type=_iso, metavar="ISO", help="first offset at or after this time")
    where.add_argument("--to-earliest", action="store_true", help="the oldest retained offset")
    where.add_argument("--to-latest", action="store_true", help="the end of the partition (skip the backlog)")
    where.add_argument("--shift-by", type=int, metavar="N", help="move by N (negative: re-read N messages)")
    offsets.add_argument("--partitions", type=_partitions, help="comma-separated partitions (default: all)")
    offsets.add_argument("--execute", action="store_true", help="apply the plan (default: dry run)")
    offsets.set_defaults(func=run_offsets)
    archive = actions.add_parser(
        "archive", help="backfill a time window from the Parquet archive into ClickHouse or the replay topic",
        description=ARCHIVE_DESCRIPTION, epilog=describe(ArchiveReplaySettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    archive.add_argument("--from", dest="start", type=_iso, required=True, metavar="ISO",
                         help="first received_at included, e.g. 2026-11-21T10:00:00Z")
    archive.add_argument("--to", dest="end", type=_iso, required=True, metavar="ISO",
                         help="received_at up to (not including) this time")
    archive.add_argument("--into", choices=("clickhouse", "kafka"), required=True, help="where the events go")
    archive.add_argument("--topic", help="replay topic for --into kafka (default: KAFKA_REPLAY_TOPIC)")
    archive.add_argument("--source-topic", help="archived topic to read (default: KAFKA_TOPIC)")
    archive.add_argument("--max-rate", type=_rate, metavar="EVENTS_PER_S",
                         help="write at most this many events per second on average (default: as fast as possible)")
    archive.add_argument("--dry-run", action="store_true", help="list and count the window's events, write nothing")
    archive.set_defaults(func=run_archive)


def run_offsets(args: argparse.Namespace) -> int:
    from consumers.replay.offsets import OffsetResetter, ReplayError, Target
    from evpipe.table import render_table

    settings = load(KafkaSettings)
    target = Target(to_datetime=args.to_datetime, to_earliest=args.to_earliest, to_latest=args.to_latest,
                    shift_by=args.shift_by)
    resetter = OffsetResetter(settings)
    try:
        resetter.ensure_group_stopped(args.group)
        plans = resetter.plan(args.group, args.topic, target, args.partitions)
        print(render_table([p.row() for p in plans]))
        if not args.execute:
            print("\ndry run: nothing changed; add --execute to apply")
            return 0
        resetter.execute(args.group, args.topic, plans)
    except ReplayError as exc:
        print(f"error: {exc}")
        return 1
    print(f"\nreset {len(plans)} partition(s) of {args.topic} for group {args.group}")
    return 0


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        rate = 0.0
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of events per second, got {value!r}")
    return rate


def run_archive(args: argparse.Namespace) -> int:
    from consumers.replay.archive import PacedWriter, Pacer, ReplayError, Window, backfill, list_files

    settings = load(ArchiveReplaySettings)
    try:
        window = Window(args.start, args.end)
        store = _open_store(settings)
        source = args.source_topic or settings.kafka_topic
        files = list_files(store, source, window)
        print(f"{len(files)} archive file(s) of {source} overlap {window.label()} in {store.uri}")
        writer = None if args.dry_run else _suppressing(settings, _writer(settings, args))
        if writer is not None and args.max_rate:
            writer = PacedWriter(writer, Pacer(args.max_rate))
        summary = _with_progress(lambda progress: backfill(store, source, window, writer, settings.replay_batch_rows,
                                                           progress, files), sum(f.size for f in files))
    except ReplayError as exc:
        print(f"error: {exc}")
        return 1
    for error in summary.errors[:20]:
        print(f"error: {error}")
    print(summary.line(args.dry_run))
    return 0 if summary.ok else 1


def _open_store(settings: ArchiveReplaySettings) -> Store:
    from consumers.archiver.store import open_store
    from evpipe.settings import ConfigError

    uri = settings.archive_uri or str(settings.evpipe_state_dir / "archive")
    try:
        return open_store(uri, settings.s3_endpoint_url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _writer(settings: ArchiveReplaySettings, args: argparse.Namespace) -> Writer:
    from consumers.replay.archive import ClickHouseWriter, KafkaWriter
    from evpipe.kafka import producer_config

    if args.into == "kafka":
        return KafkaWriter(producer_config(settings), args.topic or settings.kafka_replay_topic)
    from consumers.replay.archive import ReplayError
    from evpipe.clickhouse import ClickHouseUnreachable, connect_waiting

    try:
        client = connect_waiting(settings.clickhouse_url, settings.replay_connect_wait_s)
    except ClickHouseUnreachable as exc:
        raise ReplayError(str(exc)) from None
    return ClickHouseWriter(client, settings.clickhouse_database, settings.loader_dedup_days,
                            cluster=settings.clickhouse_cluster)


def _suppressing(settings: ArchiveReplaySettings, writer: Writer) -> Writer:
    """The writer behind the suppression list (stage 3's, in ClickHouse), unless PRIVACY_STORE=off."""
    from consumers.replay.suppress import SuppressingWriter
    from evpipe.privacy.open import open_privacy_store, suppression_cache

    store = open_privacy_store(settings.privacy_store, "clickhouse", clickhouse_url=settings.clickhouse_url,
                               clickhouse_database=settings.clickhouse_database,
                               clickhouse_cluster=settings.clickhouse_cluster)
    cache = suppression_cache(store, settings)
    return writer if cache is None else SuppressingWriter(writer, cache)


def _with_progress(run: Callable[[Progress], Summary], total_bytes: int) -> Summary:
    """Run with a progress bar over archive bytes: events so far, their rate, and the ETA."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[events]:,} events"),
               TextColumn("{task.fields[rate]:,.0f} ev/s"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("backfill", total=max(total_bytes, 1), events=0, rate=0.0)

        def progress(done_bytes: int, events: int) -> None:
            rate = events / max(time.monotonic() - started, 1e-6)
            bar.update(task, advance=done_bytes, events=events, rate=rate)

        return run(progress)
