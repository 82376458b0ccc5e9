"""A reliable queue on a Redis list: take into a per-worker processing list, trim after commit.

Keys, for ``REDIS_QUEUE_KEY = Q``:

* ``Q``: the list the gateway RPUSHes wire-format events to; workers take from the left.
* ``Q:processing:<id>:<slot>``: events a worker has taken and not yet
  committed, in the order taken. A worker has a few slots (up to
  ``MAX_SLOTS``): each is one partition of the worker's consumer loop, so
  batches of different slots are written in parallel. Every move into one is
  atomic (a Lua script), and events leave it only after their Postgres
  transaction committed (trim) or when a reclaim moves them back to the head of ``Q``.
* ``Q:base:<id>:<slot>``: the offset of the slot list's first item.
  Offsets number a slot's items in the order taken, like a Kafka partition's,
  so committing "everything before offset N" is ``LTRIM`` by ``N - base``:
  idempotent (a repeated trim finds ``base = N`` and removes nothing), and a
  trim after a reclaim emptied the list (the worker was presumed dead) finds
  no base and removes nothing, so it can never drop an event taken later.
* ``Q:worker:<id>``: the worker's heartbeat, a key with a TTL.
* ``Q:workers``: ids of workers that may hold a processing list. The id is
  added atomically with every take, so a processing list is never orphaned.
* ``Q:dead``: dead letters, one JSON object per event (the item, the error).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
import redis

# Take up to ARGV[2] items from the head of the main list (KEYS[1]) into a slot (KEYS[2], base KEYS[3]),
# atomically. ARGV[3] is the offset the worker expects next. Returns {offset of the first item returned, items}:
# every item of the slot from that offset on, so items of a take whose reply was lost are handed out again.
_TAKE = """
redis.call('SADD', KEYS[4], ARGV[1])
local expected = tonumber(ARGV[3])
local held = redis.call('LLEN', KEYS[2])
local base = tonumber(redis.call('GET', KEYS[3]))
if held == 0 or not base then
  -- an empty slot starts at the expected offset; a slot without a base (never seen) is handed out again whole
  base = expected
  redis.call('SET', KEYS[3], base)
end
local items = redis.call('LPOP', KEYS[1], tonumber(ARGV[2]))
if items then
  for i = 1, #items, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
  end
end
local from = math.max(expected - base, 0)
if from == held then return {base + from, items or {}} end
return {base + from, redis.call('LRANGE', KEYS[2], from, -1)}
"""

# Commit a slot (KEYS[1], base KEYS[2]) up to offset ARGV[1] (exclusive): drop its items before that offset.
_TRIM = """
local base = tonumber(redis.call('GET', KEYS[2]))
if not base then return 0 end
local n = tonumber(ARGV[1]) - base
if n <= 0 then return 0 end
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('SET', KEYS[2], ARGV[1])
return n
"""

# Re-queue a dead worker's processing lists (KEYS[4..], each followed by its base key) at the head of the
# main list, keeping their order.
_RECLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = 0
for k = #KEYS - 1, 4, -2 do
  while redis.call('LMOVE', KEYS[k], KEYS[1], 'RIGHT', 'LEFT') do n = n + 1 end
  redis.call('DEL', KEYS[k + 1])
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
        self._trim = client.register_script(_TRIM)
        self._reclaim = client.register_script(_RECLAIM)

    def processing_key(self, worker_id: str, slot: int) -> str:
        return f"{self.main}:processing:{worker_id}:{slot}"

    def heartbeat_key_of(self, worker_id: str) -> str:
        return f"{self.main}:worker:{worker_id}"

    def take(self, n: int, slot: int, expected: int) -> tuple[int, list[bytes]]:
        """Move up to ``n`` items into ``slot``; returns (offset of the first item, the items).

        ``expected`` is the offset after the last item this worker was handed
        for the slot. The items returned start there: normally the ones just
        taken, plus any a lost reply kept from us before.
        """
        keys = [self.main, self.processing[slot], _base(self.processing[slot]), self.workers]
        first, items = self._take(keys=keys, args=[self.worker_id, n, expected])
        return int(first), list(items)

    def trim(self, offsets: dict[int, int]) -> None:
        """Commit: drop each slot's items before its offset (idempotent; one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for slot, offset in offsets.items():
            key = self.processing[slot]
            self._trim(keys=[key, _base(key)], args=[offset], client=pipe)
        pipe.execute()

    def push_dead(self, dead: list[DeadItem]) -> None:
        if dead:
            self.client.rpush(self.dead, *(d.encode(self.worker_id) for d in dead))

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
            if other != self.worker_id:
                total += max(self._reclaim_lists(other, self.heartbeat_key_of(other)), 0)
        return total

    def requeue_own(self) -> int:
        """At start, before anything is in memory: put back what a previous run under this id left taken."""
        return self._reclaim_lists(self.worker_id, heartbeat_key=f"{self.main}:none")

    def _reclaim_lists(self, worker_id: str, heartbeat_key: str) -> int:
        keys = [self.main, heartbeat_key, self.workers]
        for slot in range(MAX_SLOTS):
            key = self.processing_key(worker_id, slot)
            keys += [key, _base(key)]
        return int(self._reclaim(keys=keys, args=[worker_id]))

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
        pipe.delete(self.heartbeat_key, *self.processing, *map(_base, self.processing))
        pipe.execute()
        return True


def _base(processing_key: str) -> str:
    """``Q:base:<id>:<slot>``: kept out of the ``Q:processing:*`` pattern, whose keys are all lists."""
    return processing_key.replace(":processing:", ":base:", 1)
