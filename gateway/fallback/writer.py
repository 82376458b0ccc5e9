"""Group commit: the requests that fail over at the same time share one durable write.

During an outage every request fails over, so a write (an fsync, an S3 PUT) per
request would cap the gateway at the store's round trips. Requests queue their
messages here; each of a few flusher tasks takes everything queued (up to an
object's size), writes one object, and wakes all of its requests together.
A request is never split across objects, so one successful write is the whole
answer for it. A request that stops waiting (its timeout, then a 503) drops its
messages from the queue, so a hung store holds no memory for requests already
answered; if its object was being written, the write may still land, which is
harmless (a 503'd event that is stored anyway is drained like any other).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from gateway.backends.base import Message
from gateway.fallback.objects import encode, object_name
from gateway.fallback.store import FallbackStore, StoreUnavailable
from gateway.metrics import FallbackMetrics

log = logging.getLogger("evpipe.gateway.fallback")


@dataclass(eq=False)
class _Entry:
    messages: list[Message]
    size: int
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class FallbackWriter:
    def __init__(self, store: FallbackStore, metrics: FallbackMetrics, timeout_s: float,
                 max_object_bytes: int, flushers: int = 4) -> None:
        self.store = store
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.max_object_bytes = max_object_bytes
        self.flushers = flushers
        self.writer_id = uuid.uuid4().hex[:12]
        self._sequence = 0
        self._queue: collections.deque[_Entry] = collections.deque()
        self._wakeup = asyncio.Event()
        self.last_write: tuple[float, bool] = (0.0, True)  # (monotonic time, succeeded): for readiness

    async def write(self, messages: list[Message]) -> None:
        """Returns once ``messages`` are durably stored; raises StoreUnavailable otherwise or after the timeout."""
        entry = _Entry(messages, sum(len(m.value) + len(m.key or b"") + 64 for m in messages))
        self._queue.append(entry)
        self._wakeup.set()
        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.shield(entry.future)
        except TimeoutError:
            entry.messages = []  # answered 503: the queue holds nothing more for it
            raise StoreUnavailable(f"no durable write within {self.timeout_s:g}s") from None
        self.metrics.stored.inc(len(messages))

    async def run(self) -> None:
        """The flusher tasks (started by the app's lifecycle)."""
        await asyncio.gather(*(self._flush_forever() for _ in range(self.flushers)))

    async def _flush_forever(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._flush(batch)

    def _take(self) -> list[_Entry]:
        """Queued requests up to one object's size (at least one request, whatever its size)."""
        batch: list[_Entry] = []
        size = 0
        while self._queue:
            entry = self._queue[0]
            if entry.future.done() or not entry.messages:  # stopped waiting: nothing to write for it
                self._queue.popleft()
                continue
            if batch and size + entry.size > self.max_object_bytes:
                break
            batch.append(self._queue.popleft())
            size += entry.size
        return batch

    async def _flush(self, batch: list[_Entry]) -> None:
        messages = [m for entry in batch for m in entry.messages]
        self._sequence += 1
        name = object_name(time.time(), len(messages), self.writer_id, self._sequence)
        try:
            await asyncio.to_thread(self._put, name, messages)
        except Exception as exc:  # noqa: BLE001 (any failure of the store is a 503 for them, never a 2xx)
            self.last_write = (time.monotonic(), False)
            self.metrics.write_failures.inc()
            log.warning("fallback store %s did not take %d events: %s", self.store.uri, len(messages), exc)
            failure = StoreUnavailable(f"fallback store {self.store.uri}: {exc}")
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(failure)
                    entry.future.exception()  # retrieved: a request that stopped waiting never reads it
            return
        self.last_write = (time.monotonic(), True)
        for entry in batch:
            if not entry.future.done():
                entry.future.set_result(None)

    def _put(self, name: str, messages: list[Message]) -> None:
        # In a thread: encoding megabytes and the write itself stay off the event loop.
        self.store.put(name, encode(messages))

    def close(self) -> None:
        """Fail what is still queued (the app is stopping; those requests get 503)."""
        while self._queue:
            entry = self._queue.popleft()
            if not entry.future.done():
                entry.future.set_exception(StoreUnavailable("gateway is shutting down"))
                with contextlib.suppress(StoreUnavailable):
                    entry.future.exception()
