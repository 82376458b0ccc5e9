"""The whole pipeline on a private state directory, and what the end-to-end benchmarks measure on it.

:class:`Pipeline` starts a broker on a free port and `evpipe clickhouse serve`, the gateway,
archiver and loader (the same supervised processes `evpipe dev up` runs), and stops them all on exit.
:class:`Tracker` follows marker events until ClickHouse shows them (ingest-to-queryable
latency) and samples the loaded count; :class:`Sampler` samples CPU and RSS per process.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.loadgen import MARKER_TYPE
from evpipe.local.daemon import free_port
from evpipe.local.stack import (
    DEMO_KEYS,
    PipelineProcess,
    StackSettings,
    broker,
    down,
    pipeline,
    process_pids,
    start_process,
    stop_process,
    up_pipeline,
    wait_healthy,
)

BENCH_SOURCE = "web"
API_KEY = DEMO_KEYS[BENCH_SOURCE]
# Consumers join a group faster on Tansu with a short session; the gateway has no rate limit here.
# CLICKHOUSE_USERS adds a readonly analyst on the benchmark's ClickHouse server (bench/analyst.py).
PIPELINE_ENV = {"GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0", "GATEWAY_LOG_LEVEL": "warning",
                "CONSUMER_SESSION_TIMEOUT_MS": "6000", "LOG_LEVEL": "WARNING",
                "CLICKHOUSE_USERS": "analyst:analyst:readonly"}


# How a second process of a tier is told apart: its own port, and the URL that answers once it is healthy.
_REPLICA = {"gateway": ("GATEWAY_PORT", "/readyz"), "archiver": ("METRICS_PORT", "/metrics"),
            "loader": ("METRICS_PORT", "/healthz")}


class Pipeline:
    def __init__(self, workdir: Path, archive_rotate_s: float = 5.0, env: dict[str, str] | None = None,
                 replicas: tuple[str, ...] = ()) -> None:
        """``replicas``: tiers ("gateway", "archiver", "loader") that run a second process, e.g. for a
        scale-out measurement; ClickHouse and the broker stay one each."""
        self.env = PIPELINE_ENV | (env or {})  # over the defaults above
        self.settings = StackSettings(
            evpipe_state_dir=workdir / "state", evpipe_broker_port=free_port(), gateway_port=free_port(),
            evpipe_archiver_metrics_port=free_port(), evpipe_loader_metrics_port=free_port(),
            evpipe_clickhouse_port=free_port(), evpipe_archive_rotate_s=archive_rotate_s,
        )
        self._clients = threading.local()  # a ClickHouse client per thread: the Tracker queries beside drain()
        self.state = self.settings.evpipe_state_dir.resolve()
        self.warm = 60  # warm-up events, in every count (callers subtract them)
        self.extra = [self._replica(tier) for tier in replicas]

    def _replica(self, tier: str) -> PipelineProcess:
        base = {p.name: p for p in pipeline(self.settings)}[tier]
        port_variable, health_path = _REPLICA[tier]
        port = free_port()
        return PipelineProcess(f"{tier}2", base.command, base.env | {port_variable: str(port)},
                               f"http://127.0.0.1:{port}{health_path}")

    def __enter__(self) -> Self:
        broker(self.settings).ensure()
        try:
            up_pipeline(self.settings, extra_env=self.env, timeout=180)
            for proc in self.extra:
                start_process(proc, self.state, self.env)
            wait_healthy(self.extra, self.state, 120)
            self.warm_up()
        except BaseException:
            self.close()
            raise
        return self

    def warm_up(self, timeout: float = 120.0) -> None:
        """Send a few events and wait until both consumer groups have written them.

        A healthy consumer may still be joining its group; without this, the first
        measured seconds would time the group join, not the pipeline."""
        import urllib.request

        body = b"[" + b",".join(b'{"type":"warm_up","user_id":"u%d"}' % i for i in range(self.warm)) + b"]"
        request = urllib.request.Request(f"http://127.0.0.1:{self.gateway_port}/v1/events", data=body,
                                         headers={"X-Api-Key": API_KEY, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, response.read()
        deadline = time.monotonic() + timeout
        while self.count() < self.warm or self.archived_rows() < self.warm:
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-up events not loaded and archived after {timeout:.0f}s; logs in {self.state}")
            time.sleep(0.5)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.extra:
            stop_process(proc.daemon(self.state))
        down(self.settings)

    @property
    def more_gateway_ports(self) -> tuple[int, ...]:
        """The second gateways' ports (a load spread over them and ``gateway_port``)."""
        return tuple(int(p.env["GATEWAY_PORT"]) for p in self.extra if p.name.startswith("gateway"))

    @property
    def bootstrap(self) -> str:
        return broker(self.settings).bootstrap

    @property
    def gateway_port(self) -> int:
        return self.settings.gateway_port

    @property
    def clickhouse_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.evpipe_clickhouse_port}"

    def query(self, sql: str) -> list[list[Any]]:
        """SQL on the stack's ClickHouse, through a client of its own as an analyst's would be."""
        from evpipe.clickhouse import connect

        client = getattr(self._clients, "client", None)
        if client is None:
            client = self._clients.client = connect(self.clickhouse_url)
            client.database = "evpipe"
        return [list(row) for row in client.query(sql).result_rows]

    def loaded(self) -> tuple[int, int]:
        """(rows, distinct event ids) in ClickHouse: a pass over every id, for the final count only."""
        rows = self.query("SELECT count(), uniqExact(event_id) FROM events")
        return int(rows[0][0]), int(rows[0][1])

    def count(self) -> int:
        """Rows in ClickHouse, from the parts' row counts: what a poll during the load may ask.

        Polls are counted in ClickHouse's cost: a poll asking the ``uniqExact`` of :meth:`loaded` took
        370 ms of server CPU at 3M rows, and the tracker polls twice a second."""
        return int(self.query("SELECT count() FROM events")[0][0])

    def archive_files(self) -> list[Path]:
        return sorted((self.state / "archive").rglob("*.parquet"))

    def archived_rows(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(f).num_rows for f in self.archive_files())

    def archived_distinct(self) -> int:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        files = [str(f) for f in self.archive_files()]
        if not files:
            return 0
        table = ds.dataset(files, format="parquet").to_table(columns=["event_id"])
        return int(pc.count_distinct(table.column("event_id")).as_py())

    def pids(self) -> dict[str, int]:
        import psutil

        pids = process_pids(self.settings)
        for proc in self.extra:
            supervisor = proc.daemon(self.state).pid()
            children = psutil.Process(supervisor).children() if supervisor is not None else []
            if children:
                pids[proc.name] = children[0].pid
        b = broker(self.settings).daemon.pid()
        if b is not None:
            pids["broker"] = b
        return pids

    def drain(self, accepted: int, max_s: float = 240.0, stall_s: float = 45.0) -> tuple[int, int, float]:
        """Wait until ClickHouse and the archive hold ``accepted`` rows, or progress stalls.

        Returns (loaded, archived, seconds waited)."""
        started = last_progress = time.monotonic()
        last = (-1, -1)
        while True:
            now = (self.count(), self.archived_rows())
            if now[0] >= accepted and now[1] >= accepted:
                return now[0], now[1], time.monotonic() - started
            if now != last:
                last, last_progress = now, time.monotonic()
            if time.monotonic() - last_progress > stall_s or time.monotonic() - started > max_s:
                return now[0], now[1], time.monotonic() - started
            time.sleep(1.0)


# The processes an event's cost is counted over: the pipeline's own, and apart the servers it runs on
# (in production the broker and ClickHouse are other hosts, sized by their own vendors' guides).
SERVERS = ("broker", "clickhouse")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) each named process has used so far."""
    import psutil

    used = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        used[name] = times.user + times.system
    return used


def core_seconds_per_million(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """Core-seconds per million events between two :func:`cpu_seconds` readings: each process, the
    pipeline's processes together ("pipeline") and the servers together ("servers")."""
    if events <= 0:
        return {}
    per = {name: (after[name] - before[name]) * 1e6 / events for name in after if name in before}
    per["pipeline"] = sum(v for name, v in per.items() if name not in SERVERS)
    per["servers"] = sum(per.get(name, 0.0) for name in SERVERS)
    return {name: round(value, 2) for name, value in per.items()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass(eq=False)
class Tracker(threading.Thread):
    """Follows acknowledged marker ids until ClickHouse shows them; samples the loaded count."""

    pipeline: Pipeline
    markers: Any  # multiprocessing queue of (event_id, ack wall time)
    interval: float = 0.5
    pending: dict[str, float] = field(default_factory=dict)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (visible wall time, ms since received_at)
    loaded: list[tuple[float, int]] = field(default_factory=list)  # (wall time, rows)
    poll_seconds: list[float] = field(default_factory=list)  # how long each poll's queries took
    running: bool = True

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        while self.running:
            self.poll()
            time.sleep(self.interval)

    def poll(self) -> None:
        while True:
            try:
                marker, acked = self.markers.get_nowait()
            except queue.Empty:
                break
            self.pending[marker] = acked
        at = time.time()
        try:
            self.loaded.append((at, self.pipeline.count()))
            if self.pending:
                ids = ",".join(f"'{m}'" for m in list(self.pending)[:500])
                # Source and type lead the sort key, so only the markers' granules are read, not every id.
                rows = self.pipeline.query("SELECT toString(event_id), toUnixTimestamp64Milli(received_at) "
                                           f"FROM events WHERE source_id = '{BENCH_SOURCE}' AND "
                                           f"type = '{MARKER_TYPE}' AND event_id IN ({ids})")
                # Visible at the poll's start: a query sees what was committed before it ran (a slow
                # poll can hide an earlier visibility by at most its duration, kept in poll_seconds).
                for marker, received_ms in rows:
                    self.pending.pop(marker, None)
                    self.latencies.append((at, at * 1000 - int(received_ms)))
            self.poll_seconds.append(time.time() - at)
        except Exception as exc:  # noqa: BLE001 (a slow query is retried at the next poll)
            print(f"tracker: {exc}", flush=True)

    def stop(self) -> None:
        self.running = False
        self.join(30)
        self.poll()

    def latencies_since(self, start: float, end: float = float("inf")) -> list[float]:
        return [ms for at, ms in self.latencies if start <= at < end]


@dataclass(eq=False)
class Sampler(threading.Thread):
    """CPU (% of one core) and RSS (MiB) per process, once a second; the load generator summed as one."""

    pipeline: Pipeline
    interval: float = 1.0
    series: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # name: (t, cpu, rss)
    running: bool = True

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        import psutil

        procs = {name: psutil.Process(pid) for name, pid in self.pipeline.pids().items()}
        gens: dict[int, psutil.Process] = {}
        for p in procs.values():
            p.cpu_percent()
        while self.running:
            time.sleep(self.interval)
            for child in psutil.Process().children(recursive=True):
                # Only the generator's processes (the supervisors are this process's children too).
                if child.pid not in gens and _is_generator(child):
                    gens[child.pid] = child
                    child.cpu_percent()
            at = time.time()
            for name, p in procs.items():
                self._sample(name, at, [p])
            self._sample("loadgen", at, list(gens.values()))

    def _sample(self, name: str, at: float, procs: list[Any]) -> None:
        import psutil

        cpu = rss = 0.0
        for p in procs:
            try:
                cpu += p.cpu_percent()
                rss += p.memory_info().rss / 2**20
            except psutil.Error:
                continue
        self.series.setdefault(name, []).append((at, cpu, rss))

    def stop(self) -> None:
        self.running = False
        self.join(10)

    def summary(self, start: float, end: float) -> dict[str, dict[str, float]]:
        out = {}
        for name, points in self.series.items():
            window = [p for p in points if start <= p[0] <= end] or points
            out[name] = {"cpu_mean_pct": sum(p[1] for p in window) / len(window),
                         "rss_peak_mib": max(p[2] for p in points)}
        return out


def _is_generator(proc: Any) -> bool:
    import psutil

    try:
        return "spawn_main" in " ".join(proc.cmdline())
    except psutil.Error:
        return False
