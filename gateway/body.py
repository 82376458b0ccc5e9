"""Read a request body within the limits, inflating gzip as a stream, and split it into raw events.

The body is read chunk by chunk: the compressed size is checked as bytes
arrive (never buffering past the cap), and gzip is inflated with an output cap
per step, so a gzip bomb stops at the decompressed limit instead of growing in
memory. A body is read whole or refused: every gzip member is inflated, and
bytes after the end of the gzip data, or a stream cut short, are answered 400.
The bytes as sent are kept aside (``Capture``) so a refused body can be stored
with its reason.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.budget import Hold
from gateway.errors import BodyError
from schemas import jsontext

__all__ = ["BodyError", "Capture", "Limits", "ParsedBody", "parse_events", "read_body"]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_decompressed_bytes: int
    max_event_bytes: int
    max_batch_events: int
    # The settings named in a 413, so the message says which knob to turn.
    body_setting: str = "GATEWAY_MAX_BODY_BYTES"
    inflated_setting: str = "GATEWAY_MAX_DECOMPRESSED_BYTES"


@dataclass
class ParsedBody:
    """Raw events in request order; ``broken`` holds NDJSON lines that were not JSON (index -> reason)."""

    events: list[Any]
    envelope: dict[str, Any] = field(default_factory=dict)  # batch-level fields (write_key, sentAt, context)
    broken: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # index -> (reason, the line as sent)
    single: bool = False


@dataclass
class Capture:
    """The body's bytes as they arrived on the wire (the same objects as the body when not compressed)."""

    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB" if n >= 1048576 else f"{n} bytes"


def check_encoding(encoding: str | None) -> str:
    encoding = (encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise BodyError(415, f"Content-Encoding {encoding[:40]!r} is not supported: send gzip or identity")
    return encoding


async def read_body(stream: AsyncIterator[bytes], content_length: str | None, encoding: str,
                    limits: Limits, hold: Hold, capture: Capture, timeout_s: float) -> bytes:
    """The (inflated) body, charged to ``hold`` as it grows; the caller releases the hold.

    Past ``timeout_s`` the read stops with 408 (and the connection is closed): a client that
    stalls mid-body must not keep its bytes and a connection forever.
    """
    too_big = BodyError(413, f"body over the {_mib(limits.max_body_bytes)} limit ({limits.body_setting})")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise BodyError(400, "Content-Length is not a number") from None
        if declared > limits.max_body_bytes:
            raise too_big
    inflater = _Inflater(limits.max_decompressed_bytes, limits.inflated_setting) if encoding != "identity" else None
    parts: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in stream:
                received += len(chunk)
                capture.chunks.append(chunk)
                if received > limits.max_body_bytes:
                    raise too_big
                # Compressed bytes are held too (kept for the invalid store): both count.
                part = inflater.feed(chunk) if inflater else chunk
                hold.charge(len(part) + (len(chunk) if inflater else 0))
                parts.append(part)
    except TimeoutError:
        raise BodyError(408, f"body not received within {timeout_s:g}s (GATEWAY_BODY_TIMEOUT_S)",
                        close=True) from None
    capture.complete = True
    if inflater:
        inflater.finish()
    return b"".join(parts)


class _Inflater:
    """gzip with every member inflated (RFC 1952 allows concatenated members) under one output cap."""

    STEP = 256 * 1024

    def __init__(self, cap: int, setting: str) -> None:
        self.cap = cap
        self.setting = setting
        self.produced = 0
        self.members = 0  # members read to their end
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        pending = chunk
        while pending:
            if self._z.eof:  # the previous member ended: what follows must be another member
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out.append(self._inflate(pending))
            pending = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
        return b"".join(out)

    def _inflate(self, data: bytes) -> bytes:
        # Never ask for more than one byte past the cap: that is all we need to know it was exceeded.
        room = min(self.STEP, self.cap - self.produced + 1)
        try:
            piece = self._z.decompress(data, room)
        except zlib.error:
            if self.members:
                raise BodyError(400, f"body has data after the end of its gzip stream ({self.members} complete "
                                     "member(s)): send gzip members only") from None
            raise BodyError(400, "body is not valid gzip") from None
        self.produced += len(piece)
        if self.produced > self.cap:
            raise BodyError(413, f"body inflates past the {_mib(self.cap)} limit ({self.setting})")
        if self._z.eof:
            self.members += 1
        return piece

    def finish(self) -> None:
        if not self._z.eof:
            raise BodyError(400, "body is not valid gzip (the stream is truncated)")


def parse_events(body: bytes, content_type: str | None, limits: Limits, batch_key: str = "batch") -> ParsedBody:
    """Split a body into raw events: one object, an array, {"batch": [...]}, or NDJSON."""
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media in ("application/x-ndjson", "application/ndjson", "application/jsonl"):
        parsed = _parse_ndjson(body, limits)
    else:
        parsed = _parse_json(body, batch_key)
    if len(parsed.events) > limits.max_batch_events:
        raise BodyError(413, f"{len(parsed.events)} events, over the {limits.max_batch_events}-event batch limit "
                             "(GATEWAY_MAX_BATCH_EVENTS)")
    if not parsed.events:
        raise BodyError(400, "no events in the body")
    return parsed


def _parse_json(body: bytes, batch_key: str) -> ParsedBody:
    try:
        document = jsontext.loads(body)
    except jsontext.JsonError as exc:
        raise BodyError(400, f"body is not valid JSON: {exc}") from None
    if isinstance(document, list):
        return ParsedBody(events=document)
    if isinstance(document, dict):
        if batch_key in document:
            batch = document[batch_key]
            if not isinstance(batch, list):
                raise BodyError(400, f"{batch_key!r} must be a JSON array of events")
            envelope = {k: v for k, v in document.items() if k != batch_key}
            return ParsedBody(events=batch, envelope=envelope)
        return ParsedBody(events=[document], single=True)
    raise BodyError(400, "body must be a JSON object, an array of objects, or {\"batch\": [...]}")


def _parse_ndjson(body: bytes, limits: Limits) -> ParsedBody:
    events: list[Any] = []
    broken: dict[int, tuple[str, bytes]] = {}
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        index = len(events)
        if len(line) > limits.max_event_bytes:
            broken[index] = (f"event is over the {limits.max_event_bytes}-byte limit", line)
            events.append(None)
            continue
        try:
            events.append(jsontext.loads(line))
        except jsontext.JsonError as exc:
            broken[index] = (f"line is not valid JSON: {exc}", line)
            events.append(None)
        if len(events) > limits.max_batch_events:
            break  # parse_events answers 413; do not parse the rest
    return ParsedBody(events=events, broken=broken)
