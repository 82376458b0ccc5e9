"""`evpipe dev up|down|status`: the local stack on loopback, idempotent, state under one directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from evpipe.settings import StateSettings
from infra.local.broker import DEFAULT_PORT, LocalBroker
from infra.local.daemon import port_open

if TYPE_CHECKING:
    from infra.local.ceph import LocalCeph


class StackSettings(StateSettings):
    evpipe_broker_port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port of the local Tansu broker.")
    evpipe_s3_port: int = Field(7480, ge=1, le=65535, description="Port of the local Ceph RADOS Gateway (S3).")
    evpipe_postgres_host: str = Field("127.0.0.1", description="Host of the machine's Postgres (checked, not started).")
    evpipe_postgres_port: int = Field(5432, description="Port of the machine's Postgres.")
    evpipe_redis_host: str = Field("127.0.0.1", description="Host of the machine's Redis (checked, not started).")
    evpipe_redis_port: int = Field(6379, description="Port of the machine's Redis.")


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
    from infra.local.ceph import LocalCeph  # here: keeps `evpipe --help` from importing it

    return LocalCeph(settings.evpipe_state_dir.resolve(), settings.evpipe_s3_port)


def up(settings: StackSettings, with_s3: bool) -> list[ComponentStatus]:
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
    results.append(ComponentStatus("clickhouse", True, f"embedded chdb at {state / 'clickhouse'} (CLICKHOUSE_URL unset)"))
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
    return results + external_services(settings)


def down(settings: StackSettings) -> list[ComponentStatus]:
    results = [ComponentStatus("broker", False, "stopped" if broker(settings).stop() else "was not running")]
    if (settings.evpipe_state_dir.resolve() / "ceph").exists():
        stopped = local_ceph(settings).stop()
        results.append(ComponentStatus("s3", False, "stopped" if stopped else "was not running"))
    return results
