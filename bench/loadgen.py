"""An open-loop HTTP load generator that holds a target event rate (multi-process, pre-encoded bodies).

Each process runs a few threads, each with a keep-alive connection. Request slots are
scheduled at fixed times (``batch / rate`` apart per process); a thread takes the next
slot, sleeps until it, sends. When the server is slower than the schedule, slots are
sent late and the achieved rate drops below the offered one: that shows in the result.

Bodies are encoded once; the gateway assigns event ids. Once per ``marker_every_s`` a
process puts one *marker* event with its own event id into a batch and, when the
batch is acknowledged, reports (event_id, ack time) on a queue: the latency tracker
follows those ids until ClickHouse shows them.

:func:`ceiling` measures the generator itself against a server that answers at once.
"""

from __future__ import annotations

import http.client
import math
import multiprocessing as mp
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson

BODIES = 16  # distinct pre-encoded bodies (users), so events spread over partitions


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    key: str
    rate: float  # events/s, all processes together
    seconds: float
    batch: int = 1000
    processes: int = 2
    connections: int = 0  # per process; 0: enough for the rate at 1.5 s per request (at least 8)
    marker_every_s: float = 0.25  # per process; 0: no markers
    more_ports: tuple[int, ...] = ()  # more gateways: connections go round-robin over all, as behind a balancer


@dataclass
class LoadResult:
    offered_rate: float
    seconds: float
    accepted: int = 0
    requests: int = 0
    non_2xx: int = 0
    errors: int = 0
    late_slots: int = 0
    per_second: list[int] = field(default_factory=list)  # accepted events by second since start
    latencies_ms: list[float] = field(default_factory=list)  # request round trips (sampled)

    @property
    def events_per_s(self) -> float:
        return self.accepted / self.seconds

    def merge(self, other: dict[str, Any]) -> None:
        for name in ("accepted", "requests", "non_2xx", "errors", "late_slots"):
            setattr(self, name, getattr(self, name) + other[name])
        for i, n in enumerate(other["per_second"]):
            if i >= len(self.per_second):
                self.per_second.append(0)
            self.per_second[i] += n
        self.latencies_ms += other["latencies_ms"]


def event(n: int, user: int) -> dict[str, Any]:
    kinds = ("page_view", "product_viewed", "add_to_cart", "checkout_started", "order_completed")
    return {"type": kinds[n % len(kinds)], "user_id": f"user-{user}-{n % 97}",
            "properties": {"path": "/pricing", "referrer": "https://example.com/blog", "n": n},
            "context": {"locale": "en-US", "library": {"name": "evpipe-bench", "version": "1"}}}


def bodies(batch: int, salt: int) -> list[bytes]:
    return [orjson.dumps([event(n, salt * BODIES + b) for n in range(batch)]) for b in range(BODIES)]


MARKER_TYPE = "bench_marker"  # the tracker's lookup names it: the events table's sort key then skips the load


def with_marker(body: bytes, marker_id: str) -> bytes:
    """The body with one more event appended, carrying an event id the tracker follows."""
    marker = orjson.dumps({"event_id": marker_id, "type": MARKER_TYPE, "user_id": "marker"})
    return body[:-1] + b"," + marker + b"]"


class _Schedule:
    def __init__(self, interval: float, seconds: float) -> None:
        self.interval, self.seconds = interval, seconds
        self.start = time.monotonic()
        self.slot = 0
        self.lock = threading.Lock()

    def next(self) -> float | None:
        """Time (monotonic) of the next slot, or None when the run is over."""
        with self.lock:
            at = self.start + self.slot * self.interval
            self.slot += 1
        # Over when the schedule or the clock passes the duration (a slow server must not stretch the run).
        over = at - self.start >= self.seconds or time.monotonic() - self.start >= self.seconds
        return None if over else at


def _worker(spec_d: dict[str, Any], index: int, out: Any, markers: Any) -> None:
    spec = LoadSpec(**spec_d)
    proc_rate = spec.rate / spec.processes
    batch_bodies = bodies(spec.batch, index)
    schedule = _Schedule(spec.batch / proc_rate, spec.seconds)
    stats: dict[str, Any] = {"accepted": 0, "requests": 0, "non_2xx": 0, "errors": 0, "late_slots": 0,
                             "per_second": [0] * (int(spec.seconds) + 2), "latencies_ms": []}
    lock = threading.Lock()
    last_marker = [0.0]
    headers = {"Content-Type": "application/json", "X-Api-Key": spec.key}

    ports = (spec.port, *spec.more_ports)

    def loop(thread: int) -> None:
        port = ports[(thread + index) % len(ports)]
        conn = http.client.HTTPConnection(spec.host, port, timeout=30)
        n = thread
        while (at := schedule.next()) is not None:
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body, marker = batch_bodies[n % BODIES], None
            n += 1
            if markers is not None and spec.marker_every_s and time.monotonic() - last_marker[0] >= spec.marker_every_s:
                last_marker[0] = time.monotonic()
                marker = str(uuid.uuid4())
                body = with_marker(body, marker)
            sent = time.monotonic()
            try:
                conn.request("POST", "/v1/events", body, headers)
                response = conn.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(spec.host, port, timeout=30)
                with lock:
                    stats["errors"] += 1
                continue
            done = time.monotonic()
            with lock:
                stats["requests"] += 1
                stats["late_slots"] += delay < -0.05
                if n % 4 == 0:
                    stats["latencies_ms"].append((done - sent) * 1000)
                if 200 <= status < 300:
                    accepted = int(orjson.loads(answer)["accepted"])
                    stats["accepted"] += accepted
                    second = min(int(done - schedule.start), len(stats["per_second"]) - 1)
                    stats["per_second"][second] += accepted
                else:
                    stats["non_2xx"] += 1
            if marker is not None and 200 <= status < 300:
                markers.put((marker, time.time()))
        conn.close()

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(spec.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(stats)


def connections_for(rate: float, batch: int, processes: int) -> int:
    """Connections per process so that requests answered within 1.5 s still keep the schedule."""
    return max(8, min(256, math.ceil(rate / batch * 1.5 / processes)))


def generate(spec: LoadSpec, markers: Any = None) -> LoadResult:
    """Run the load for ``spec.seconds``; ``markers`` (a multiprocessing queue) receives acked marker ids."""
    if not spec.connections:
        spec = replace(spec, connections=connections_for(spec.rate, spec.batch, spec.processes))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(asdict(spec), i, out, markers), daemon=True)
             for i in range(spec.processes)]
    for p in procs:
        p.start()
    result = LoadResult(spec.rate, spec.seconds)
    for _ in procs:
        result.merge(out.get(timeout=spec.seconds + 120))
    for p in procs:
        p.join(10)
    return result


def _sink(port_out: Any, batch: int) -> None:
    """An HTTP server that reads each request and answers 200 at once: the generator's ceiling target."""
    answer = orjson.dumps({"accepted": batch, "rejected": []})
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(answer)).encode() + b"\r\n\r\n" + answer)

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(buf) < length:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                conn.sendall(response)

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(256)
        port_out.put(server.getsockname()[1])
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


def start_sink(batch: int) -> tuple[Any, int]:
    """A process running :func:`_sink`, and its port; kill the process when done."""
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    sink = ctx.Process(target=_sink, args=(port_q, batch), daemon=True)
    sink.start()
    return sink, int(port_q.get(timeout=30))


def ceiling(seconds: float = 3.0, batch: int = 1000, processes: int = 2, connections: int = 16) -> float:
    """Events/s the generator itself reaches against a server that answers at once (no schedule limit)."""
    sink, port = start_sink(batch)
    try:
        spec = LoadSpec("127.0.0.1", port, "k", rate=1e9, seconds=seconds, batch=batch, processes=processes,
                        connections=connections, marker_every_s=0)
        return generate(spec).events_per_s
    finally:
        sink.kill()
        sink.join(5)
