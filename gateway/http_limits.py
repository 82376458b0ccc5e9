"""Request-head limits in the HTTP protocol: a deadline for the head and a bound on its size.

The app only sees a request once its headers are complete, so a client that sends its head slowly,
or a huge header, never reaches anything the app can refuse: uvicorn keeps the connection open as
long as bytes trickle in, and httptools keeps growing the unfinished header in memory. This protocol
counts the head's bytes before the parser buffers them and runs a timer until the head is complete:

- over GATEWAY_MAX_HEAD_BYTES in all, or one line over GATEWAY_MAX_HEADER_BYTES: 431;
- no complete head GATEWAY_HEAD_TIMEOUT_S after the connection opened or the last answer: 408,
  or a silent close when the client sent nothing at all (an idle keep-alive connection).

Both answers are JSON with `connection: close`. The cost on the hot path is an add and a compare per
chunk of a head; the line length is only looked for while a head stays unfinished, and body bytes
are never scanned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, cast

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = ["HeadLimitedProtocol"]

# After an error answer, how long to read and drop what the client still sends before closing:
# closing with unread bytes makes the kernel send a reset, and the client may lose the answer.
LINGER_S = 1.0
# A raw header line carries ': ' and a CR on top of the name and value the limit counts.
LINE_OVERHEAD = 3


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a head that is over a limit."""


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline and head-size limits.

    Use ``HeadLimitedProtocol.with_limits(...)`` as uvicorn's ``http=``: uvicorn builds the protocol
    itself, so the limits travel as attributes of a subclass.
    """

    head_timeout_s: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 16 * 1024
    max_head_bytes: ClassVar[int] = 64 * 1024

    @classmethod
    def with_limits(cls, head_timeout_s: float, max_header_bytes: int,
                    max_head_bytes: int) -> type[HeadLimitedProtocol]:
        attrs = {"head_timeout_s": head_timeout_s, "max_header_bytes": max_header_bytes,
                 "max_head_bytes": max_head_bytes}
        return cast(type[HeadLimitedProtocol], type(cls.__name__, (cls,), attrs))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0  # bytes received for the current head
        self._line_bytes = 0  # bytes of the head's last, unfinished line
        self._refusal: str | None = None  # why the head is refused, set before parsing stops
        self._done = False  # answered 408/431: what still arrives is dropped
        self._timer: asyncio.TimerHandle | None = None

    # -- connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout_s, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        if not self._in_head:
            super().data_received(data)  # a body: uvicorn's own path, nothing counted
            return
        self._head_bytes += len(data)
        self._feed(data)
        # A head still open, and the same one as before this chunk (a request completed in it resets the
        # count: its last line is body, not head): every byte of the chunk is head, so check the limits.
        if self._refusal is None and self._in_head and self._head_bytes:
            newline = data.rfind(b"\n")
            self._line_bytes = self._line_bytes + len(data) if newline < 0 else len(data) - newline - 1
            self._refusal = self._over_limit()
        if self._refusal is not None:
            self._answer(431, self._refusal)

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, except that a head refused in a callback is not answered 400."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refusal is None:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")

    def _over_limit(self) -> str | None:
        if self._line_bytes > self.max_header_bytes + LINE_OVERHEAD:
            return self._line_refusal()  # first: one huge header is named as such, not as a big head
        if self._head_bytes > self.max_head_bytes:
            return self._head_refusal()
        return None

    def _head_refusal(self) -> str:
        return f"request head over {self.max_head_bytes} bytes (GATEWAY_MAX_HEAD_BYTES)"

    def _line_refusal(self) -> str:
        return f"a request header line over {self.max_header_bytes} bytes (GATEWAY_MAX_HEADER_BYTES)"

    # -- parser callbacks ---------------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_header_bytes:
            self._refuse(self._line_refusal())

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > self.max_header_bytes:
            self._refuse(self._line_refusal())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        # The chunks may hold body bytes too, so only when they are over the limit is the head measured.
        if self._head_bytes > self.max_head_bytes and self._parsed_head_bytes() > self.max_head_bytes:
            self._refuse(self._head_refusal())
        super().on_headers_complete()

    def _parsed_head_bytes(self) -> int:
        request_line = len(self.url) + len(b"GET  HTTP/1.1\r\n")
        return request_line + sum(len(name) + len(value) + len(b": \r\n") for name, value in self.headers) + 2

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What follows on this connection is the next request's head.
        self._in_head, self._head_bytes, self._line_bytes = True, 0, 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next head again (unless a pipelined one is complete already).
        if self._in_head and not self.transport.is_closing():
            self._arm(self.head_timeout_s, self._head_timeout)

    def _refuse(self, reason: str) -> None:
        self._refusal = reason
        raise _Refused(reason)  # httptools stops parsing and raises HttpParserCallbackError

    # -- timers and answers -------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], object]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timeout(self) -> None:
        self._timer = None
        if self._head_bytes == 0:
            self.transport.close()  # nothing sent: an idle connection, closed without an answer
        else:
            self._answer(408, f"request head not complete within {self.head_timeout_s:g}s (GATEWAY_HEAD_TIMEOUT_S)")

    def _answer(self, status: int, error: str) -> None:
        self._done = True
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an earlier (pipelined) answer is still being written: no room for ours
            return
        self.logger.debug("answered %d: %s", status, error)
        body = orjson.dumps({"error": error})
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)]
        self.transport.write(b"".join(head) + body)
        self._close_after_answer()

    def _close_after_answer(self) -> None:
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the answer, then FIN; the client's close ends the connection
        self.flow.resume_reading()
        self._arm(LINGER_S, self.transport.close)
