"""Backends: where accepted events go. Chosen by GATEWAY_BACKEND; see base.Backend for the contract."""

from __future__ import annotations

from gateway.backends.base import Backend
from gateway.settings import GatewaySettings


def create_backend(settings: GatewaySettings) -> Backend:
    # Imported lazily: a Redis deployment needs neither librdkafka nor psycopg loaded.
    if settings.gateway_backend == "kafka":
        from gateway.backends.kafka import KafkaBackend

        return KafkaBackend(settings)
    if settings.gateway_backend == "redis":
        from gateway.backends.redis import RedisBackend

        return RedisBackend(settings)
    from gateway.backends.postgres import PostgresBackend

    return PostgresBackend(settings)
