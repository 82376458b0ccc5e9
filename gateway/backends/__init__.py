"""Backends: where accepted events go. Chosen by GATEWAY_BACKEND; see base.Backend for the contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.backends.base import Backend
from gateway.settings import GatewaySettings

if TYPE_CHECKING:  # gateway.overflow imports backends.base: a runtime import here would be a cycle
    from gateway.overflow import HotKeys


def create_backend(settings: GatewaySettings, hot_keys: HotKeys | None = None) -> Backend:
    """``hot_keys``: the overflow lane's buckets (a partitioned backend, Kafka, uses them)."""
    # Imported lazily: a Redis deployment needs neither librdkafka nor psycopg loaded.
    if settings.gateway_backend == "kafka":
        from gateway.backends.kafka import KafkaBackend

        return KafkaBackend(settings, hot_keys)
    if settings.gateway_backend == "redis":
        from gateway.backends.redis import RedisBackend

        return RedisBackend(settings)
    from gateway.backends.postgres import PostgresBackend

    return PostgresBackend(settings)
