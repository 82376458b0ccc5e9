"""One message as one JSON line: topic, partition, offset, timestamp, key, headers, value.

Keys, header values and values are printed as text when they are UTF-8 (the pipeline's are: JSON events,
``source:user`` keys), else as ``{"base64": "..."}``, so every byte is shown and a line is always valid
JSON. A value is printed as the text it is, not re-encoded: an event's numbers keep their digits
(``jq '.value | fromjson'`` parses it). A header name sent more than once maps to the list of its values.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from confluent_kafka import Message

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def message_line(message: Message) -> bytes:
    record = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": timestamp_text(message),
        "key": shown(message.key()),
        "headers": headers_object(message.headers()),
        "value": shown(message.value()),
    }
    return orjson.dumps(record)


def shown(data: bytes | str | None) -> Any:
    """Text for UTF-8 bytes, {"base64": ...} for other bytes, None for none."""
    if data is None or isinstance(data, str):
        return data
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


HeaderValue = str | bytes | None


def headers_object(headers: list[tuple[str, HeaderValue]] | dict[str, HeaderValue] | None) -> dict[str, Any]:
    pairs = headers.items() if isinstance(headers, dict) else headers or []
    shown_headers: dict[str, Any] = {}
    for name, value in pairs:
        if name not in shown_headers:
            shown_headers[name] = shown(value)
        elif isinstance(shown_headers[name], list):
            shown_headers[name].append(shown(value))
        else:
            shown_headers[name] = [shown_headers[name], shown(value)]
    return shown_headers


def timestamp_text(message: Message) -> str | None:
    """The message's timestamp, ISO 8601 UTC with milliseconds like the events' own; None when it has none."""
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

    kind, ms = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE:
        return None
    moment = EPOCH + dt.timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
