"""Abuse: >= 10,000 hostile requests against one real gateway process (uvicorn, Redis backend).

Every answer must be a 4xx (or a 503 under load), never a 2xx or another 5xx; the process never dies;
its RSS stays bounded. A few slowloris-style clients drip their bodies meanwhile, and the gateway
must keep answering everyone else. EVPIPE_FULL=1 sends 100,000.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from evpipe.local.daemon import free_port, port_open, terminate
from tests.system.hostile import KEY, generate
from tests.system.report import table

FULL = os.environ.get("EVPIPE_FULL") == "1"
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(1800 if FULL else 300)]

REQUESTS = 100_000 if FULL else 10_000
THREADS = 8
SLOW_CLIENTS = 20
RSS_BOUND_MIB = 500.0
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


OTHER_KEY = "other-key"


def start_gateway(tmp_path: Path, **overrides: str) -> Iterator[Gateway]:
    port, queue = free_port(), f"evpipe-abuse-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "gateway.log"
    env = os.environ | {"GATEWAY_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0",
                        "REDIS_QUEUE_KEY": queue, "GATEWAY_API_KEYS": f"{KEY}=abuse,{OTHER_KEY}=other",
                        "GATEWAY_PORT": str(port), "GATEWAY_LOG_LEVEL": "warning",
                        "GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0",
                        # Every refused body is kept: a small kept prefix keeps 10,000 of them light in Redis.
                        "GATEWAY_MAX_KEPT_BODY_BYTES": "2048", **overrides}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "evpipe", "gateway"], env=env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
        yield Gateway(proc, port, log)
    finally:
        if proc.poll() is None:
            terminate(proc.pid, 20)
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        client.delete(queue, f"{queue}:invalid")
        client.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path)


@pytest.fixture
def quick_deadlines(tmp_path: Path) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path, GATEWAY_BODY_TIMEOUT_S="2")


@dataclass
class Tally:
    by_kind: dict[str, Counter[int]] = field(default_factory=dict)  # status (0: connection closed) by kind
    bad: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int, detail: str) -> None:
        with self.lock:
            self.by_kind.setdefault(kind, Counter())[status] += 1
            # A closed connection is an acceptable refusal only for an oversized head or body, or a body never finished.
            ok = 400 <= status < 500 or status == 503 or (
                status == 0 and kind in ("header_floods", "huge_strings", "gzip_bombs", "slowloris"))
            if not ok:
                self.bad.append(f"{kind}: {status} {detail[:200]}")

    def total(self) -> int:
        return sum(sum(c.values()) for c in self.by_kind.values())

    def count(self, statuses: set[int] | range) -> int:
        return sum(n for c in self.by_kind.values() for s, n in c.items() if s in statuses)


def hammer(url: str, seed: int, n: int, tally: Tally) -> None:
    rng = random.Random(seed)
    client = httpx.Client(base_url=url, timeout=30)
    try:
        for _ in range(n):
            kind, path, headers, body = generate(rng)
            try:
                response = client.post(path, content=body, headers=headers)
                tally.add(kind, response.status_code, response.text)
            except httpx.HTTPError as exc:
                tally.add(kind, 0, repr(exc))
                client.close()
                client = httpx.Client(base_url=url, timeout=30)
    finally:
        client.close()


def slowloris(port: int, stop: threading.Event, answers: list[bytes]) -> None:
    """Promise a body, then drip it a byte every half second until told to stop."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + KEY.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        try:
            while not stop.wait(0.5):
                sock.sendall(b" ")
            sock.shutdown(socket.SHUT_WR)
            answers.append(sock.recv(200))
        except OSError:
            answers.append(b"closed")


def test_hostile_requests_get_4xx_never_5xx_and_memory_stays_bounded(gateway: Gateway) -> None:
    process = psutil.Process(gateway.proc.pid)
    rss_start = process.memory_info().rss / 2**20
    peak = [rss_start]
    tally = Tally()
    stop, slow_answers = threading.Event(), []  # type: ignore[var-annotated]
    slow = [threading.Thread(target=slowloris, args=(gateway.port, stop, slow_answers), daemon=True)
            for _ in range(SLOW_CLIENTS)]
    workers = [threading.Thread(target=hammer, args=(gateway.url, 1000 + t, REQUESTS // THREADS, tally))
               for t in range(THREADS)]
    started = time.monotonic()
    for t in [*slow, *workers]:
        t.start()
    while any(w.is_alive() for w in workers):
        peak.append(process.memory_info().rss / 2**20)
        time.sleep(0.2)
    took = time.monotonic() - started
    # With the slow clients still holding their connections, an ordinary client is served at once.
    probe = httpx.post(f"{gateway.url}/v1/events", content=b'{"type":"probe","user_id":"u"}',
                       headers={"X-Api-Key": KEY}, timeout=10)
    stop.set()
    for t in slow:
        t.join(15)
    for answer in slow_answers:
        status = int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else 0
        tally.add("slowloris", status, answer.decode(errors="replace"))
    alive = gateway.proc.poll() is None
    table("Abuse run" + (" (full)" if FULL else " (CI form)"), {
        "hostile requests sent": tally.total(),
        "by kind (status: count; 0 = connection closed)": {k: dict(c) for k, c in sorted(tally.by_kind.items())},
        "2xx": tally.count(range(200, 300)),
        "5xx other than 503": tally.count(set(range(500, 600)) - {503}),
        "503": tally.count({503}),
        "gateway alive": alive,
        "RSS MiB start / peak": f"{rss_start:.0f} / {max(peak):.0f}",
        "seconds": round(took, 1),
    })
    assert tally.total() >= REQUESTS
    assert alive, gateway.log.read_text()[-3000:]
    assert probe.status_code == 200, probe.text
    assert tally.bad == [], tally.bad[:10]
    assert max(peak) < RSS_BOUND_MIB


@pytest.mark.parametrize("depth", [300, 1000])
def test_nesting_between_the_dump_and_parse_limits(gateway: Gateway, depth: int) -> None:
    """Regression: a rejected event nested deeper than orjson serialises (254) but within what it parses
    (1024) was a 500 (kept in the invalid store via orjson.dumps). Now a 4xx."""
    body = b'{"type":"t","user_id":"u","properties":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    response = httpx.post(f"{gateway.url}/v1/events", content=body, headers={"X-Api-Key": KEY}, timeout=10)
    assert 400 <= response.status_code < 500, response.text


# -- strangers and slow clients cannot hold the gateway ---------------------------------------------------

DEFAULT_INFLIGHT = 64 * 1024 * 1024


def _whitespace_gzip(inflated: int) -> bytes:
    """A JSON array of whitespace that inflates to ``inflated`` bytes (the probe's 16 KB -> 16 MiB bodies)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    return comp.compress(b"[") + comp.compress(b" " * (inflated - 2)) + comp.compress(b"]") + comp.flush()


def _stall(port: int, body: bytes, headers: bytes) -> socket.socket:
    """Send a request with all of its body but the last byte, and keep the connection open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n" + headers
                 + b"Content-Length: %d\r\n\r\n" % len(body) + body[:-1])
    return sock


def _answer(sock: socket.socket) -> int:
    try:
        head = sock.recv(200)
    except OSError:
        return 0
    return int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0


def _latencies(url: str, key: str, n: int) -> list[tuple[int, float]]:
    out = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(n):
            started = time.perf_counter()
            response = client.post("/v1/events", content=b'{"type":"legit","user_id":"u%d"}' % i,
                                   headers={"X-Api-Key": key})
            out.append((response.status_code, time.perf_counter() - started))
    return out


def _p99(samples: list[tuple[int, float]]) -> float:
    times = sorted(t for _, t in samples)
    return times[int(len(times) * 0.99) - 1]


def test_stalled_strangers_cannot_take_the_memory_budget(gateway: Gateway) -> None:
    """Four unauthenticated bodies inflating to the whole default budget (64 MiB), then stalled."""
    bomb = _whitespace_gzip(DEFAULT_INFLIGHT // 4)
    stalled = [_stall(gateway.port, bomb, b"Content-Type: application/json\r\n") for _ in range(4)]
    try:
        time.sleep(0.5)
        served = _latencies(gateway.url, KEY, 200)
        refused = [_answer(sock) for sock in stalled]  # each was cut off at the small unauthenticated cap
    finally:
        for sock in stalled:
            sock.close()
    table("Stalled unauthenticated bodies", {
        "stalled bodies (inflated MiB each)": f"4 ({DEFAULT_INFLIGHT // 4 // 2**20})",
        "their answers": refused, "legit requests": len(served),
        "legit statuses": dict(Counter(s for s, _ in served)), "legit p99 ms": round(_p99(served) * 1000, 1)})
    assert {status for status, _ in served} == {200}
    assert _p99(served) < 1.0
    assert refused == [413] * 4


def test_one_key_cannot_take_every_keys_share(gateway: Gateway) -> None:
    """One key's stalled bodies stop at its share; another key is served meanwhile."""
    body = _whitespace_gzip(15 * 2**20)  # under the 20 MiB decompressed cap; 3 of them pass 32 MiB
    header = f"X-Api-Key: {KEY}\r\nContent-Type: application/json\r\n".encode()
    stalled = [_stall(gateway.port, body, header) for _ in range(4)]
    try:
        time.sleep(0.5)
        served = _latencies(gateway.url, OTHER_KEY, 100)
        over_share = [sock for sock in stalled if _ready(sock)]
        answers = [_answer(sock) for sock in over_share]
    finally:
        for sock in stalled:
            sock.close()
    assert {status for status, _ in served} == {200}
    assert _p99(served) < 1.0
    assert answers and set(answers) == {429}  # the key's third and fourth bodies were over its share


def _ready(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 1.0)[0])


def _read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends until it closes (a reset after the answer, for the unread body we kept sending, is a close too)."""
    received = b""
    try:
        while chunk := sock.recv(5000):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_slow_body_is_answered_408_and_closed_at_its_deadline(quick_deadlines: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", quick_deadlines.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + KEY.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b" ")
            except OSError:
                break
            if _ready(sock):
                answer = sock.recv(500)
                break
        took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 1.5 < took < 5, took
        sock.settimeout(5)
        answer += _read_until_closed(sock)  # head and body may come in separate segments
        assert b"GATEWAY_BODY_TIMEOUT_S" in answer and b"connection: close" in answer.lower(), answer
