"""Validate client events into the canonical envelope and encode it for the wire.

The wire format (the Kafka message value, the Redis list item) is one JSON
object per event with every field of ``FIELDS`` present, in order:

* timestamps are ISO 8601 UTC strings with milliseconds: ``2026-11-21T03:55:10.123Z``;
* ``properties`` and ``context`` are carried as JSON *text* (a string holding a
  JSON object). Every sink stores them verbatim as a string column, so
  consumers can parse a whole batch vectorised (``pyarrow.json``, ClickHouse
  ``JSONEachRow``) without building one Python dict per event;
* absent optional fields are ``null``.

The Kafka key is ``source_id:user_id`` (or ``source_id:anonymous_id`` when
there is no user id), so one user's events stay ordered on one partition.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import uuid_utils

from schemas.fields import FIELDS, IDENTITY_FIELDS, SCHEMA_VERSION, Field, Kind, Origin

DEFAULT_MAX_EVENT_BYTES = 64 * 1024
_MIN_TS = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_TS = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


class InvalidEvent(ValueError):
    """An event that cannot be accepted; the message is the reason shown to the client."""


@dataclass(frozen=True)
class Enrichment:
    """What the gateway knows about a request and stamps on each of its events."""

    source_id: str
    received_at: str
    ip: str | None = None
    user_agent: str | None = None


def format_timestamp(moment: dt.datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z: the one timestamp form on the wire."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def now_timestamp() -> str:
    return format_timestamp(dt.datetime.now(dt.UTC))


def parse_timestamp(value: object, name: str) -> str:
    """Accept ISO 8601 (any offset; naive means UTC) or epoch milliseconds."""
    if isinstance(value, bool):
        raise InvalidEvent(f"{name}: expected an ISO 8601 string or epoch milliseconds")
    if isinstance(value, (int, float)):
        try:
            moment = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidEvent(f"{name}: epoch milliseconds out of range") from None
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(f"{name}: not an ISO 8601 timestamp: {value[:40]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    else:
        raise InvalidEvent(f"{name}: expected an ISO 8601 string or epoch milliseconds")
    if not _MIN_TS <= moment < _MAX_TS:
        raise InvalidEvent(f"{name}: outside 1970-01-01..2200-01-01")
    return format_timestamp(moment)


def kafka_key(event: dict[str, Any]) -> bytes:
    identity = event.get("user_id") or event.get("anonymous_id") or ""
    return f"{event['source_id']}:{identity}".encode()


def decode(value: bytes) -> dict[str, Any]:
    """Parse one wire-format message (no validation: consumers trust the gateway)."""
    event: dict[str, Any] = orjson.loads(value)
    return event


class EventValidator:
    """Turns one client event (a parsed JSON object) into a wire-format envelope.

    Built from ``FIELDS``: a client may set the fields whose origin allows it,
    any other key is rejected by name (nothing is silently dropped).
    """

    def __init__(
        self,
        fields: tuple[Field, ...] = FIELDS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.fields = fields
        self.max_event_bytes = max_event_bytes
        self._client_fields = {f.name: f for f in fields if f.origin is not Origin.GATEWAY}
        self._gateway_only = {f.name for f in fields if f.origin is Origin.GATEWAY}

    def normalize(self, raw: object, enrichment: Enrichment) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise InvalidEvent("event must be a JSON object")
        for key in raw:
            if key not in self._client_fields:
                if key in self._gateway_only:
                    raise InvalidEvent(f"{key}: set by the gateway, not by clients")
                raise InvalidEvent(f"unknown field {key[:60]!r}")
        event: dict[str, Any] = {}
        for f in self.fields:
            event[f.name] = self._field_value(f, raw.get(f.name), enrichment)
        if not any(event.get(name) for name in IDENTITY_FIELDS):
            raise InvalidEvent("one of user_id or anonymous_id is required")
        return event

    def encode(self, raw: object, enrichment: Enrichment) -> tuple[bytes, bytes, dict[str, Any]]:
        """Validate and serialise: returns (kafka key, wire value, envelope)."""
        event = self.normalize(raw, enrichment)
        value = orjson.dumps(event)
        if len(value) > self.max_event_bytes:
            raise InvalidEvent(f"event is {len(value)} bytes, over the {self.max_event_bytes}-byte limit")
        return kafka_key(event), value, event

    def _field_value(self, f: Field, value: object, enrichment: Enrichment) -> object:
        if f.origin is Origin.GATEWAY:
            return _gateway_value(f.name, enrichment)
        if value is None:
            return self._default(f, enrichment)
        if f.name == "context":
            if not isinstance(value, dict):
                raise InvalidEvent("context: expected a JSON object")
            return _json_text(_merge_context(value, enrichment), f.name)
        return _check(f, value)

    def _default(self, f: Field, enrichment: Enrichment) -> object:
        if f.name == "event_id":
            return str(uuid_utils.uuid7())
        if f.name == "context":
            return _json_text(_merge_context({}, enrichment), f.name)
        if f.kind is Kind.JSON_OBJECT:
            return "{}"
        if f.required:
            raise InvalidEvent(f"{f.name}: required")
        return None


def _gateway_value(name: str, enrichment: Enrichment) -> object:
    if name == "source_id":
        return enrichment.source_id
    if name == "received_at":
        return enrichment.received_at
    if name == "schema_version":
        return SCHEMA_VERSION
    raise InvalidEvent(f"{name}: gateway field with no gateway value")  # schema/edit mismatch


def _merge_context(client: dict[str, Any], enrichment: Enrichment) -> dict[str, Any]:
    merged = dict(client)
    if enrichment.ip is not None:
        merged["ip"] = enrichment.ip
    if enrichment.user_agent is not None and "user_agent" not in merged:
        merged["user_agent"] = enrichment.user_agent
    return merged


def _json_text(value: dict[str, Any], name: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidEvent(f"{name}: cannot be encoded: {exc}") from None


def _check(f: Field, value: object) -> object:
    if f.kind is Kind.TEXT:
        if not isinstance(value, str):
            raise InvalidEvent(f"{f.name}: expected a string")
        if len(value) < f.min_length:
            raise InvalidEvent(f"{f.name}: must not be empty")
        if f.max_length is not None and len(value) > f.max_length:
            raise InvalidEvent(f"{f.name}: longer than {f.max_length} characters")
        return value
    if f.kind is Kind.UUID:
        if not isinstance(value, str):
            raise InvalidEvent(f"{f.name}: expected a UUID string")
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise InvalidEvent(f"{f.name}: not a UUID: {value[:40]!r}") from None
    if f.kind is Kind.TIMESTAMP:
        return parse_timestamp(value, f.name)
    if f.kind is Kind.JSON_OBJECT:
        if not isinstance(value, dict):
            raise InvalidEvent(f"{f.name}: expected a JSON object")
        return _json_text(value, f.name)
    if f.kind is Kind.SMALLINT:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 32768:
            raise InvalidEvent(f"{f.name}: expected an integer 0..32767")
        return value
    raise InvalidEvent(f"{f.name}: unsupported kind {f.kind}")
