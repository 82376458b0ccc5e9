"""ClickHouse client factory: a server over HTTP(S), or the embedded engine (chdb).

``CLICKHOUSE_URL`` forms:
* empty: embedded engine at ``<EVPIPE_STATE_DIR>/clickhouse``;
* ``chdb:///abs/path``: embedded engine at that path (one path per process: chdb's limit);
* ``http[s]://user:password@host:port``: a ClickHouse server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from evpipe.settings import ClickHouseSettings, StateSettings


def embedded_path(url: str, state_dir: Path) -> Path | None:
    """The chdb data path a URL selects, or None for a server URL."""
    if not url:
        return (state_dir / "clickhouse").resolve()
    if url.startswith("chdb://"):
        return Path(urlparse(url).path)
    return None


def connect(url: str, state_dir: Path = Path(".evpipe"), **kwargs: Any) -> Client:
    path = embedded_path(url, state_dir)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=f"chdb://{path}", **kwargs)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"CLICKHOUSE_URL must be http(s)://..., chdb:///path or empty; got {url!r}")
    return clickhouse_connect.get_client(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=unquote(parsed.username or "default"),
        password=unquote(parsed.password or ""),
        secure=parsed.scheme == "https",
        **kwargs,
    )


def connect_from(settings: ClickHouseSettings) -> Client:
    state_dir = settings.evpipe_state_dir if isinstance(settings, StateSettings) else Path(".evpipe")
    return connect(settings.clickhouse_url, state_dir)
