"""`evpipe dev up|down|status`: the local stack on loopback, idempotent, state under one directory.

`up` starts the broker, creates the topics, then the pipeline (`evpipe
clickhouse serve` unless CLICKHOUSE_URL names another ClickHouse, gateway,
archiver, loader), each under its own supervisor daemon (restarted when it
dies), with pid and log files under the state directory. What already runs is
reused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from evpipe.local.broker import DEFAULT_PORT, LocalBroker
from evpipe.local.daemon import Daemon, StartError, pid_alive, port_open
from evpipe.settings import StateSettings, redact_url

if TYPE_CHECKING:
    from evpipe.local.ceph import LocalCeph


class StackSettings(StateSettings):
    evpipe_broker_port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port of the local Tansu broker.")
    evpipe_s3_port: int = Field(7480, ge=1, le=65535, description="Port of the local Ceph RADOS Gateway (S3).")
    evpipe_postgres_host: str = Field("127.0.0.1", description="Host of the machine's Postgres (checked, not started).")
    evpipe_postgres_port: int = Field(5432, description="Port of the machine's Postgres.")
    evpipe_redis_host: str = Field("127.0.0.1", description="Host of the machine's Redis (checked, not started).")
    evpipe_redis_port: int = Field(6379, description="Port of the machine's Redis.")
    gateway_port: int = Field(8080, ge=1, le=65535, description="Port of the local gateway (API and /metrics).")
    evpipe_archiver_metrics_port: int = Field(9102, ge=1, le=65535, description="Port of the local archiver's /metrics.")
    evpipe_loader_metrics_port: int = Field(
        9310, ge=1, le=65535, description="Port of the local loader's /metrics and /healthz.")
    evpipe_clickhouse_port: int = Field(
        8123, ge=1, le=65535, description="Port of the local `evpipe clickhouse serve` (ClickHouse's HTTP interface).")
    evpipe_archive_rotate_s: float = Field(
        10.0, gt=0, description="Local archiver: seconds before a Parquet file is closed (small, so files show soon).")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    healthy: bool
    detail: str


POSTGRES_HINT = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_HINT = "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"


def broker(settings: StackSettings) -> LocalBroker:
    return LocalBroker(settings.evpipe_state_dir.resolve(), settings.evpipe_broker_port)


def local_ceph(settings: StackSettings) -> LocalCeph:
    from evpipe.local.ceph import LocalCeph  # here: keeps `evpipe --help` from importing it

    return LocalCeph(settings.evpipe_state_dir.resolve(), settings.evpipe_s3_port)


def up(settings: StackSettings, with_s3: bool, broker_only: bool = False) -> list[ComponentStatus]:
    """Start what is missing; reuse what already runs. Raises StartError with the reason."""
    state = settings.evpipe_state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    b = broker(settings)
    results = [ComponentStatus("broker", True, f"{b.ensure()} tansu on {b.bootstrap}")]
    if with_s3:
        ceph = local_ceph(settings)
        how = ceph.ensure()
        keys = f"access key {ceph.credentials().access_key}, secret in {ceph.paths.credentials}"
        results.append(ComponentStatus("s3", True, f"{how} ceph rgw on {ceph.endpoint} ({keys})"))
    if os.environ.get("CLICKHOUSE_URL"):
        results.append(ComponentStatus("clickhouse", True, f"CLICKHOUSE_URL {redact_url(os.environ['CLICKHOUSE_URL'])}"))
    if not broker_only:
        results += up_pipeline(settings)
    return results + external_services(settings)


def external_services(settings: StackSettings) -> list[ComponentStatus]:
    pg = port_open(settings.evpipe_postgres_host, settings.evpipe_postgres_port)
    rd = port_open(settings.evpipe_redis_host, settings.evpipe_redis_port)
    pg_at = f"{settings.evpipe_postgres_host}:{settings.evpipe_postgres_port}"
    rd_at = f"{settings.evpipe_redis_host}:{settings.evpipe_redis_port}"
    return [
        ComponentStatus("postgres", pg, f"{pg_at}" if pg else f"not answering on {pg_at}; {POSTGRES_HINT}"),
        ComponentStatus("redis", rd, f"{rd_at}" if rd else f"not answering on {rd_at}; {REDIS_HINT}"),
    ]


def status(settings: StackSettings) -> list[ComponentStatus]:
    b = broker(settings)
    results = [ComponentStatus("broker", b.healthy(), f"tansu on {b.bootstrap}" if b.healthy() else "not running")]
    if (settings.evpipe_state_dir.resolve() / "ceph").exists():  # only once `dev up --s3` made a cluster
        ceph = local_ceph(settings)
        ok = ceph.healthy()
        detail = f"ceph rgw on {ceph.endpoint}" if ok else f"not answering on {ceph.endpoint}; run: evpipe dev up --s3"
        results.append(ComponentStatus("s3", ok, detail))
    return results + pipeline_status(settings) + external_services(settings)


def down(settings: StackSettings) -> list[ComponentStatus]:
    results = down_pipeline(settings)  # before the broker, so consumers can commit their last batches
    results.append(ComponentStatus("broker", False, "stopped" if broker(settings).stop() else "was not running"))
    if (settings.evpipe_state_dir.resolve() / "ceph").exists():
        stopped = local_ceph(settings).stop()
        results.append(ComponentStatus("s3", False, "stopped" if stopped else "was not running"))
    return results


# The demo's two sources, each with its own key (GATEWAY_API_KEYS of the local gateway).
DEMO_KEYS: dict[str, str] = {"web": "demo-web-key", "mobile": "demo-mobile-key"}
PIPELINE = ("clickhouse", "gateway", "archiver", "loader")
# A short group session, so a killed consumer's partitions move (or come back to its restart) within seconds:
# see bench recovery for kill -9 recovery times with the 30 s default and with this. No static
# membership (CONSUMER_INSTANCE_ID) locally: the local broker leaves the partitions meant for a static member
# that joins an existing group unassigned (seen with Tansu 0.6), so it is set for real Kafka only.
LOCAL_SESSION_TIMEOUT_MS = 6_000
LOCAL_MEMBERSHIP = {"CONSUMER_SESSION_TIMEOUT_MS": str(LOCAL_SESSION_TIMEOUT_MS)}


@dataclass(frozen=True)
class PipelineProcess:
    """One pipeline process: its supervisor daemon, command, extra environment and health URL."""

    name: str
    command: tuple[str, ...]
    env: dict[str, str]
    health_url: str

    def daemon(self, state: Path) -> Daemon:
        return Daemon(self.name, state)


def pipeline(settings: StackSettings) -> list[PipelineProcess]:
    """The processes `dev up` runs, in start order (ClickHouse first: the loader is its client)."""
    state = settings.evpipe_state_dir.resolve()
    ch_port = settings.evpipe_clickhouse_port
    clickhouse_url = os.environ.get("CLICKHOUSE_URL") or f"http://127.0.0.1:{ch_port}"
    base = {"EVPIPE_STATE_DIR": str(state), "KAFKA_BOOTSTRAP_SERVERS": broker(settings).bootstrap,
            "CLICKHOUSE_URL": clickhouse_url}
    keys = ",".join(f"{key}={source}" for source, key in DEMO_KEYS.items())
    gw, arch, load = (settings.gateway_port, settings.evpipe_archiver_metrics_port,
                      settings.evpipe_loader_metrics_port)
    clickhouse = [] if os.environ.get("CLICKHOUSE_URL") else [
        PipelineProcess("clickhouse", ("clickhouse", "serve"), base | {"CLICKHOUSE_HTTP_PORT": str(ch_port)},
                        f"http://127.0.0.1:{ch_port}/ping")]
    return clickhouse + [
        PipelineProcess("gateway", ("gateway",), base | {"GATEWAY_PORT": str(gw), "GATEWAY_API_KEYS": keys},
                        f"http://127.0.0.1:{gw}/readyz"),
        PipelineProcess("archiver", ("archiver",), base | LOCAL_MEMBERSHIP | {
            "METRICS_PORT": str(arch), "CONSUMER_BATCH_MAX_AGE_S": str(settings.evpipe_archive_rotate_s)},
            f"http://127.0.0.1:{arch}/metrics"),
        PipelineProcess("loader", ("loader",), base | LOCAL_MEMBERSHIP | {"METRICS_PORT": str(load)},
                        f"http://127.0.0.1:{load}/healthz"),
    ]



def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def start_process(proc: PipelineProcess, state: Path, extra_env: dict[str, str] | None = None) -> str:
    """Start ``proc`` under a supervisor unless its supervisor runs; 'reused' or 'started'."""
    daemon = proc.daemon(state)
    if daemon.pid() is not None:
        return "reused"
    argv = [sys.executable, "-m", "evpipe.local.supervisor", "--name", proc.name, "--grace", "20", "--",
            sys.executable, "-m", "evpipe", *proc.command]
    # The repository root on the path, so a checkout without `pip install -e` runs too.
    repo = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    daemon.start(argv, env=os.environ | proc.env | {"PYTHONPATH": path} | (extra_env or {}), cwd=Path(repo))
    return "started"


def wait_healthy(procs: list[PipelineProcess], state: Path, timeout: float) -> None:
    """Wait until every process answers its health URL; StartError naming the laggard and its log."""
    deadline = time.monotonic() + timeout
    pending = list(procs)
    while pending:
        pending = [p for p in pending if not http_ok(p.health_url)]
        if not pending:
            return
        if time.monotonic() > deadline:
            p = pending[0]
            daemon = p.daemon(state)
            raise StartError(f"{p.name} is not healthy at {p.health_url} after {timeout:.0f}s; "
                             f"log {daemon.log_file}:\n{daemon.log_tail()}")
        time.sleep(0.3)


def up_pipeline(settings: StackSettings, extra_env: dict[str, str] | None = None,
                timeout: float = 120.0) -> list[ComponentStatus]:
    """Create the topics, start (or reuse) gateway, archiver and loader, wait until healthy."""
    from evpipe.kafka import create_topics, pipeline_topics
    from evpipe.settings import KafkaSettings

    state = settings.evpipe_state_dir.resolve()
    kafka = KafkaSettings(kafka_bootstrap_servers=broker(settings).bootstrap)
    created = create_topics(kafka, pipeline_topics(kafka))
    made = sorted(t for t, how in created.items() if how == "created")
    rows = [ComponentStatus("topics", True, f"created {', '.join(made)}" if made else "reused all four")]
    procs = pipeline(settings)
    hows = {p.name: start_process(p, state, extra_env) for p in procs}
    wait_healthy(procs, state, timeout)
    for p in procs:
        d = p.daemon(state)
        rows.append(ComponentStatus(p.name, True, f"{hows[p.name]} (supervisor pid {d.pid()}) {p.health_url}, "
                                                 f"log {d.log_file}"))
    return rows


def pipeline_status(settings: StackSettings) -> list[ComponentStatus]:
    """Health of the pipeline processes that `dev up` started (those with a pid file)."""
    state = settings.evpipe_state_dir.resolve()
    rows = []
    for p in pipeline(settings):
        d = p.daemon(state)
        if not d.pid_file.exists():
            continue
        if d.pid() is None:
            rows.append(ComponentStatus(p.name, False, f"not running; see {d.log_file}"))
        else:
            ok = http_ok(p.health_url)
            rows.append(ComponentStatus(p.name, ok, f"{p.health_url} {'answers' if ok else 'does not answer'}"))
    return rows


def stop_process(daemon: Daemon) -> bool:
    """SIGTERM the supervisor (it stops its child gracefully), then make sure nothing of its group is left."""
    pid = daemon.pid()
    stopped = daemon.stop(timeout=40.0)
    if pid is not None:
        # The supervisor runs in its own session: its pid is the group id of it and its child.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return stopped


def down_pipeline(settings: StackSettings) -> list[ComponentStatus]:
    state = settings.evpipe_state_dir.resolve()
    # Gateway first (no new events), then the consumers, which finish their batches on SIGTERM, then
    # ClickHouse, which the loader writes its last batch to.
    procs = pipeline(settings)
    ordered = [p for p in procs if p.name != "clickhouse"] + [p for p in procs if p.name == "clickhouse"]
    return [ComponentStatus(p.name, False, "stopped" if stop_process(p.daemon(state)) else "was not running")
            for p in ordered]


def process_pids(settings: StackSettings) -> dict[str, int]:
    """The live pid of each pipeline process's child (the real process), for benchmarks."""
    import psutil

    state = settings.evpipe_state_dir.resolve()
    pids = {}
    for p in pipeline(settings):
        sup = p.daemon(state).pid()
        if sup is not None and pid_alive(sup):
            children = psutil.Process(sup).children()
            if children:
                pids[p.name] = children[0].pid
    return pids
