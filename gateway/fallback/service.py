"""What the app wires: keep a request's events durably when Kafka did not take them, drain, and readiness.

Only a backend whose events are broker messages (``MessageBackend``: Kafka) has
a fallback; Redis and Postgres answer 503 as before.
"""

from __future__ import annotations

import asyncio
import time

from gateway.backends.base import Backend, MessageBackend, Record, Rejected
from gateway.fallback.drain import Drainer
from gateway.fallback.store import FallbackStore, fallback_uri, open_store
from gateway.fallback.writer import FallbackWriter
from gateway.metrics import FallbackMetrics
from gateway.settings import GatewaySettings

# Readiness: a write within this many seconds says whether the store takes writes; else a cached check.
_RECENT_WRITE_S = 10.0
_CHECK_EVERY_S = 5.0
_CHECK_TIMEOUT_S = 2.0


class Fallback:
    def __init__(self, settings: GatewaySettings, backend: MessageBackend, metrics: FallbackMetrics,
                 store: FallbackStore) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.writer = FallbackWriter(store, metrics, settings.gateway_fallback_timeout_s,
                                     settings.gateway_fallback_max_object_bytes)
        self.drainer = Drainer(store, backend, metrics, self.writer.writer_id, settings.gateway_fallback_lease_s)
        self._checked: tuple[float, str | None] = (0.0, "not checked yet")

    @classmethod
    def create(cls, settings: GatewaySettings, backend: Backend, metrics: FallbackMetrics,
               store: FallbackStore | None = None) -> Fallback | None:
        """The gateway's fallback, or None when it is off (GATEWAY_FALLBACK_URI empty, or not a Kafka backend)."""
        if not isinstance(backend, MessageBackend):
            return None
        if store is None:
            uri = fallback_uri(settings.gateway_fallback_uri, settings.evpipe_state_dir)
            if uri is None:
                return None
            store = open_store(uri, settings.s3_endpoint_url, settings.gateway_fallback_timeout_s)
        return cls(settings, backend, metrics, store)

    async def keep(self, records: list[Record], rejected: list[Rejected]) -> None:
        """Returns once the events are durably in the store; raises StoreUnavailable otherwise."""
        await self.writer.write(self.backend.messages(records, rejected))

    async def run(self) -> None:
        """The writer's flushers and, unless GATEWAY_FALLBACK_DRAIN_INTERVAL_S is 0, the background drain."""
        interval = self.settings.gateway_fallback_drain_interval_s
        jobs = [self.writer.run()]
        if interval > 0:
            jobs.append(self.drainer.run(self.backend.ready, interval))
        await asyncio.gather(*jobs)

    async def ready(self) -> str | None:
        """None when the store takes writes: the gateway is then ready even while Kafka is not (unless
        Kafka is misconfigured rather than down)."""
        if (problem := self.backend.misconfigured()) is not None:
            return problem
        at, succeeded = self.writer.last_write
        if time.monotonic() - at < _RECENT_WRITE_S:
            return None if succeeded else f"fallback store {self.store.uri}: the last write failed"
        checked, reason = self._checked
        if time.monotonic() - checked < _CHECK_EVERY_S:
            return reason
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                reason = await asyncio.to_thread(self.store.check)
        except TimeoutError:
            reason = f"fallback store {self.store.uri} did not answer within {_CHECK_TIMEOUT_S:g}s"
        self._checked = (time.monotonic(), reason)
        return reason

    def close(self) -> None:
        self.writer.close()
