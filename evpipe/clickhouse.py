"""ClickHouse client factory: every process reaches ClickHouse over HTTP(S), as a client.

``CLICKHOUSE_URL`` is ``http[s]://user:password@host:port``: a ClickHouse
server, cluster or ClickHouse Cloud, or `evpipe clickhouse serve` (the
embedded engine as a server, the one-machine default at 127.0.0.1:8123).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

DEFAULT_URL = "http://127.0.0.1:8123"


class ClickHouseUnreachable(RuntimeError):
    """No ClickHouse answered at the URL within the wait; the message says where and what to do."""


def connect(url: str = DEFAULT_URL, timeout_s: float = 60.0, **kwargs: Any) -> Client:
    parsed = urlparse(url or DEFAULT_URL)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"CLICKHOUSE_URL must be http(s)://[user:password@]host:port; got {url!r} (the embedded "
                         "engine is served by `evpipe clickhouse serve` at http://127.0.0.1:8123)")
    return clickhouse_connect.get_client(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=unquote(parsed.username or "default"),
        password=unquote(parsed.password or ""),
        secure=parsed.scheme == "https",
        connect_timeout=min(10.0, timeout_s),
        send_receive_timeout=timeout_s,
        **kwargs,
    )


def connect_waiting(url: str, wait_s: float, timeout_s: float = 60.0, **kwargs: Any) -> Client:
    """Connect, retrying while nothing answers for up to ``wait_s`` (a server still starting)."""
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            return connect(url, timeout_s, **kwargs)
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise ClickHouseUnreachable(
                    f"no ClickHouse answers at {redacted(url)} ({exc}); start one with `evpipe clickhouse serve` "
                    "(or `evpipe dev up`), or set CLICKHOUSE_URL") from None
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def redacted(url: str) -> str:
    from evpipe.settings import redact_url

    return redact_url(url or DEFAULT_URL)
