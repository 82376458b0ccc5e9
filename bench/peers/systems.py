"""The consumers the peers bench runs, each as a separate process it can kill -9 and restart.

A :class:`System` knows how to start one lifetime of its consumer, when that lifetime read its first
message, how many rows are durable, and (after the kill test) how many rows or offsets are missing
or duplicated. Each run gets a fresh consumer group and output location (:meth:`System.prepare`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evpipe.local.daemon import free_port

BATCH = 50_000  # events per batch of our consumers (the loader and archiver benches use the same)
SESSION_ENV = {"CONSUMER_SESSION_TIMEOUT_MS": "6000", "LOG_LEVEL": "WARNING"}
_MESSAGES = re.compile(rb"^evpipe_consumer_messages_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


@dataclass
class Context:
    """What every system shares: the broker, the topic and its events, and the ClickHouse server."""

    bootstrap: str
    topic: str
    partitions: int
    n: int
    workdir: Path
    broker_pid: int
    clickhouse_url: str = ""
    clickhouse_pid: int | None = None


@dataclass(frozen=True)
class Audit:
    """What the output holds after the kill test: rows (or processed offsets) and how many distinct."""

    rows: int
    distinct: int
    unreadable: int = 0  # output files that could not be read (a peer's write cut by a kill)
    rewrites: int = 0  # batches written again after a restart (our no-op sink; idempotent by identity)


@dataclass
class System(ABC):
    ctx: Context
    name: str = ""
    pair: str = ""
    slug: str = ""
    dir: Path = field(default_factory=Path)
    group: str = ""
    record: bool = False

    def __post_init__(self) -> None:
        """Subclasses name themselves here (defined on the base so the dataclass __init__ calls theirs)."""

    def prepare(self, tag: str, record: bool) -> None:
        """A fresh group and output directory for one run (throughput, or the kill test)."""
        self.dir = self.ctx.workdir / self.slug / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self.group = f"{self.slug}_{tag}"
        self.record = record

    def start(self, lifetime: int) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"lifetime-{lifetime}.log", "ab")  # noqa: SIM115 (the child holds it)
        try:
            return subprocess.Popen(self.argv(lifetime), env=os.environ | self.env(lifetime), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.cwd())
        finally:
            log.close()

    def cwd(self) -> Path:
        return Path(__file__).resolve().parents[2]  # the repository root, so `-m bench...` resolves

    def env(self, lifetime: int) -> dict[str, str]:
        return {}

    def extra_pids(self) -> list[int]:
        """Processes besides the consumer and the broker whose CPU counts (the ClickHouse server)."""
        return []

    def log_tail(self, lifetime: int) -> str:
        try:
            return (self.dir / f"lifetime-{lifetime}.log").read_text(errors="replace")[-1500:]
        except FileNotFoundError:
            return ""

    def committed(self) -> int:
        """Messages whose offsets the group committed (offsets start at 0 on the bench's fresh topic)."""
        from confluent_kafka import Consumer, TopicPartition

        if getattr(self, "_consumer_group", None) != self.group:
            self.close()
            # Never subscribes: committed() is an OffsetFetch, so this client never joins the group.
            self._consumer = Consumer({"bootstrap.servers": self.ctx.bootstrap, "group.id": self.group})
            self._consumer_group = self.group
        parts = [TopicPartition(self.ctx.topic, p) for p in range(self.ctx.partitions)]
        return sum(max(tp.offset, 0) for tp in self._consumer.committed(parts, timeout=10))

    def close(self) -> None:
        """Close the offsets client (before the broker stops, or librdkafka logs every reconnect)."""
        consumer = getattr(self, "_consumer", None)
        if consumer is not None:
            consumer.close()
            del self._consumer, self._consumer_group

    @abstractmethod
    def argv(self, lifetime: int) -> list[str]: ...

    @abstractmethod
    def first_seen(self, lifetime: int) -> float | None:
        """Wall time this lifetime consumed its first message, once known."""

    @abstractmethod
    def durable(self) -> int:
        """Rows durable in the output now (committed offsets for the no-op consumers)."""

    @abstractmethod
    def audit(self) -> Audit: ...


class FirstFile(System):
    """A child of ours that writes the wall time of its first message to a file."""

    def first_path(self, lifetime: int) -> Path:
        return self.dir / f"first-{lifetime}"

    def first_seen(self, lifetime: int) -> float | None:
        try:
            return float(self.first_path(lifetime).read_text())
        except (FileNotFoundError, ValueError):
            return None


class Metered(System):
    """An evpipe command: the first message shows as evpipe_consumer_messages_total > 0 on its /metrics."""

    def metrics_port(self, lifetime: int) -> int:
        if not hasattr(self, "_ports"):
            self._ports: dict[int, int] = {}
        return self._ports.setdefault(lifetime, free_port())

    def first_seen(self, lifetime: int) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port(lifetime)}/metrics",
                                        timeout=1) as response:
                body = response.read()
        except OSError:
            return None
        return time.time() if sum(float(v) for v in _MESSAGES.findall(body)) > 0 else None


class OurLoader(Metered):
    """`evpipe loader` into a database of its own on the shared `evpipe clickhouse serve`."""

    def __post_init__(self) -> None:
        self.name, self.pair, self.slug = "evpipe loader", "ClickHouse", "loader"
        self._client: Any = None

    @property
    def database(self) -> str:
        return f"bench_peers_{self.group}"

    def argv(self, lifetime: int) -> list[str]:
        return [sys.executable, "-m", "evpipe", "loader"]

    def env(self, lifetime: int) -> dict[str, str]:
        c = self.ctx
        return SESSION_ENV | {
            "KAFKA_BOOTSTRAP_SERVERS": c.bootstrap, "KAFKA_TOPIC": c.topic, "KAFKA_DLQ_TOPIC": f"{c.topic}.dlq",
            "CLICKHOUSE_URL": c.clickhouse_url, "CLICKHOUSE_DATABASE": self.database,
            "LOADER_GROUP_ID": self.group, "LOADER_CONSUME_REPLAY": "false", "LOADER_ADMIN_HOST": "127.0.0.1",
            "METRICS_PORT": str(self.metrics_port(lifetime)), "EVPIPE_STATE_DIR": str(self.dir),
            # The loader bench's batching: 50,000 rows or 0.2 s.
            "CONSUMER_BATCH_MAX_MESSAGES": str(BATCH), "CONSUMER_BATCH_MAX_AGE_S": "0.2",
        }

    def extra_pids(self) -> list[int]:
        return [self.ctx.clickhouse_pid] if self.ctx.clickhouse_pid else []

    def _query(self, sql: str) -> list[Any]:
        from evpipe.clickhouse import connect

        if self._client is None:
            self._client = connect(self.ctx.clickhouse_url)
        try:
            return list(self._client.query(sql).result_rows[0])
        except Exception as exc:  # the table appears once the loader migrated its database
            if "UNKNOWN_DATABASE" in str(exc) or "UNKNOWN_TABLE" in str(exc):
                return [0, 0]
            raise

    def durable(self) -> int:
        return int(self._query(f"SELECT count() FROM `{self.database}`.events")[0])

    def audit(self) -> Audit:
        rows, distinct = self._query(f"SELECT count(), uniqExact(event_id) FROM `{self.database}`.events")
        return Audit(int(rows), int(distinct))


class KafkaEngine(System):
    """ClickHouse's Kafka engine and a materialized view (bench/peers/kafka_engine.py): on the loader's server for
    the timed run, on a server of its own for the kill test (its kill -9 is the server's)."""

    def __post_init__(self) -> None:
        self.name, self.pair, self.slug = "ClickHouse Kafka engine + MV", "ClickHouse", "kafka_engine"
        self._clients: dict[str, Any] = {}
        self.port = free_port()

    @property
    def database(self) -> str:
        return f"bench_peers_{self.group}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.record else self.ctx.clickhouse_url

    def argv(self, lifetime: int) -> list[str]:
        c = self.ctx
        mode = ["serve", str(self.dir / "state"), str(self.port)] if self.record else ["attach", c.clickhouse_url]
        return [sys.executable, "-m", "bench.peers.kafka_engine", *mode, self.database, c.bootstrap, c.topic,
                self.group]

    def extra_pids(self) -> list[int]:
        return [self.ctx.clickhouse_pid] if self.ctx.clickhouse_pid else []

    def _query(self, sql: str) -> list[Any]:
        from evpipe.clickhouse import connect

        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1):
                pass  # the kill test's own server restarts: asking a dead one only fills the log with retries
        except OSError:
            return [0, 0]
        try:
            if self.url not in self._clients:
                self._clients[self.url] = connect(self.url)
            return list(self._clients[self.url].query(sql).result_rows[0])
        except Exception as exc:  # the server is (re)starting, or the tables are not created yet
            self._clients.pop(self.url, None)
            if "UNKNOWN_DATABASE" in str(exc) or "UNKNOWN_TABLE" in str(exc) or "connect" in str(exc).lower():
                return [0, 0]
            raise

    def first_seen(self, lifetime: int) -> float | None:
        read = self._query(f"SELECT sum(num_messages_read) FROM system.kafka_consumers "
                           f"WHERE database = '{self.database}'")[0]
        return time.time() if int(read or 0) > 0 else None

    def durable(self) -> int:
        return int(self._query(f"SELECT count() FROM `{self.database}`.events")[0])

    def audit(self) -> Audit:
        rows, distinct = self._query(f"SELECT count(), uniqExact(event_id) FROM `{self.database}`.events")
        return Audit(int(rows), int(distinct))


def parquet_files(root: Path) -> list[Path]:
    # Dot-prefixed names are our archiver's temp files of unfinished writes, never part of the archive.
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


class ParquetOutput(System):
    """Rows in the Parquet files under ``out`` (a file that cannot be read yet counts as none)."""

    @property
    def out(self) -> Path:
        return self.dir / "out"

    def durable(self) -> int:
        import pyarrow.parquet as pq

        if not hasattr(self, "_seen"):
            self._seen: dict[tuple[Path, int, int], int] = {}
        total = 0
        for f in parquet_files(self.out):
            try:
                st = f.stat()
                key = (f, st.st_size, st.st_mtime_ns)
                if key not in self._seen:
                    self._seen[key] = pq.read_metadata(f).num_rows
                total += self._seen[key]
            except (OSError, ValueError):  # still being written, or cut by a kill
                continue
        return total

    def audit(self) -> Audit:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        ids, unreadable = [], 0
        for f in parquet_files(self.out):
            try:
                ids.append(pq.read_table(f, columns=["event_id"]).column("event_id"))
            except (OSError, ValueError):
                unreadable += 1
        if not ids:
            return Audit(0, 0, unreadable)
        import pyarrow as pa

        column = pa.chunked_array([c.cast(pa.string()) for a in ids for c in a.chunks])
        return Audit(len(column), int(pc.count_distinct(column).as_py()), unreadable)


class OurArchiver(Metered, ParquetOutput):
    """`evpipe archiver` into a local directory."""

    def __post_init__(self) -> None:
        self.name, self.pair, self.slug = "evpipe archiver", "Parquet", "archiver"

    def argv(self, lifetime: int) -> list[str]:
        return [sys.executable, "-m", "evpipe", "archiver"]

    def env(self, lifetime: int) -> dict[str, str]:
        c = self.ctx
        return SESSION_ENV | {
            "KAFKA_BOOTSTRAP_SERVERS": c.bootstrap, "KAFKA_TOPIC": c.topic, "KAFKA_DLQ_TOPIC": f"{c.topic}.dlq",
            "ARCHIVE_URI": str(self.out), "ARCHIVER_GROUP": self.group, "EVPIPE_STATE_DIR": str(self.dir),
            # As deployed, the archiver reads the suppression list from ClickHouse (PRIVACY_STORE=auto).
            "CLICKHOUSE_URL": c.clickhouse_url, "CLICKHOUSE_DATABASE": f"bench_peers_{self.group}",
            "METRICS_PORT": str(self.metrics_port(lifetime)),
            # The archiver bench's batching: 50,000 events or 0.1 s per file.
            "CONSUMER_BATCH_MAX_MESSAGES": str(BATCH), "CONSUMER_BATCH_MAX_AGE_S": "0.1",
        }


    def extra_pids(self) -> list[int]:
        return [self.ctx.clickhouse_pid] if self.ctx.clickhouse_pid else []


class QuixParquet(FirstFile, ParquetOutput):
    """Quix Streams' LocalFileSink(format="parquet"), on its own interpreter (bench/peers/env.py)."""

    def __post_init__(self) -> None:
        self.name, self.pair, self.slug = "Quix Streams FileSink (parquet)", "Parquet", "quix"

    def argv(self, lifetime: int) -> list[str]:
        from bench.peers.env import quix_python

        return [str(quix_python()), str(Path(__file__).with_name("quix_parquet.py")),
                "--bootstrap", self.ctx.bootstrap, "--topic", self.ctx.topic, "--group", self.group,
                "--first", str(self.first_path(lifetime)), "--out", str(self.out), "--state", str(self.dir / "state")]


class CommittedOffsets(System):
    """The no-op consumers: durable means committed; the kill test counts recorded offsets."""

    def durable(self) -> int:
        return self.committed()


class OurNoop(FirstFile, CommittedOffsets):
    def __post_init__(self) -> None:
        self.name, self.pair, self.slug = "evpipe consumer runtime, no-op sink", "no-op", "noop_ours"

    def argv(self, lifetime: int) -> list[str]:
        record = ["--record", str(self.dir / "record")] if self.record else []
        return [sys.executable, "-m", "bench.peers.noop_ours", "--bootstrap", self.ctx.bootstrap,
                "--topic", self.ctx.topic, "--group", self.group, "--first", str(self.first_path(lifetime)),
                *record]

    def audit(self) -> Audit:
        counts: Counter[tuple[int, int]] = Counter()
        done = self.dir / "record" / "done"
        for f in done.iterdir():
            if f.name.endswith(".tmp"):
                continue
            partition = int(f.name.split("-")[0])
            counts.update((partition, int(o)) for o in f.read_text().split())
        writes = (self.dir / "record" / "writes.log").read_text().split()
        return Audit(sum(counts.values()), len(counts), rewrites=len(writes) - len(set(writes)))


class ArroyoNoop(FirstFile, CommittedOffsets):
    def __post_init__(self) -> None:
        self.name, self.pair, self.slug = "Arroyo RunTask(no-op) + CommitOffsets", "no-op", "arroyo"

    def argv(self, lifetime: int) -> list[str]:
        record = ["--record", str(self.dir / "record.txt")] if self.record else []
        return [sys.executable, "-m", "bench.peers.noop_arroyo", "--bootstrap", self.ctx.bootstrap,
                "--topic", self.ctx.topic, "--group", self.group, "--first", str(self.first_path(lifetime)),
                *record]

    def audit(self) -> Audit:
        counts = Counter((self.dir / "record.txt").read_text().splitlines())
        return Audit(sum(counts.values()), len(counts))
