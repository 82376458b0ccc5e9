"""Structured JSON logs: one JSON object per line, with the request id of the HTTP request being served.

A process calls :func:`configure` once instead of ``logging.basicConfig``. ``EVPIPE_LOG_FORMAT=json``
(the Kubernetes default) turns JSON on; ``text`` keeps the human format for terminals. Log calls add
event context with ``extra``: ``log.warning("rejected", extra={"event_id": eid})``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("evpipe_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields a log call may pass with `extra=` that are copied into the JSON line.
CONTEXT_FIELDS = ("event_id", "event_ids", "source_id", "topic", "partition", "offset", "batch_size")
# A client-supplied request id is echoed in logs and headers: keep it short and inert.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            document["request_id"] = request_id
        for field in CONTEXT_FIELDS:
            if hasattr(record, field):
                document[field] = getattr(record, field)
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure(level: str = "info", log_format: str | None = None) -> None:
    """Route every logger to stderr in JSON or text (EVPIPE_LOG_FORMAT), at ``level``.

    A bad EVPIPE_LOG_FORMAT or level is a ``ValueError`` naming the variable; the processes' entry points
    call :func:`configure_process`, which turns it into a configuration error (exit 2, no traceback).
    """
    chosen = (log_format or os.environ.get("EVPIPE_LOG_FORMAT", "text")).lower()
    if chosen not in ("json", "text"):
        raise ValueError(f"EVPIPE_LOG_FORMAT must be json or text, got {chosen!r}")
    if level.upper() not in logging.getLevelNamesMapping():
        raise ValueError(f"log level must be debug, info, warning or error, got {level!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configure_process(level: str, log_format: str) -> None:
    """:func:`configure` for a process's entry point (``log_format`` from its settings' EVPIPE_LOG_FORMAT):
    a bad setting exits with the reason, not a traceback."""
    from evpipe.settings import ConfigError

    try:
        configure(level, log_format)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class RequestIdMiddleware:
    """ASGI middleware: take the caller's X-Request-ID (or make one), log it, and return it."""

    header = b"x-request-id"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass for one header, not a dict of all of them: this runs on every request.
        raw = next((value for name, value in scope.get("headers") or () if name == self.header), b"")
        incoming = raw.decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != self.header]
                message = {**message, "headers": [*headers, (self.header, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
