"""Read a request body within the limits, inflating gzip as a stream, and split it into raw events.

The body is read chunk by chunk: the compressed size is checked as bytes
arrive (never buffering past the cap), and gzip is inflated with an output cap
per step, so a gzip bomb stops at the decompressed limit instead of growing in memory.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson


class BodyError(Exception):
    """A request-level problem: answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class MemoryBudget:
    """Bytes of request bodies held by all requests at once (read, inflated, or waiting for the backend).

    Without it, many slow requests during a backend outage could each hold a
    body up to the decompressed limit; past the budget new bodies get 503 at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, size: int) -> None:
        if self.used + size > self.limit:
            raise BodyError(503, f"gateway is holding {self.used} bytes of request bodies "
                                 f"(GATEWAY_MAX_INFLIGHT_BYTES={self.limit}): retry shortly", retry_after=1)
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_decompressed_bytes: int
    max_event_bytes: int
    max_batch_events: int


@dataclass
class ParsedBody:
    """Raw events in request order; ``broken`` holds NDJSON lines that were not JSON (index -> reason)."""

    events: list[Any]
    envelope: dict[str, Any] = field(default_factory=dict)  # batch-level fields (write_key, sentAt, context)
    broken: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (reason, raw text)
    single: bool = False


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB" if n >= 1048576 else f"{n} bytes"


async def read_body(stream: AsyncIterator[bytes], content_length: str | None, encoding: str | None,
                    limits: Limits, held: list[int], budget: MemoryBudget) -> bytes:
    """The (inflated) body. ``held[0]`` accumulates what was charged to ``budget``; the caller releases it."""
    encoding = (encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise BodyError(415, f"Content-Encoding {encoding[:40]!r} is not supported: send gzip or identity")
    too_big = BodyError(413, f"body over the {_mib(limits.max_body_bytes)} limit (GATEWAY_MAX_BODY_BYTES)")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise BodyError(400, "Content-Length is not a number") from None
        if declared > limits.max_body_bytes:
            raise too_big
    inflater = _Inflater(limits.max_decompressed_bytes) if encoding != "identity" else None
    parts: list[bytes] = []
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limits.max_body_bytes:
            raise too_big
        part = inflater.feed(chunk) if inflater else chunk
        budget.charge(len(part))
        held[0] += len(part)
        parts.append(part)
    if inflater:
        inflater.finish()
    return b"".join(parts)


class _Inflater:
    STEP = 256 * 1024

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.produced = 0
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        data = chunk
        while data and not self._z.eof:
            # Never ask for more than one byte past the cap: that is all we need to know it was exceeded.
            room = min(self.STEP, self.cap - self.produced + 1)
            try:
                piece = self._z.decompress(data, room)
            except zlib.error:
                raise BodyError(400, "body is not valid gzip") from None
            self.produced += len(piece)
            if self.produced > self.cap:
                raise BodyError(413, f"body inflates past the {_mib(self.cap)} limit "
                                     "(GATEWAY_MAX_DECOMPRESSED_BYTES)")
            out.append(piece)
            data = self._z.unconsumed_tail
        return b"".join(out)

    def finish(self) -> None:
        if not self._z.eof:
            raise BodyError(400, "body is not valid gzip (truncated)")


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
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
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
    broken: dict[int, tuple[str, str]] = {}
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        index = len(events)
        if len(line) > limits.max_event_bytes:
            broken[index] = (f"event is over the {limits.max_event_bytes}-byte limit", line.decode(errors="replace"))
            events.append(None)
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            broken[index] = (f"line is not valid JSON: {exc}", line.decode(errors="replace"))
            events.append(None)
        if len(events) > limits.max_batch_events:
            break  # parse_events answers 413; do not parse the rest
    return ParsedBody(events=events, broken=broken)
