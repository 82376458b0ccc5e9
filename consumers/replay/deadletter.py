"""Dead letters: list them with their reasons, and re-produce chosen ones after a fix."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson
from confluent_kafka import KafkaError, Message, Producer

from consumers.replay.reader import read_topic
from evpipe.kafka import producer_config
from evpipe.settings import KafkaSettings
from schemas.envelope import kafka_key


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int
    offset: int
    timestamp: dt.datetime | None
    error: str
    origin: str  # topic/partition@offset the message came from
    value: bytes

    def matches(self, needle: str | None) -> bool:
        if not needle:
            return True
        needle = needle.lower()
        return needle in self.error.lower() or needle in self.value.decode(errors="replace").lower()

    def row(self, width: int = 60) -> dict[str, object]:
        text = self.value.decode(errors="replace")
        return {
            "dlq offset": f"{self.partition}@{self.offset}",
            "time": self.timestamp.isoformat(timespec="seconds") if self.timestamp else "",
            "origin": self.origin, "error": self.error[:width],
            "payload": text if len(text) <= width else text[: width - 1] + "…",
        }


@dataclass
class RedriveSummary:
    read: int = 0
    matched: int = 0
    redriven: int = 0
    failed: int = 0


def _header(message: Message, name: str) -> str:
    for key, value in list(message.headers() or []):
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""


def to_dead_letter(message: Message) -> DeadLetterRecord:
    kind, millis = message.timestamp()
    when = dt.datetime.fromtimestamp(millis / 1000, dt.UTC) if kind and millis > 0 else None
    origin = f"{_header(message, 'topic')}/{_header(message, 'partition')}@{_header(message, 'offset')}"
    return DeadLetterRecord(message.partition() or 0, message.offset() or 0, when, _header(message, "error") or "(no reason)",
                      origin, message.value() or b"")


def dead_letters(settings: KafkaSettings, topic: str, since: dt.datetime | None = None,
                 needle: str | None = None) -> Iterator[tuple[DeadLetterRecord, bool]]:
    """Every dead letter of ``topic`` (from ``since``), with whether it matches ``needle``."""
    for message in read_topic(settings, topic, since):
        letter = to_dead_letter(message)
        yield letter, letter.matches(needle)


def _key(value: bytes) -> bytes | None:
    """The event's partitioning key when the payload is an event; else let Kafka choose."""
    try:
        event = orjson.loads(value)
        return kafka_key(event) if isinstance(event, dict) and event.get("source_id") else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def redrive(settings: KafkaSettings, letters: Iterable[tuple[DeadLetterRecord, bool]], target_topic: str,
            dry_run: bool = False, progress: Callable[[DeadLetterRecord, bool], None] | None = None) -> RedriveSummary:
    """Re-produce the matching dead letters to ``target_topic``; returns once Kafka acknowledged them.

    Sinks deduplicate by event_id, so redriving a letter twice does not duplicate it in ClickHouse.
    """
    summary = RedriveSummary()
    producer = None if dry_run else Producer(producer_config(settings))
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    for letter, matched in letters:
        summary.read += 1
        if matched:
            summary.matched += 1
            if producer is not None:
                producer.produce(target_topic, key=_key(letter.value), value=letter.value, on_delivery=delivered)
                producer.poll(0)
        if progress:
            progress(letter, matched)
    if producer is not None:
        remaining = producer.flush(30)
        summary.failed = remaining + len(errors)
        summary.redriven = summary.matched - summary.failed
    return summary
