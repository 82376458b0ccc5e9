"""The drain: claim a stored object, re-produce its messages, delete it once every one is acknowledged.

Objects go oldest first, a few at a time (each claimed on its own: a claim, a
read and a delete are round trips to S3), and only while Kafka is ready. Producing
an object has a deadline of half the claim's lease, so a drainer finishes (or
gives up and releases) an object well before another drainer could take it over.
If Kafka fails halfway, the object is released whole and drained again later:
the messages already acknowledged are produced twice, which the sinks
deduplicate on event_id, as they do any resend. Per-key order is not kept: an
object drained after newer events of the same key were produced lands behind them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from gateway.backends.base import MessageBackend, Unavailable
from gateway.fallback.objects import CorruptObject, Pending, decode
from gateway.fallback.store import Claim, FallbackStore
from gateway.metrics import FallbackMetrics

log = logging.getLogger("evpipe.gateway.fallback")

Ready = Callable[[], Awaitable[str | None]]  # None when Kafka can take events, else why not


@dataclass
class DrainReport:
    objects: int = 0
    events: int = 0
    held_elsewhere: int = 0  # claimed by another drainer (or gone meanwhile)
    stopped: str | None = None  # why the pass ended before the listing did


class Drainer:
    def __init__(self, store: FallbackStore, producer: MessageBackend, metrics: FallbackMetrics, owner: str,
                 lease_s: float, parallel: int = 8) -> None:
        self.store = store
        self.producer = producer
        self.metrics = metrics
        self.owner = owner
        self.lease_s = lease_s
        self.deadline_s = lease_s / 2
        self.parallel = parallel

    async def listing(self) -> list[Pending]:
        """The pending objects, oldest first; sets the pending and oldest-age gauges."""
        pending = await asyncio.to_thread(self.store.pending)
        self.metrics.pending.set(sum(p.events for p in pending))
        self.metrics.oldest_age.set(max(0.0, time.time() - pending[0].written_at) if pending else 0.0)
        return pending

    async def drain_pass(self, ready: Ready) -> DrainReport:
        """One pass over what is pending now; stops at the first object Kafka does not take."""
        report = DrainReport()
        pending = iter(await self.listing())  # shared by the workers: each object is taken by one of them
        async with asyncio.TaskGroup() as workers:
            for _ in range(self.parallel):
                workers.create_task(self._work(pending, ready, report))
        if report.objects:
            await self.listing()
        return report

    async def _work(self, pending: Iterator[Pending], ready: Ready, report: DrainReport) -> None:
        for item in pending:
            if report.stopped:
                return
            reason = await ready()
            if reason is not None:
                report.stopped = f"kafka not ready: {reason}"
                return
            try:
                drained = await self.drain_object(item.name)
            except Unavailable as exc:
                report.stopped = f"kafka did not take {item.name}: {exc.reason}"
                return
            if drained is None:
                report.held_elsewhere += 1
            else:
                report.objects += 1
                report.events += drained

    async def drain_object(self, name: str) -> int | None:
        """Events drained from ``name``; None when it was not ours to drain. Raises Unavailable (released)."""
        claim = await asyncio.to_thread(self.store.claim, name, self.owner, self.lease_s)
        if claim is None:
            return None
        try:
            data = await asyncio.to_thread(self.store.read, claim)
            if data is None:  # drained by a drainer that took over after our lease: only the claim is left
                await asyncio.to_thread(self.store.delete, claim)
                return None
            messages = decode(data)
            await self.producer.produce(messages, self.deadline_s)
        except CorruptObject as exc:
            # Kept, claimed: retried (and logged) once a lease, and the pending-age alert fires for a person.
            log.error("fallback object %s/%s does not decode (%s): left in place", self.store.uri, name, exc)
            return None
        except BaseException:
            await self._release(claim)
            raise
        await asyncio.to_thread(self.store.delete, claim)
        self.metrics.drained.inc(len(messages))
        return len(messages)

    async def _release(self, claim: Claim) -> None:
        try:
            await asyncio.to_thread(self.store.release, claim)
        except Exception as exc:  # noqa: BLE001 (the claim then just waits out its lease)
            log.warning("could not release fallback object %s: %s", claim.name, exc)

    async def run(self, ready: Ready, interval_s: float) -> None:
        """The gateway's background drain: a pass every ``interval_s``, at once again after progress."""
        passes = 0
        while True:
            drained = 0
            try:
                report = await self.drain_pass(ready)
                drained = report.objects
                if drained:
                    log.info("fallback: drained %d events in %d objects from %s", report.events, report.objects,
                             self.store.uri)
                passes += 1
                if passes % 60 == 0:
                    await asyncio.to_thread(self.store.sweep)
            except Exception as exc:  # noqa: BLE001 (the store is down: retried; the gauges keep their values)
                log.warning("fallback drain of %s failed: %s", self.store.uri, exc)
            await asyncio.sleep(0 if drained else interval_s)
