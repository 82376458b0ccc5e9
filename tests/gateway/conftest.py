"""Fixtures for the gateway tests: an in-process app per backend, with unique topics/keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.helpers import KEYS, kafka_settings
from tests.providers import Service


@pytest.fixture
def kafka_gateway_settings(kafka: Service, topic: str) -> GatewaySettings:
    return kafka_settings(kafka.url, topic)


@pytest.fixture
def kafka_client(kafka_gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(kafka_gateway_settings), client=("203.0.113.7", 50000)) as client:
        yield client


@pytest.fixture
def redis_gateway_settings(redis_server: Service, redis_prefix: str) -> GatewaySettings:
    return GatewaySettings(gateway_backend="redis", redis_url=redis_server.url,
                           redis_queue_key=f"{redis_prefix}events", gateway_api_keys=KEYS)


@pytest.fixture
def redis_client(redis_gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(redis_gateway_settings)) as client:
        yield client
