"""librdkafka configuration built from KafkaSettings, and topic administration."""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from evpipe.settings import KafkaSettings


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by producers, consumers and admin clients."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password
    if settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return config


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Durable producer: a delivery report means every in-sync replica has the message."""
    config = client_config(settings) | {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "batch.num.messages": 10000,
        "queue.buffering.max.kbytes": 256 * 1024,
    }
    return config | overrides


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Consumer-group member with manual commits.

    ``fetch.queue.backoff.ms`` is lowered from librdkafka's 1 s default, which
    otherwise stalls fetching whenever the local queue is briefly full.
    """
    config = client_config(settings) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.queue.backoff.ms": 10,
        "queued.max.messages.kbytes": 64 * 1024,
        "session.timeout.ms": 30000,
    }
    return config | overrides


def admin_client(settings: KafkaSettings) -> AdminClient:
    return AdminClient(client_config(settings))


def create_topics(
    settings: KafkaSettings, topics: list[str], partitions: int | None = None, timeout: float = 15.0
) -> dict[str, str]:
    """Create topics that do not exist yet; returns {topic: 'created' | 'exists'}."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    result = {topic: "exists" for topic in topics if topic in existing}
    wanted = [
        NewTopic(t, num_partitions=partitions or settings.kafka_partitions,
                 replication_factor=settings.kafka_replication_factor)
        for t in topics if t not in existing
    ]
    if wanted:
        for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
            try:
                future.result(timeout)
                result[topic] = "created"
            except Exception as exc:  # TOPIC_ALREADY_EXISTS from a concurrent creator is fine
                if "already exists" in str(exc).lower() or "TOPIC_ALREADY_EXISTS" in str(exc):
                    result[topic] = "exists"
                else:
                    raise
    return result


def pipeline_topics(settings: KafkaSettings) -> list[str]:
    return [settings.kafka_topic, settings.overflow_topic, settings.kafka_invalid_topic, settings.kafka_dlq_topic,
            settings.kafka_replay_topic]
