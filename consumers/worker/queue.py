"""A reliable queue on a Redis list: take into a per-worker processing list, ack after commit.

Keys, for ``REDIS_QUEUE_KEY = Q``:

* ``Q``: the list the gateway RPUSHes wire-format events to; workers take from the left.
* ``Q:processing:<id>``: the events a worker has taken and not yet acknowledged,
  in the order taken. Every move into it is atomic (a Lua script or BLMOVE),
  and events leave it only after their Postgres transaction committed (ack)
  or when a reclaim moves them back to the head of ``Q``.
* ``Q:worker:<id>``: the worker's heartbeat, a key with a TTL.
* ``Q:workers``: ids of workers that may hold a processing list. The id is
  added atomically with every take, so a processing list is never orphaned.
* ``Q:dead``: dead letters, one JSON object per event (the item, the error).

The invariant the worker keeps: its processing list is a suffix of the batch it
holds in memory (all of it unless a reclaim happened while it was frozen), so
acknowledging a batch of ``n`` is ``LTRIM proc n -1`` and can never drop an
event it has not written.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
import redis

# Take up to ARGV[2] items from the head of the main list into the processing list, atomically.
_TAKE = """
redis.call('SADD', KEYS[3], ARGV[1])
local items = redis.call('LPOP', KEYS[1], tonumber(ARGV[2]))
if not items then return {} end
for i = 1, #items, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
end
return items
"""

# Re-queue a dead worker's processing list at the head of the main list, keeping its order.
_RECLAIM = """
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[1], 'RIGHT', 'LEFT') do n = n + 1 end
redis.call('SREM', KEYS[4], ARGV[1])
return n
"""


@dataclass(frozen=True)
class DeadLetter:
    item: bytes
    error: str
    attempts: int

    def encode(self, worker_id: str) -> bytes:
        entry: dict[str, Any] = {"error": self.error, "attempts": self.attempts, "worker": worker_id,
                                 "failed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")}
        try:
            entry["item"] = self.item.decode()
        except UnicodeDecodeError:
            entry["item_base64"] = base64.b64encode(self.item).decode()
        return orjson.dumps(entry)


class ReliableQueue:
    def __init__(self, client: redis.Redis, queue_key: str, worker_id: str) -> None:
        self.client = client
        self.main = queue_key
        self.dead = f"{queue_key}:dead"
        self.workers = f"{queue_key}:workers"
        self.worker_id = worker_id
        self.processing = self.processing_key(worker_id)
        self.heartbeat_key = self.heartbeat_key_of(worker_id)
        self._take = client.register_script(_TAKE)
        self._reclaim = client.register_script(_RECLAIM)

    def processing_key(self, worker_id: str) -> str:
        return f"{self.main}:processing:{worker_id}"

    def heartbeat_key_of(self, worker_id: str) -> str:
        return f"{self.main}:worker:{worker_id}"

    def take(self, n: int) -> list[bytes]:
        """Up to ``n`` items, moved atomically into this worker's processing list; [] when the list is empty."""
        items: list[bytes] = self._take(keys=[self.main, self.processing, self.workers], args=[self.worker_id, n])
        return items

    def take_blocking(self, timeout_s: float) -> bytes | None:
        """Wait up to ``timeout_s`` for one item (moved atomically with BLMOVE)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(self.workers, self.worker_id)
        pipe.blmove(self.main, self.processing, max(timeout_s, 0.01), "LEFT", "RIGHT")
        item: bytes | None = pipe.execute()[1]
        return item

    def ack(self, n: int, dead: list[DeadLetter]) -> None:
        """Drop the first ``n`` processing items (written) and dead-letter ``dead``, in one transaction."""
        pipe = self.client.pipeline(transaction=True)
        if dead:
            pipe.rpush(self.dead, *(d.encode(self.worker_id) for d in dead))
        pipe.ltrim(self.processing, n, -1)
        pipe.execute()

    def heartbeat(self, ttl_s: float, info: dict[str, Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.heartbeat_key, orjson.dumps(info), px=int(ttl_s * 1000))
        pipe.sadd(self.workers, self.worker_id)
        pipe.execute()

    def reclaim_dead_workers(self) -> int:
        """Re-queue the processing lists of workers whose heartbeat expired; returns items re-queued."""
        total = 0
        for raw_id in self.client.smembers(self.workers):
            other = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if other == self.worker_id:
                continue
            moved = int(self._reclaim(
                keys=[self.main, self.processing_key(other), self.heartbeat_key_of(other), self.workers],
                args=[other]))
            total += max(moved, 0)
        return total

    def depth(self) -> int:
        return int(self.client.llen(self.main))

    def processing_depth(self) -> int:
        return int(self.client.llen(self.processing))

    def deregister(self) -> bool:
        """Leave the worker set if nothing is in flight; returns whether it left."""
        if self.processing_depth():
            return False  # keep the heartbeat expiring: another worker re-queues the rest
        pipe = self.client.pipeline(transaction=True)
        pipe.srem(self.workers, self.worker_id)
        pipe.delete(self.heartbeat_key, self.processing)
        pipe.execute()
        return True
