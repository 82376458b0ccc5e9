"""Segment HTTP Tracking API messages mapped onto the evpipe envelope.

Segment-compatible SDKs send to ``/v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/group``, ``/v1/alias`` (one message) and ``/v1/batch``
(``{"batch": [...], "sentAt": ..., "context": ...}``). Each message becomes a
native client event, then goes through the same validator as native events.
The table in docs/gateway.md ("Segment mapping") documents every field.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from schemas import jsontext
from schemas.envelope import InvalidEvent, format_timestamp, is_uuid

CALLS = ("track", "identify", "page", "screen", "group", "alias")
# analytics.js posts to one-letter paths (/v1/t, /v1/b, ...) with text/plain bodies to skip CORS preflights.
SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias", "b": "batch"}
# A fixed namespace: a non-UUID messageId maps to the same event_id on every retry.
MESSAGE_ID_NAMESPACE = uuid.UUID("6f1d3c8e-3b7a-5f43-9a51-8d1f0c4b2e77")
# Transport fields with no meaning once the event is stored.
_TRANSPORT = frozenset({"writeKey", "sentAt", "receivedAt", "version", "_metadata", "options", "type"})
_MAPPED = frozenset({
    "messageId", "event", "name", "category", "userId", "anonymousId", "previousId", "groupId",
    "properties", "traits", "context", "integrations", "timestamp", "originalTimestamp", "channel",
})


def to_native(message: object, call: str | None, batch: dict[str, Any], source_id: str,
              received: dt.datetime) -> dict[str, Any]:
    """One Segment message as a native client event (raises InvalidEvent with the reason)."""
    if not isinstance(message, dict):
        raise InvalidEvent("message must be a JSON object")
    kind = message.get("type", call)
    if call is not None and kind != call:
        raise InvalidEvent(f"type: {kind!r} sent to /v1/{call}")
    if kind not in CALLS:
        raise InvalidEvent(f"type: expected one of {', '.join(CALLS)}")
    unknown = [k for k in message if k not in _MAPPED and k not in _TRANSPORT]
    if unknown:
        raise InvalidEvent(f"unknown field {unknown[0][:60]!r}")
    event: dict[str, Any] = {
        "type": _event_type(kind, message),
        "properties": _properties(kind, message),
        "context": _context(message, batch),
    }
    for segment_name, native in (("userId", "user_id"), ("anonymousId", "anonymous_id")):
        value = message.get(segment_name)
        if value is not None:
            # SDKs may send numeric ids; they are ids, not numbers.
            numeric = isinstance(value, (int, jsontext.Fragment)) and not isinstance(value, bool)
            event[native] = jsontext.number_text(value) if numeric else value
    if message.get("messageId") is not None:
        event["event_id"] = _event_id(message["messageId"], source_id)
    occurred = occurred_at(message, batch, received)
    if occurred is not None:
        event["occurred_at"] = occurred
    return event


def _event_type(kind: str, message: dict[str, Any]) -> Any:
    if kind == "track":
        if not message.get("event"):
            raise InvalidEvent("event: required for track")
        return message["event"]
    return kind


def _properties(kind: str, message: dict[str, Any]) -> dict[str, Any]:
    props = _object(message, "properties")
    traits = _object(message, "traits")
    if kind in ("page", "screen"):
        for name in ("name", "category"):
            if message.get(name) is not None:
                props = {**props, name: message[name]}
    elif kind == "identify":
        props = {**props, "traits": traits} if traits else props
    elif kind == "group":
        props = {**props, "group_id": message.get("groupId"), "traits": traits}
    elif kind == "alias":
        props = {**props, "previous_id": message.get("previousId")}
    return props


def _context(message: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    context = {**_object(batch, "context"), **_object(message, "context")}
    for name in ("integrations", "channel"):
        if message.get(name) is not None:
            context[name] = message[name]
    if isinstance(message.get("messageId"), str) and not is_uuid(message["messageId"]):
        context["message_id"] = message["messageId"]
    return context


def _object(holder: dict[str, Any], name: str) -> dict[str, Any]:
    value = holder.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"{name}: expected a JSON object")
    return value


def _event_id(message_id: object, source_id: str) -> str:
    if not isinstance(message_id, str) or not message_id:
        raise InvalidEvent("messageId: expected a non-empty string")
    if is_uuid(message_id):
        return message_id
    # analytics.js sends ids like "ajs-next-<hash>": derive a stable UUID so a retry dedupes.
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{source_id}\x00{message_id}"))


def _parse_time(value: object, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise InvalidEvent(f"{name}: expected an ISO 8601 string")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"{name}: not an ISO 8601 timestamp: {value[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def occurred_at(message: dict[str, Any], batch: dict[str, Any], received: dt.datetime) -> str | None:
    """Segment's clock-skew correction: timestamp = receivedAt - (sentAt - originalTimestamp).

    The device clock may be wrong, but the gap between when the event happened
    and when it was sent is measured on that one clock, so it is trusted.
    """
    raw = message.get("timestamp", message.get("originalTimestamp"))
    if raw is None:
        return None
    original = _parse_time(raw, "timestamp")
    sent_raw = message.get("sentAt", batch.get("sentAt"))
    if sent_raw is None:
        return format_timestamp(original)
    sent = _parse_time(sent_raw, "sentAt")
    try:
        return format_timestamp(received - (sent - original))
    except OverflowError:
        raise InvalidEvent("timestamp: out of range") from None
