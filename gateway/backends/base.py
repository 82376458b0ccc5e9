"""The contract every backend keeps: ``send`` returns only once the backend durably holds the events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import orjson

from schemas import jsontext


class Unavailable(Exception):
    """The backend cannot take events now: answered 503 with Retry-After.

    ``enqueued`` tells whether any event may still reach the backend (e.g. the
    producer keeps retrying after the deadline), so the client must resend with
    the same event ids for the sinks to deduplicate.
    """

    def __init__(self, reason: str, retry_after: int = 1, enqueued: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.enqueued = enqueued


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x, and one is built per event
class Record:
    key: bytes
    value: bytes  # wire format (schemas.envelope)
    event: dict[str, Any]  # the same envelope as a dict
    spread: bool = False  # over its key's rate: goes to the overflow lane (gateway.overflow), set once per request


@dataclass(frozen=True)
class RawBytes:
    """Bytes kept as they were sent: the first ``limit`` of them, with the size and SHA-256 of all that arrived.

    Kept for what has no parsed form: a whole body refused before its events were read, and an
    NDJSON line that is not JSON. Text that is valid UTF-8 is kept as text, anything else as base64,
    so the original bytes are always recoverable (never U+FFFD replacements).
    """

    prefix: bytes
    size: int
    sha256: str
    complete: bool = True  # False: the client's body was cut off at a limit, ``size`` counts what arrived
    content_type: str | None = None
    content_encoding: str | None = None

    @classmethod
    def of(cls, chunks: Iterable[bytes], limit: int, complete: bool = True, content_type: str | None = None,
           content_encoding: str | None = None) -> RawBytes:
        digest, prefix, size = hashlib.sha256(), bytearray(), 0
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            if len(prefix) < limit:
                prefix += chunk[:limit - len(prefix)]
        return cls(bytes(prefix), size, digest.hexdigest(), complete, content_type, content_encoding)

    def document(self) -> dict[str, Any]:
        try:
            data, encoding = self.prefix.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            data, encoding = base64.b64encode(self.prefix).decode("ascii"), "base64"
        document: dict[str, Any] = {"encoding": encoding, "data": data, "size": self.size,
                                    "kept": len(self.prefix), "sha256": self.sha256, "complete": self.complete}
        if self.content_type:
            document["content_type"] = self.content_type[:200]
        if self.content_encoding:
            document["content_encoding"] = self.content_encoding[:200]
        return document


WHOLE_BODY = -1  # the index of a rejection that refused the whole request body, not one event of it


@dataclass(frozen=True)
class Rejected:
    index: int  # the event's position in the request, or WHOLE_BODY
    reason: str
    payload: Any  # the original event as parsed, or None when only ``raw`` bytes are kept
    source_id: str
    received_at: str
    raw: RawBytes | None = None
    # A tracking-plan refusal: each violation as {"pointer", "expected", "got"} (reason lists them as text too)
    violations: tuple[dict[str, str], ...] | None = None


class Inflight:
    """Events handed to a request-response backend (Redis, Postgres) and not yet acknowledged.

    ``send`` wraps its one round trip in :meth:`within`: the count is what ``Backend.queued``
    reports, and a round trip past the deadline becomes ``Unavailable`` (the events may still
    land, so the client is told to resend with the same ids).
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.count = 0

    @contextlib.asynccontextmanager
    async def within(self, records: int, deadline: float) -> AsyncIterator[None]:
        self.count += records
        try:
            async with asyncio.timeout(deadline):
                yield
        except TimeoutError:
            raise Unavailable(f"{self.backend} did not answer within {deadline:g}s", max(1, int(deadline)),
                              enqueued=True) from None
        finally:
            self.count -= records


class Backend(Protocol):
    name: str

    async def start(self) -> None: ...

    async def send(self, records: list[Record], rejected: list[Rejected], deadline: float) -> None:
        """Store valid records and keep rejected ones for inspection; raise Unavailable past ``deadline`` s."""

    async def ready(self) -> str | None:
        """None when reachable and not saturated, else the reason it is not ready."""

    def queued(self) -> int:
        """Events handed to the backend client and not yet acknowledged."""

    async def close(self) -> None:
        """Flush whatever was accepted, then release connections."""


@dataclass(frozen=True, slots=True)
class Message:
    """One broker message exactly as it is produced: what the fallback store keeps and later re-produces."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@runtime_checkable
class MessageBackend(Backend, Protocol):
    """A backend whose events are broker messages (Kafka): it can spell a request as messages, and produce
    stored messages again. Only such a backend gets the durable fallback (gateway.fallback)."""

    def messages(self, records: list[Record], rejected: list[Rejected]) -> list[Message]:
        """What ``send`` would produce for these events, message for message."""

    def misconfigured(self) -> str | None:
        """A not-ready reason that no fallback makes good (a missing topic, a dead producer): readiness
        fails even while the fallback store takes every request, so a bad rollout stops and a broken
        process is replaced."""

    async def produce(self, messages: list[Message], deadline: float) -> None:
        """Produce stored messages as they are; returns once all are acknowledged, else raises Unavailable.

        Waits for room below half of the producer queue, so live requests keep priority."""


# Kept payloads are capped: a rejected 2 MiB event must not make the invalid store (a Kafka message is
# at most 1 MB by default) refuse the whole request. The kept prefix still shows what was sent.
MAX_KEPT_PAYLOAD_BYTES = 256 * 1024


def invalid_document(rejected: Rejected) -> dict[str, Any]:
    """How a rejected event is kept: the reason next to the original payload (its JSON text if over the cap)."""
    document: dict[str, Any] = {"error": rejected.reason, "payload": rejected.payload,
                                "source_id": rejected.source_id, "received_at": rejected.received_at}
    if rejected.violations is not None:
        document["violations"] = list(rejected.violations)
    if rejected.raw is not None:
        document["raw"] = rejected.raw.document()
        document["whole_body"] = rejected.index == WHOLE_BODY
        return document
    payload = rejected.payload
    if isinstance(payload, str):
        text = payload
    else:
        try:
            text = jsontext.dumps(payload).decode()
        except (TypeError, orjson.JSONEncodeError):
            # Nested deeper than orjson serialises (254) though the parser accepted it (1024):
            # keep it as JSON text, written without recursion.
            text = dump_deep(payload)
            document["payload"] = text
    if len(text) > MAX_KEPT_PAYLOAD_BYTES:
        document["payload"] = text[:MAX_KEPT_PAYLOAD_BYTES]
        document["payload_truncated_from"] = len(text)
    return document


def dump_deep(value: Any) -> str:
    """JSON text of arbitrarily deep dicts/lists, iteratively (scalars go through orjson)."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token):
            out.append(item.text)
        elif isinstance(item, dict):
            out.append("{")
            stack.append(_Token("}"))
            for i, (key, child) in enumerate(reversed(list(item.items()))):
                stack.append(child)
                stack.append(_Token(orjson.dumps(str(key)).decode() + ":"))
                if i < len(item) - 1:
                    stack.append(_Token(","))
        elif isinstance(item, list):
            out.append("[")
            stack.append(_Token("]"))
            for i, child in enumerate(reversed(item)):
                stack.append(child)
                if i < len(item) - 1:
                    stack.append(_Token(","))
        else:
            out.append(jsontext.dumps(item).decode())
    return "".join(out)


class _Token:
    """Literal JSON punctuation queued on dump_deep's stack."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def encode_invalid(rejected: Rejected) -> bytes:
    """The invalid store's message for one rejection (numbers of the payload written exactly as sent)."""
    return jsontext.dumps(invalid_document(rejected))


def payload_text(rejected: Rejected) -> str:
    """What a table's one payload column keeps: the event's JSON text, or the raw-bytes document."""
    document = invalid_document(rejected)
    kept = document["raw"] if rejected.raw is not None else document["payload"]
    return kept if isinstance(kept, str) else jsontext.dumps(kept).decode()
