"""The event shape, defined once (``fields``), and everything derived from it."""

from schemas.envelope import Enrichment, EventValidator, InvalidEvent, decode, kafka_key, now_timestamp
from schemas.fields import FIELDS, SCHEMA_VERSION, Field, Kind, Origin

__all__ = [
    "FIELDS", "SCHEMA_VERSION", "Enrichment", "EventValidator", "Field", "InvalidEvent",
    "Kind", "Origin", "decode", "kafka_key", "now_timestamp",
]
