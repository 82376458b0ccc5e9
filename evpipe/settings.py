"""Typed settings from environment variables: one settings object per process.

Each process declares a ``BaseSettings`` subclass composed from the mixins
below and loads it once with :func:`load`, which turns a validation failure
into a :class:`ConfigError` naming the bad variable and what it expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T", bound=BaseSettings)


class ConfigError(SystemExit):
    """Raised (and shown without a traceback) when the environment is invalid."""

    def __init__(self, message: str) -> None:
        super().__init__(f"configuration error: {message}")


class EnvSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)


class LogSettings(EnvSettings):
    evpipe_log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text for terminals, or one JSON object per line for a log pipeline."
    )


class StateSettings(EnvSettings):
    evpipe_state_dir: Path = Field(
        Path(".evpipe"), description="Directory for local state: broker logs, pids, embedded ClickHouse, archive."
    )


class KafkaSettings(EnvSettings):
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (e.g. MSK with SCRAM or IAM)."
    )
    kafka_sasl_mechanism: str = Field("", description="SASL mechanism when SASL is used: SCRAM-SHA-512, PLAIN, OAUTHBEARER.")
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: str = Field("", description="SASL password.")
    kafka_ssl_ca_location: str = Field("", description="CA bundle path for SSL/SASL_SSL (system store when empty).")
    kafka_topic: str = Field("events", description="Topic the gateway produces valid events to.")
    kafka_invalid_topic: str = Field("events.invalid", description="Topic for events the gateway rejected, with the reason.")
    kafka_dlq_topic: str = Field("events.dlq", description="Dead-letter topic for messages a consumer cannot process.")
    kafka_replay_topic: str = Field("events.replay", description="Low-priority topic that backfills are produced to.")
    kafka_overflow_topic: str = Field(
        "", description="Overflow lane: a key's events over GATEWAY_OVERFLOW_KEY_EVENTS_PER_S go here, spread over "
        "its partitions; the archiver and loader consume it like the main topic. Empty: KAFKA_TOPIC + '.overflow'."
    )
    kafka_partitions: int = Field(6, ge=1, description="Partitions per topic when evpipe creates topics.")
    kafka_replication_factor: int = Field(1, ge=1, description="Replication factor when evpipe creates topics.")

    @property
    def overflow_topic(self) -> str:
        return self.kafka_overflow_topic or f"{self.kafka_topic}.overflow"


class ClickHouseSettings(EnvSettings):
    clickhouse_url: str = Field(
        "http://127.0.0.1:8123", description="ClickHouse URL (http[s]://user:pass@host:port): a server, a "
        "cluster, ClickHouse Cloud, or `evpipe clickhouse serve` (the embedded engine, the local default)."
    )
    clickhouse_database: str = Field("evpipe", description="ClickHouse database holding the events tables.")
    clickhouse_timeout_s: float = Field(
        60.0, gt=0, description="Longest one ClickHouse request may take before the client gives up (the loader "
        "then retries): a frozen server must not stall a loader for clickhouse-connect's default 5 minutes."
    )
    clickhouse_cluster: str = Field(
        "", description="ClickHouse cluster name for ON CLUSTER DDL with Replicated tables and Distributed tables "
        "over them; empty: one node (or ClickHouse Cloud).",
    )


class PostgresSettings(EnvSettings):
    database_url: str = Field("postgresql://127.0.0.1:5432/test", description="Postgres URL (stages 1 and 2).")


class RedisSettings(EnvSettings):
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (stage 2 buffer).")
    redis_queue_key: str = Field("evpipe:events", description="Redis list the gateway pushes to and workers drain.")


class ArchiveSettings(EnvSettings):
    archive_uri: str = Field(
        "", description="Archive target: s3://bucket/prefix, file:///path or a path. Empty: <state dir>/archive."
    )
    s3_endpoint_url: str = Field("", description="S3 endpoint for non-AWS S3 (Ceph RGW, MinIO). Empty: AWS.")


def load(cls: type[T]) -> T:
    """Instantiate settings from the environment, or raise ConfigError naming the variable."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "?"
            problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError("; ".join(problems)) from None


def describe(cls: type[BaseSettings]) -> str:
    """Environment variables of a settings class, for a command's --help."""
    lines = ["environment variables:"]
    for name, info in cls.model_fields.items():
        default = info.default
        shown = f" [default: {default}]" if default not in ("", None) else ""
        lines.append(f"  {name.upper():<28} {info.description or ''}{shown}")
    return "\n".join(lines)


def redact_url(url: str) -> str:
    """A connection URL safe to print: the password, if any, replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
