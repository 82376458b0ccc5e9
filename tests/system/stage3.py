"""The Stage 3 stack for system runs: bench.harness.Pipeline plus a second gateway, archiver and loader.

Every tier runs two replicas but ClickHouse (`evpipe clickhouse serve`, one server both loaders write to).
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as ds
from confluent_kafka import Consumer, Message, TopicPartition

from bench.harness import Pipeline
from evpipe.local.daemon import Daemon, free_port
from evpipe.local.stack import pipeline
from tests.system.faults import Target


@dataclass(frozen=True)
class S3Archive:
    """Archive to S3: the archivers write through ``write_endpoint`` (a radosgw the test may pause);
    the checks read through ``read_endpoint`` (another radosgw of the same cluster)."""

    write_endpoint: str
    read_endpoint: str
    bucket: str
    prefix: str = "lake"


class SystemStack(Pipeline):
    """The harness pipeline (broker, ClickHouse, gateway, archiver, loader) and the extra replicas."""

    def __init__(self, workdir: Path, s3: S3Archive | None = None) -> None:
        # INFO: the consumers' assignments and revocations show in a failure's log tails.
        super().__init__(workdir, archive_rotate_s=3.0, replicas=("gateway", "archiver", "loader"),
                         env={"LOG_LEVEL": "INFO"})
        # Environment the started processes inherit (the caller restores it): ARCHIVE_URI and S3_ENDPOINT_URL
        # are read by the archivers only.
        self.s3, self.mirror = s3, workdir / "archive-mirror"
        if s3 is not None:
            os.environ["ARCHIVE_URI"] = f"s3://{s3.bucket}/{s3.prefix}"
            os.environ["S3_ENDPOINT_URL"] = s3.write_endpoint
        self.targets = [Target(p.name, p.health_url) for p in [*pipeline(self.settings), *self.extra]]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in (self.gateway_port, *self.more_gateway_ports)]

    @property
    def broker_pid(self) -> int:
        pid = self.pids().get("broker")
        assert pid is not None, "the private broker is not running"
        return pid

    def archive_files(self) -> list[Path]:
        """Local Parquet files of the archive (with S3: a mirror of the bucket's data objects)."""
        if self.s3 is None:
            return super().archive_files()
        import boto3

        client = boto3.client("s3", endpoint_url=self.s3.read_endpoint)
        files = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.s3.bucket, Prefix=self.s3.prefix + "/"):
            for item in page.get("Contents", []):
                key = item["Key"]
                if "/_manifests/" in key or "/_dedup/" in key or not key.endswith(".parquet"):
                    continue
                path = self.mirror / key
                # Names depend only on partition, offsets and hour, so a rewrite has the same size.
                if not path.exists() or path.stat().st_size != item["Size"]:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(self.s3.bucket, key, str(path))
                files.append(path)
        return sorted(files)

    def archive_duplicates_dropped(self) -> int:
        """Resent copies the archivers left out, from the batch manifests (a re-formed batch rewrites its own)."""
        from consumers.archiver.store import LocalStore, S3Store, Store

        store: Store = LocalStore(self.state / "archive") if self.s3 is None else \
            S3Store(self.s3.bucket, self.s3.prefix, self.s3.read_endpoint, 64 * 1024 * 1024)
        manifests = (store.get(key) for key in store.list("_manifests/") if key.endswith(".json"))
        return sum(int(orjson.loads(data).get("duplicates", 0)) for data in manifests if data is not None)

    def clickhouse_ids(self, event_type: str) -> list[str]:
        """Every row's event id of ``event_type`` (repeats kept, so duplicates show)."""
        rows = self.query(f"SELECT toString(event_id) FROM events WHERE type = '{event_type}'")
        return [r[0] for r in rows]

    def archive_ids(self, event_type: str) -> list[str]:
        files = [str(f) for f in self.archive_files()]
        if not files:
            return []
        table = ds.dataset(files, format="parquet").to_table(columns=["event_id", "type"])
        return [str(i) for i, t in zip(table.column("event_id").to_pylist(), table.column("type").to_pylist(),
                                       strict=True) if t == event_type]

    def invalid_ids(self, timeout: float = 30.0, wanted: set[str] | None = None) -> set[str]:
        """Event ids found in the payloads of the invalid topic (stops early once ``wanted`` are all found)."""
        found: set[str] = set()
        remaining = set(wanted) if wanted is not None else None
        for msg in self._read_from_start(["events.invalid"], timeout):
            event_id = str(_payload(orjson.loads(msg.value() or b"{}")).get("event_id"))
            found.add(event_id)
            if remaining is not None:
                remaining.discard(event_id)
                if not remaining:
                    break
        return found

    def _read_from_start(self, topics: list[str], timeout: float) -> Iterator[Message]:
        """Every message of ``topics`` from offset 0, until 3 s bring none or ``timeout`` passes; a caller
        may stop early (the consumer is closed then too). Assigned, never subscribed: no group join."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"check-{free_port()}",
                             "enable.auto.commit": False, "fetch.queue.backoff.ms": 10})
        try:
            metadata = consumer.list_topics(timeout=10).topics
            consumer.assign([TopicPartition(t, p, 0) for t in topics if t in metadata for p in metadata[t].partitions])
            idle, deadline = 0, time.monotonic() + timeout
            while idle < 6 and time.monotonic() < deadline:
                batch = consumer.consume(5000, 0.5)
                idle = 0 if batch else idle + 1
                yield from (msg for msg in batch if msg.error() is None and msg.value() is not None)
        finally:
            consumer.close()

    def group_lag(self) -> str:
        """Each consumer group's partitions whose committed offset is short of the high watermark."""
        out = []
        for group in ("evpipe-archiver", "evpipe-loader"):
            consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
            try:  # committed() reads the group's offsets without joining it
                topics = consumer.list_topics(timeout=10).topics
                tps = [TopicPartition(t, p) for t in ("events", "events.overflow", "events.replay") if t in topics
                       for p in topics[t].partitions]
                lags = []
                for tp in consumer.committed(tps, timeout=10):
                    high = consumer.get_watermark_offsets(tp, timeout=10)[1]
                    if max(tp.offset, 0) < high:  # -1001: nothing committed yet
                        lags.append(f"{tp.topic}[{tp.partition}] {tp.offset}/{high}")
                out.append(f"{group}: {', '.join(lags) or 'none behind'}")
            except Exception as exc:  # a diagnosis must not hide the failure it explains
                out.append(f"{group}: unreadable ({type(exc).__name__}: {exc})")
            finally:
                consumer.close()
        return "; ".join(out)

    def locate(self, ids: set[str], timeout: float = 60.0) -> dict[str, str]:
        """Where ``ids`` are in the live topics: event id -> topic[partition]@offset; an id not in the result
        is in neither topic. Tells a stuck or lost batch (in Kafka) from an event that never reached Kafka."""
        found: dict[str, str] = {}
        for msg in self._read_from_start(["events", "events.overflow"], timeout):
            event_id = str(orjson.loads(msg.value() or b"{}").get("event_id"))
            if event_id in ids:
                found[event_id] = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
                if len(found) == len(ids):
                    break
        return found

    def consumer_gauges(self) -> str:
        """Each consumer process's assigned and paused partitions and buffered bytes, from its /metrics."""
        wanted = ("evpipe_consumer_assigned_partitions", "evpipe_consumer_paused_partitions",
                  "evpipe_consumer_buffer_bytes")
        out = []
        for target in self.targets:
            if not target.name.startswith(("archiver", "loader")):
                continue
            url = target.health_url.rsplit("/", 1)[0] + "/metrics"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
            except OSError as exc:
                out.append(f"{target.name}: unreadable ({exc})")
                continue
            values = [line.split(" ", 1) for line in text.splitlines() if line.startswith(wanted)]
            out.append(f"{target.name}: " + ", ".join(f"{k.removeprefix('evpipe_consumer_')}={float(v):g}"
                                                      for k, v in values))
        return "; ".join(out)

    def logs(self) -> str:
        return "\n".join(f"--- {t.name}\n{Daemon(t.name, self.state).log_tail(15)}" for t in self.targets)


def _payload(record: dict[str, Any]) -> dict[str, Any]:
    payload = record.get("payload")
    if isinstance(payload, str):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return {}
    return payload if isinstance(payload, dict) else {}
