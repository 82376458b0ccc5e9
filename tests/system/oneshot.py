"""A client that never retries, at a steady rate: the kind of client a broker outage used to cost events.

Requests start on a fixed schedule whatever the answers take (a pool of threads
sends them), each batch with its own event ids, round-robin over the gateways.
Each request is sent once: a 503 or a broken connection loses its events for
this client, so only a 2xx says the pipeline holds them. Every answer is kept
with when its request was sent and answered, so a test can ask what was
answered during a fault.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import orjson

ONESHOT_TYPE = "oneshot_load"


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic
    answered: float
    status: int  # 0: no answer (connection error or timeout)


@dataclass
class OneShotLoad:
    urls: list[str]
    key: str
    rate: float = 100.0  # events/s
    batch: int = 10
    max_in_flight: int = 128  # more than the outage's deadline x request rate: the schedule holds
    acked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # ids of requests answered 503 or not at all
    answers: list[Answer] = field(default_factory=list)
    skipped: int = 0  # scheduled requests not sent because max_in_flight were waiting
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    _in_flight: int = 0
    _next_url: itertools.count[int] = field(default_factory=itertools.count)
    _local: threading.local = field(default_factory=threading.local)

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="oneshot")
        self._scheduler = threading.Thread(target=self._schedule, daemon=True)
        self._scheduler.start()

    def finish(self) -> None:
        self.stop.set()
        self._scheduler.join(10)
        self._pool.shutdown(wait=True)

    @property
    def statuses(self) -> Counter[int]:
        with self.lock:
            return Counter(a.status for a in self.answers)

    def answered_between(self, sent_after: float, answered_before: float) -> Counter[int]:
        with self.lock:
            return Counter(a.status for a in self.answers if a.sent >= sent_after and a.answered <= answered_before)

    def _schedule(self) -> None:
        interval = self.batch / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            with self.lock:
                full = self._in_flight >= self.max_in_flight
                self._in_flight += not full
            if full:
                self.skipped += 1
            else:
                self._pool.submit(self._send_once)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(headers={"X-Api-Key": self.key}, timeout=30)
        return client

    def _send_once(self) -> None:
        ids = [str(uuid.uuid4()) for _ in range(self.batch)]
        body = orjson.dumps([{"type": ONESHOT_TYPE, "user_id": f"u{n % 17}", "event_id": i, "properties": {"n": n}}
                             for n, i in enumerate(ids)])
        url = self.urls[next(self._next_url) % len(self.urls)]
        sent = time.monotonic()
        try:
            status = self._client().post(f"{url}/v1/events", content=body,
                                         headers={"Content-Type": "application/json"}).status_code
        except httpx.HTTPError:
            status = 0
        with self.lock:
            self._in_flight -= 1
            self.answers.append(Answer(sent, time.monotonic(), status))
            (self.acked if 200 <= status < 300 else self.refused).update(ids)
