"""The contract every backend keeps: ``send`` returns only once the backend durably holds the events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson


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


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str
    payload: Any  # the original event as parsed, or the raw text when it did not parse
    source_id: str
    received_at: str


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


# Kept payloads are capped: a rejected 2 MiB event must not make the invalid store (a Kafka message is
# at most 1 MB by default) refuse the whole request. The kept prefix still shows what was sent.
MAX_KEPT_PAYLOAD_BYTES = 256 * 1024


def invalid_document(rejected: Rejected) -> dict[str, Any]:
    """How a rejected event is kept: the reason next to the original payload (its JSON text if over the cap)."""
    document: dict[str, Any] = {"error": rejected.reason, "payload": rejected.payload,
                                "source_id": rejected.source_id, "received_at": rejected.received_at}
    payload = rejected.payload
    if isinstance(payload, str):
        text = payload
    else:
        try:
            text = orjson.dumps(payload, default=str).decode()
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
            out.append(orjson.dumps(item, default=str).decode())
    return "".join(out)


class _Token:
    """Literal JSON punctuation queued on dump_deep's stack."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
