"""Where the test suite gets each real server from.

Order, per service: an explicit environment variable; testcontainers with the
real image when a Docker engine answers; else the local stack (Tansu, `evpipe clickhouse serve`,
Ceph RGW, and the machine's Postgres and Redis). Each choice is recorded as a
``provider`` string so a test can assert that nothing silently fell back to a fake.
"""

from __future__ import annotations

import functools
import os
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from evpipe.local.daemon import port_open

TEST_STATE_DIR = Path(os.environ.get("EVPIPE_TEST_STATE_DIR", Path(__file__).resolve().parent.parent / ".evpipe-test"))
TEST_BROKER_PORT = int(os.environ.get("EVPIPE_TEST_BROKER_PORT", "19092"))
# Per checkout, like the S3 port: a ClickHouse server holds its checkout's data directory, so another
# checkout's server (maybe with its directory gone) must never be taken for this one's.
TEST_CLICKHOUSE_PORT = int(os.environ.get("EVPIPE_TEST_CLICKHOUSE_PORT",
                                          18123 + zlib.crc32(str(TEST_STATE_DIR).encode()) % 400))
# Each checkout gets its own S3 port (a local Ceph cluster belongs to one state dir),
# so a CI clone next to a developer's tree does not collide with the tree's cluster.
TEST_S3_PORT = int(os.environ.get("EVPIPE_TEST_S3_PORT", 17480 + zlib.crc32(str(TEST_STATE_DIR).encode()) % 400))


@dataclass
class Service:
    provider: str  # "env", "testcontainers:<image>" or "local:<server>"
    url: str
    extra: dict[str, str] = field(default_factory=dict)
    container: object | None = None


@functools.cache
def docker_available() -> bool:
    if os.environ.get("EVPIPE_TEST_NO_DOCKER"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def kafka_service() -> Service:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return Service("env", os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer("apache/kafka:3.8.0").start()
        return Service("testcontainers:apache/kafka", container.get_bootstrap_server(), container=container)
    from evpipe.local.broker import LocalBroker

    broker = LocalBroker(TEST_STATE_DIR, TEST_BROKER_PORT)
    broker.ensure()
    return Service("local:tansu", broker.bootstrap)


def clickhouse_service() -> Service:
    if os.environ.get("CLICKHOUSE_URL"):
        return Service("env", os.environ["CLICKHOUSE_URL"])
    if docker_available():
        from testcontainers.clickhouse import ClickHouseContainer

        container = ClickHouseContainer("clickhouse/clickhouse-server:24.8").start()
        host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
        url = f"http://{container.username}:{container.password}@{host}:{port}"
        return Service("testcontainers:clickhouse/clickhouse-server", url, container=container)
    # One server for every test worker (reused when it already answers), as a real server would be.
    from evpipe.local.clickhouse import LocalClickHouse

    server = LocalClickHouse(TEST_STATE_DIR, TEST_CLICKHOUSE_PORT)
    server.ensure()
    return Service("local:clickhouse-serve", server.url)


def postgres_service() -> Service:
    if os.environ.get("DATABASE_URL"):
        return Service("env", os.environ["DATABASE_URL"])
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine", driver=None).start()
        return Service("testcontainers:postgres", container.get_connection_url(), container=container)
    if not port_open("127.0.0.1", 5432):
        raise RuntimeError("no Postgres on 127.0.0.1:5432; set DATABASE_URL or start the machine's Postgres")
    return Service("local:postgres", "postgresql://127.0.0.1:5432/test")


def redis_service() -> Service:
    if os.environ.get("REDIS_URL"):
        return Service("env", os.environ["REDIS_URL"])
    if docker_available():
        from testcontainers.redis import RedisContainer

        container = RedisContainer("redis:7-alpine").start()
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        return Service("testcontainers:redis", f"redis://{host}:{port}/0", container=container)
    if not port_open("127.0.0.1", 6379):
        raise RuntimeError("no Redis on 127.0.0.1:6379; set REDIS_URL or start the machine's Redis")
    return Service("local:redis", "redis://127.0.0.1:6379/0")


def s3_service() -> Service:
    """An S3 endpoint with credentials in ``extra`` (access_key, secret_key, region)."""
    if os.environ.get("S3_ENDPOINT_URL"):
        return Service("env", os.environ["S3_ENDPOINT_URL"], extra={
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        })
    if docker_available():
        from testcontainers.minio import MinioContainer

        container = MinioContainer("minio/minio:RELEASE.2024-10-13T13-34-11Z").start()
        config = container.get_config()
        return Service("testcontainers:minio/minio", f"http://{config['endpoint']}", extra={
            "access_key": config["access_key"], "secret_key": config["secret_key"], "region": "us-east-1",
        }, container=container)
    from evpipe.local.ceph import LocalCeph

    ceph = LocalCeph(TEST_STATE_DIR, TEST_S3_PORT)
    ceph.ensure()
    creds = ceph.credentials()
    return Service("local:ceph-rgw", ceph.endpoint, extra={
        "access_key": creds.access_key, "secret_key": creds.secret_key, "region": "us-east-1",
    })
