"""Request-head limits of the real gateway (uvicorn + HeadLimitedProtocol), probed with raw sockets.

The head is refused before the app runs, so only a real server shows it: one gateway on the Redis
backend for the module, with a 2 s head deadline to keep the slow-client tests short.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
import pytest

from evpipe.local.daemon import free_port, port_open, terminate
from tests.providers import Service

REPO = Path(__file__).resolve().parents[2]
HEAD_TIMEOUT_S = 2.0
MAX_HEADER = 16 * 1024  # the defaults of GATEWAY_MAX_HEADER_BYTES and GATEWAY_MAX_HEAD_BYTES
MAX_HEAD = 64 * 1024


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)


@pytest.fixture(scope="module")
def gateway(redis_server: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    env = os.environ | {
        "GATEWAY_BACKEND": "redis", "REDIS_URL": redis_server.url,
        "REDIS_QUEUE_KEY": f"evpipe-test-{uuid.uuid4().hex[:8]}:events", "GATEWAY_API_KEYS": "key-a=source_a",
        "GATEWAY_PORT": str(port), "GATEWAY_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S), "GATEWAY_LOG_LEVEL": "warning",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "evpipe", "gateway"], env=env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.1)
    try:
        yield Gateway(proc, port)
    finally:
        if proc.poll() is None:
            terminate(proc.pid, 20)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP response (content-length framed) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a full answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the body"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gateway\r\n" + extra + b"\r\n"


def assert_refused(answer: Answer, status: int, setting: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["connection"] == "close"
    assert answer.headers["content-type"] == "application/json"
    assert setting in orjson.loads(answer.body)["error"]


# ---- sizes ------------------------------------------------------------------------------------------


def test_normal_request_and_keep_alive_are_unaffected(gateway: Gateway) -> None:
    body = orjson.dumps({"type": "page_view", "anonymous_id": "a1"})
    post = (b"POST /v1/events HTTP/1.1\r\nHost: gateway\r\nX-Api-Key: key-a\r\nContent-Type: application/json\r\n"
            b"User-Agent: test/1.0\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    with gateway.connect() as sock:
        for _ in range(3):  # the same connection, one request after the other
            sock.sendall(post)
            assert read_answer(sock).status == 200
        sock.sendall(get("/healthz"))
        assert read_answer(sock).status == 200


def test_large_body_in_the_same_chunks_as_the_head_is_not_counted_as_head(gateway: Gateway) -> None:
    # No newline in 100 KB: over both limits if the body's bytes were taken for the head's last line.
    events = [{"type": "page_view", "anonymous_id": f"a{i}", "properties": {"pad": "x" * 1000}} for i in range(100)]
    body = orjson.dumps(events)
    assert len(body) > MAX_HEAD and b"\n" not in body
    post = (b"POST /v1/events HTTP/1.1\r\nHost: gateway\r\nX-Api-Key: key-a\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with gateway.connect() as sock:
        for _ in range(2):
            sock.sendall(post)
            assert read_answer(sock).status == 200


def test_header_at_the_limit_is_accepted_one_byte_more_is_431(gateway: Gateway) -> None:
    name = b"X-Pad"
    with gateway.connect() as sock:
        sock.sendall(get("/healthz", name + b": " + b"v" * (MAX_HEADER - len(name)) + b"\r\n"))
        assert read_answer(sock).status == 200
    with gateway.connect() as sock:
        sock.sendall(get("/healthz", name + b": " + b"v" * (MAX_HEADER - len(name) + 1) + b"\r\n"))
        assert_refused(read_answer(sock), 431, "GATEWAY_MAX_HEADER_BYTES")
        assert closed_by_server(sock)


def test_many_headers_over_the_head_limit_are_431(gateway: Gateway) -> None:
    headers = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEAD // 1000 + 2))
    with gateway.connect() as sock:
        sock.sendall(get("/healthz", headers))
        assert_refused(read_answer(sock), 431, "GATEWAY_MAX_HEAD_BYTES")
        assert closed_by_server(sock)


def test_huge_header_is_431_without_buffering_it(gateway: Gateway) -> None:
    # Before the limit, httptools kept the whole header: a 64 MiB one added ~240 MiB of RSS. Now at most
    # the head limit plus one read chunk (256 KiB) reaches the parser; 16 MiB of slack covers allocator
    # noise and is still far below the header's own size.
    start = gateway.rss()
    peak = start
    header = b"Authorization: Bearer " + b"k" * (64 << 20)
    with gateway.connect() as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: gateway\r\n")
        sender = threading.Thread(target=_send_ignoring_close, args=(sock, header), daemon=True)
        sender.start()
        answer = read_answer(sock)
        while sender.is_alive():
            peak = max(peak, gateway.rss())
            sender.join(0.01)
    assert_refused(answer, 431, "GATEWAY_MAX_HEADER_BYTES")
    peak = max(peak, gateway.rss())
    assert peak - start < 16 << 20, f"RSS grew by {(peak - start) >> 20} MiB"


def _send_ignoring_close(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the gateway closes the connection once it has answered


# ---- the head deadline ------------------------------------------------------------------------------


def _trickle(socks: list[socket.socket], seconds: float, every: float = 1.0) -> None:
    """Send one more header byte on each socket every ``every`` seconds for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for sock in socks:
            try:
                sock.send(b"x")
            except OSError:
                pass  # closed at the deadline
        time.sleep(every)


def test_slow_head_is_408_and_closed_at_the_deadline(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        _trickle([sock], HEAD_TIMEOUT_S + 0.5)
        answer = read_answer(sock)
        assert_refused(answer, 408, "GATEWAY_HEAD_TIMEOUT_S")
        assert closed_by_server(sock)
        assert time.monotonic() - started < HEAD_TIMEOUT_S + 2


def test_slow_next_head_on_a_keep_alive_connection_is_408(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        sock.sendall(get("/healthz"))
        assert read_answer(sock).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")  # the deadline counts from the last answer
        _trickle([sock], HEAD_TIMEOUT_S + 0.5)
        assert_refused(read_answer(sock), 408, "GATEWAY_HEAD_TIMEOUT_S")
        assert closed_by_server(sock)


def test_idle_connection_is_closed_without_an_answer(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        sock.settimeout(HEAD_TIMEOUT_S + 3)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # nothing was asked, so nothing is answered: just closed
        assert HEAD_TIMEOUT_S - 0.5 < time.monotonic() - started < HEAD_TIMEOUT_S + 2


@pytest.mark.slow
def test_many_slow_heads_are_all_closed_while_normal_requests_are_answered(gateway: Gateway) -> None:
    slow = [gateway.connect() for _ in range(50)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        trickler = threading.Thread(target=_trickle, args=(slow, HEAD_TIMEOUT_S + 1, 0.5), daemon=True)
        trickler.start()
        time.sleep(0.5)
        with gateway.connect() as sock:  # meanwhile, a normal client is served at once
            started = time.monotonic()
            sock.sendall(get("/healthz"))
            assert read_answer(sock).status == 200
            assert time.monotonic() - started < 1
        trickler.join()
        for sock in slow:
            sock.settimeout(2)
            assert_refused(read_answer(sock), 408, "GATEWAY_HEAD_TIMEOUT_S")
            assert closed_by_server(sock)
    finally:
        for sock in slow:
            sock.close()
