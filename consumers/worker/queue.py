"""A reliable queue on a Redis list: take into a per-worker processing list, ack after commit.

Keys, for ``REDIS_QUEUE_KEY = Q``:

* ``Q``: the list the gateway RPUSHes wire-format events to; workers take from the left.
* ``Q:processing:<id>:<slot>``: the events of one batch a worker has taken
  and not yet acknowledged, in the order taken. A worker has one slot per
  batch in flight (up to ``MAX_SLOTS``), so it can collect the next batch
  while the previous ones are written.
  Every move into one is atomic (a Lua script or BLMOVE), and events leave it
  only after their Postgres transaction committed (ack) or when a reclaim
  moves them back to the head of ``Q``.
* ``Q:worker:<id>``: the worker's heartbeat, a key with a TTL.
* ``Q:workers``: ids of workers that may hold a processing list. The id is
  added atomically with every take, so a processing list is never orphaned.
* ``Q:dead``: dead letters, one JSON object per event (the item, the error).

The invariant the worker keeps: a slot is reused only after its batch was
acknowledged, so a slot's list holds events of the one batch in memory (all
of them, or those taken after a reclaim emptied the list while the worker was
frozen). Acknowledging is therefore ``DEL`` of the slot: it can never drop an
event that was not written, and repeating it after a lost reply is harmless.
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

# Re-queue a dead worker's processing lists (KEYS[4..]) at the head of the main list, keeping their order.
_RECLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = 0
for k = #KEYS, 4, -1 do
  while redis.call('LMOVE', KEYS[k], KEYS[1], 'RIGHT', 'LEFT') do n = n + 1 end
end
redis.call('SREM', KEYS[3], ARGV[1])
return n
"""

MAX_SLOTS = 8  # processing slots a worker may have; reclaim looks at all of them


@dataclass(frozen=True)
class DeadItem:
    """A queue item bound for the ``Q:dead`` list, with why (not the runtime's Kafka dead letters)."""

    item: bytes
    error: str
    attempts: int

    def encode(self, worker_id: str) -> bytes:
        entry: dict[str, Any] = {"error": self.error, "attempts": self.attempts, "worker": worker_id,
                                 "failed_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
        try:
            entry["item"] = self.item.decode()
        except UnicodeDecodeError:
            entry["item_base64"] = base64.b64encode(self.item).decode()
        return orjson.dumps(entry)


class ReliableQueue:
    def __init__(self, client: redis.Redis, queue_key: str, worker_id: str, slots: int = 2) -> None:
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be 1..{MAX_SLOTS}")
        self.client = client
        self.main = queue_key
        self.dead = f"{queue_key}:dead"
        self.workers = f"{queue_key}:workers"
        self.worker_id = worker_id
        self.processing = [self.processing_key(worker_id, slot) for slot in range(slots)]
        self.heartbeat_key = self.heartbeat_key_of(worker_id)
        self._take = client.register_script(_TAKE)
        self._reclaim = client.register_script(_RECLAIM)

    def processing_key(self, worker_id: str, slot: int) -> str:
        return f"{self.main}:processing:{worker_id}:{slot}"

    def heartbeat_key_of(self, worker_id: str) -> str:
        return f"{self.main}:worker:{worker_id}"

    def take(self, n: int, slot: int = 0) -> list[bytes]:
        """Up to ``n`` items, moved atomically into processing slot ``slot``; [] when the list is empty."""
        keys = [self.main, self.processing[slot], self.workers]
        items: list[bytes] = self._take(keys=keys, args=[self.worker_id, n])
        return items

    def take_blocking(self, timeout_s: float, slot: int = 0) -> bytes | None:
        """Wait up to ``timeout_s`` for one item (moved atomically with BLMOVE)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(self.workers, self.worker_id)
        # Redis >= 6 takes a fractional timeout; redis-py's hint says int.
        pipe.blmove(self.main, self.processing[slot], max(timeout_s, 0.01), "LEFT", "RIGHT")  # type: ignore[arg-type]
        item: bytes | None = pipe.execute()[1]
        return item

    def ack(self, slot: int, dead: list[DeadItem]) -> None:
        """Drop slot ``slot`` (its batch is written) and dead-letter ``dead``, in one transaction."""
        pipe = self.client.pipeline(transaction=True)
        if dead:
            pipe.rpush(self.dead, *(d.encode(self.worker_id) for d in dead))
        pipe.delete(self.processing[slot])
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
            keys = [self.main, self.heartbeat_key_of(other), self.workers]
            keys += [self.processing_key(other, slot) for slot in range(MAX_SLOTS)]
            moved = int(self._reclaim(keys=keys, args=[other]))
            total += max(moved, 0)
        return total

    def depth(self) -> int:
        return int(self.client.llen(self.main))

    def processing_depth(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in self.processing:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())

    def deregister(self) -> bool:
        """Leave the worker set if nothing is in flight; returns whether it left."""
        if self.processing_depth():
            return False  # keep the heartbeat expiring: another worker re-queues the rest
        pipe = self.client.pipeline(transaction=True)
        pipe.srem(self.workers, self.worker_id)
        pipe.delete(self.heartbeat_key, *self.processing)
        pipe.execute()
        return True
