"""`evpipe clickhouse serve` as a local background server, reused when one already answers on its port."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from evpipe.local.daemon import Daemon, ensure_started

DEFAULT_PORT = 8123


@dataclass(frozen=True)
class LocalClickHouse:
    state_dir: Path
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    data_dir: Path | None = None  # default: <state_dir>/clickhouse

    @property
    def daemon(self) -> Daemon:
        return Daemon(f"clickhouse-{self.port}", self.state_dir)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                return bool(response.read().startswith(b"Ok."))
        except (OSError, urllib.error.URLError):
            return False

    def ensure(self, timeout: float = 60.0) -> str:
        """Start the server unless one already answers; returns 'reused' or 'started'."""
        env = os.environ | {"EVPIPE_STATE_DIR": str(self.state_dir), "CLICKHOUSE_HTTP_HOST": self.host,
                            "CLICKHOUSE_HTTP_PORT": str(self.port)}
        if self.data_dir is not None:
            env["CLICKHOUSE_DATA_DIR"] = str(self.data_dir)
        return ensure_started(self.daemon, self.healthy, [sys.executable, "-m", "evpipe", "clickhouse", "serve"],
                              env, timeout, "evpipe clickhouse serve",
                              f"port {self.port} in use, or its data directory held by another process?")

    def stop(self) -> bool:
        return self.daemon.stop(timeout=60.0)
