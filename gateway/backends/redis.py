"""Stage 2: RPUSH wire values onto a Redis list that the stage-2 worker drains from the left."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.backends.base import Inflight, Record, Rejected, Unavailable, encode_invalid
from gateway.settings import GatewaySettings

log = logging.getLogger("evpipe.gateway.redis")


class RedisBackend:
    name = "redis"

    def __init__(self, settings: GatewaySettings) -> None:
        self.key = settings.redis_queue_key
        self.invalid_key = f"{settings.redis_queue_key}:invalid"
        self.max_queue = settings.gateway_redis_max_queue
        self.client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0)
        self.inflight = Inflight("redis")

    async def start(self) -> None:
        reason = await self.ready()
        if reason:
            log.warning("redis backend not ready at start: %s", reason)

    def queued(self) -> int:
        return self.inflight.count

    async def send(self, records: list[Record], rejected: list[Rejected], deadline: float) -> None:
        if not records and not rejected:
            return
        try:
            async with self.inflight.within(len(records), deadline):
                await self._push(records, rejected)
        except RedisError as exc:
            raise Unavailable(f"redis error: {exc}", 2, enqueued=True) from None
        if rejected:
            log.warning("kept %d invalid events in %s (first: index %d: %s)", len(rejected), self.invalid_key,
                        rejected[0].index, rejected[0].reason)

    async def _push(self, records: list[Record], rejected: list[Rejected]) -> None:
        if records:
            length = await self.client.llen(self.key)
            if length + len(records) > self.max_queue:
                # Nothing was pushed: the client can resend safely.
                raise Unavailable(f"redis queue {self.key} holds {length} events (max {self.max_queue})", 5)
        async with self.client.pipeline(transaction=False) as pipe:
            if records:
                pipe.rpush(self.key, *[r.value for r in records])
            if rejected:
                pipe.rpush(self.invalid_key, *[encode_invalid(r) for r in rejected])
            await pipe.execute()

    async def ready(self) -> str | None:
        try:
            async with asyncio.timeout(2.0):
                length = await self.client.llen(self.key)
        except (TimeoutError, RedisError, OSError) as exc:
            return f"redis unreachable: {exc or 'timeout'}"
        if length >= self.max_queue:
            return f"redis queue {self.key} saturated ({length} events)"
        return None

    async def close(self) -> None:
        await self.client.aclose()
