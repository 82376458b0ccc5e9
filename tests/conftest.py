"""Session fixtures for the real servers (see tests/providers.py for how each is chosen)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.providers import (
    Service,
    clickhouse_service,
    kafka_service,
    postgres_service,
    redis_service,
    s3_service,
    unique_name,
)

# Clients in this process talk to S3 servers that predate flexible checksums (Ceph RGW).
os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """Say which local test servers keep running after the session, and how to stop them.

    The fixtures leave them running on purpose, so the next session reuses them (Ceph takes ~20 s to
    start); a silent leftover is what this avoids. xdist workers report nothing: the controller does.
    """
    if hasattr(config, "workerinput"):
        return
    from tests.local_servers import summary

    lines = summary()
    if lines:
        terminalreporter.section("local test servers left running")
        for line in lines:
            terminalreporter.write_line(line)


def _stop(service: Service) -> None:
    if service.container is not None:
        service.container.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def kafka() -> Iterator[Service]:
    service = kafka_service()
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def clickhouse() -> Iterator[Service]:
    service = clickhouse_service()
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Service]:
    service = postgres_service()
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Service]:
    service = redis_service()
    yield service
    _stop(service)


@pytest.fixture(scope="session")
def s3() -> Iterator[Service]:
    service = s3_service()
    yield service
    _stop(service)


@pytest.fixture
def topic(kafka: Service) -> str:
    """A fresh topic name (created by the test with the partitions it needs)."""
    return unique_name("t")


@pytest.fixture
def ch_database(clickhouse: Service) -> Iterator[str]:
    """A fresh ClickHouse database, dropped after the test."""
    from evpipe.clickhouse import connect

    name = unique_name("db")
    client = connect(clickhouse.url)
    client.command(f"CREATE DATABASE IF NOT EXISTS {name}")
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def pg_schema(postgres: Service) -> Iterator[str]:
    """A fresh Postgres schema, dropped (cascade) after the test."""
    import psycopg

    name = unique_name("s")
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def redis_prefix(redis_server: Service) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    import redis

    prefix = unique_name("evpipe-test") + ":"
    yield prefix
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)


@pytest.fixture
def s3_bucket(s3: Service) -> str:
    """A fresh bucket on the S3 server."""
    import boto3

    name = unique_name("b").replace("_", "-")
    client = boto3.client(
        "s3", endpoint_url=s3.url, aws_access_key_id=s3.extra["access_key"],
        aws_secret_access_key=s3.extra["secret_key"], region_name=s3.extra["region"],
    )
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """xdist's worker id, or 'main' without xdist."""
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))


from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evpipe.local.ceph import RadosGateway


@pytest.fixture
def s3_gateway(s3: Service) -> Iterator[RadosGateway]:
    """A radosgw of the test's own on the shared local Ceph cluster, for fault tests.

    Pause/resume (SIGSTOP/SIGCONT) or stop/start it to make "S3 is down" without
    disturbing the tests sharing the main gateway. Same buckets and credentials as
    ``s3`` (use ``s3.extra``); its URL is ``s3_gateway.endpoint``. Skipped when S3
    is not the local Ceph RGW (no process to control).
    """
    if s3.provider != "local:ceph-rgw":
        pytest.skip(f"fault injection needs the local Ceph RGW, S3 is {s3.provider}")
    from evpipe.local.ceph import LocalCeph
    from tests.providers import TEST_S3_PORT, TEST_STATE_DIR

    cluster = LocalCeph(TEST_STATE_DIR, TEST_S3_PORT)
    if cluster.rgw.daemon.pid() is None:
        pytest.skip(f"the S3 server on port {TEST_S3_PORT} belongs to another checkout's cluster")
    gateway = cluster.gateway()
    yield gateway
    gateway.stop()
