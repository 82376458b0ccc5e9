"""An id-tracking client for the system runs: every event carries its own id, and every answer is recorded.

Unlike the benchmark load generator (which counts events and lets the gateway assign ids), the
invariants need to know *which* ids were acknowledged, which were resent, and which were rejected.
Threads send small batches round-robin over the gateways at a modest fixed rate; on a 503 or a
broken connection the same body (same ids) is resent, to the next gateway, as a load balancer would.
Each batch carries one invalid event (``type`` is a number) that the gateway must reject and keep
in its invalid/dead-letter store, never in the sinks.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import orjson

LOAD_TYPE = "system_load"


@dataclass
class TrackingLoad:
    urls: list[str]
    key: str
    rate: float = 200.0  # valid events/s, all threads together
    batch: int = 20  # valid events per request (plus one invalid)
    threads: int = 4
    acked: set[str] = field(default_factory=set)  # valid ids answered 2xx
    resent: set[str] = field(default_factory=set)  # ids sent again after a 503 or a broken connection
    rejected: set[str] = field(default_factory=set)  # invalid ids the gateway answered as rejected
    pending: set[str] = field(default_factory=set)  # ids never acknowledged when the load stopped
    statuses: Counter[int] = field(default_factory=Counter)  # 0: connection error
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    _next_url: itertools.count[int] = field(default_factory=itertools.count)

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def finish(self, resend_for_s: float = 60.0) -> None:
        """Stop new batches; a batch still being resent gets ``resend_for_s`` more to be acknowledged."""
        self.stop.set()
        for worker in self._workers:
            worker.join(resend_for_s + 40)

    def acked_now(self) -> set[str]:
        with self.lock:
            return set(self.acked)

    def _url(self) -> str:
        return self.urls[next(self._next_url) % len(self.urls)]

    def _run(self) -> None:
        interval = self.batch * self.threads / self.rate
        with httpx.Client(headers={"X-Api-Key": self.key}, timeout=30) as client:
            next_at = time.monotonic()
            while not self.stop.is_set():
                next_at += interval
                self._send_until_acked(client)
                time.sleep(max(0.0, next_at - time.monotonic()))

    def _send_until_acked(self, client: httpx.Client) -> None:
        ids = [str(uuid.uuid4()) for _ in range(self.batch)]
        bad = str(uuid.uuid4())
        events: list[dict[str, object]] = [
            {"type": LOAD_TYPE, "user_id": f"u{n % 13}", "event_id": i, "properties": {"n": n}}
            for n, i in enumerate(ids)]
        events.append({"type": 12345, "user_id": "bad", "event_id": bad})  # invalid: type must be a string
        body = orjson.dumps(events)
        give_up = float("inf")
        while time.monotonic() < give_up:
            status, answer = self._post(client, body)
            with self.lock:
                self.statuses[status] += 1
            if 200 <= status < 300:
                self._record_ack(ids, bad, answer)
                return
            if status not in (0, 503):
                with self.lock:
                    self.unexpected.append(f"{status}: {answer!r:.200}")
                return
            with self.lock:
                self.resent.update(ids)
            if self.stop.is_set() and give_up == float("inf"):
                give_up = time.monotonic() + 60.0
            time.sleep(0.2)
        with self.lock:
            self.pending.update(ids)

    def _post(self, client: httpx.Client, body: bytes) -> tuple[int, dict[str, object]]:
        try:
            response = client.post(f"{self._url()}/v1/events", content=body,
                                   headers={"Content-Type": "application/json"})
        except httpx.HTTPError:
            return 0, {}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"text": response.text[:200]}

    def _record_ack(self, ids: list[str], bad: str, answer: dict[str, object]) -> None:
        rejected = answer.get("rejected")
        indexes = [r.get("index") for r in rejected] if isinstance(rejected, list) else None
        with self.lock:
            if answer.get("accepted") != len(ids) or indexes != [len(ids)]:
                self.unexpected.append(f"200 with an unexpected answer: {answer!r:.300}")
            self.acked.update(ids)
            self.rejected.add(bad)
