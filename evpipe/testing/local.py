"""A private pipeline as processes on this machine: what the ``evpipe_pipeline`` fixture runs by default.

The same servers as `evpipe dev up`, each tier its own process: the Tansu broker,
`evpipe clickhouse serve`, the gateway, the archiver and the loader, on free
loopback ports, with every file (pid files, logs, ClickHouse data, the
archive) under one directory. Unlike `dev up` there is no supervisor: a tier
that dies stays dead, so a test sees the failure instead of a restart.

    with LocalPipeline(tmp_path) as pipeline:
        ids = pipeline.send([{"type": "signup", "user_id": "u1"}])
        pipeline.wait_loaded(ids)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from evpipe.local.broker import LocalBroker
from evpipe.local.daemon import Daemon, StartError, free_port
from evpipe.testing.pipeline import Endpoints, Pipeline, PipelineError, PipelineRunner

if TYPE_CHECKING:
    from evpipe.local.stack import PipelineProcess

API_KEY = "evpipe-test-key"
SOURCE_ID = "test"
# Variables the pipeline's settings classes read. The test process's own values (a developer's shell, CI) are
# not handed on: the private pipeline is configured by this module and the caller's ``env`` alone.
EVPIPE_VARIABLES = ("KAFKA_", "CLICKHOUSE_", "GATEWAY_", "CONSUMER_", "ARCHIVE", "LOADER_", "EVPIPE_", "S3_",
                    "METRICS_PORT", "LOG_LEVEL", "REDIS_", "DATABASE_URL", "WORKER_", "REPLAY_")
# Fast enough for tests: consumers join a Tansu group in about half the session timeout, and batches and
# archive files are cut every second, so an event is queryable and archived a second or two after it is sent.
TEST_DEFAULTS = {
    "KAFKA_PARTITIONS": "2",
    "CONSUMER_SESSION_TIMEOUT_MS": "6000",
    "CONSUMER_BATCH_MAX_AGE_S": "1",
    "GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0",
}
STOP_TIMEOUT_S = 20.0


class LocalPipeline(PipelineRunner):
    """Start a private pipeline under ``workdir`` on entry; stop every process on exit.

    ``env`` adds or overrides variables of every process (e.g. ``{"KAFKA_PARTITIONS": "6"}``).
    """

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None, start_timeout: float = 120.0) -> None:
        self.state = Path(workdir).resolve() / "state"
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.broker = LocalBroker(self.state, free_port())
        self.ports = {name: free_port() for name in ("clickhouse", "gateway", "archiver", "loader")}
        self.pipeline: Pipeline | None = None

    def launch(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.broker.ensure()
        clickhouse, *tiers = self.processes()
        self._start(clickhouse)  # first: it loads its engine while the topics are made
        self._create_topics()
        for process in tiers:
            self._start(process)
        self._wait_healthy([clickhouse, *tiers])

    def endpoints(self) -> Endpoints:
        return Endpoints(gateway_url=f"http://127.0.0.1:{self.ports['gateway']}", api_key=API_KEY,
                         clickhouse_url=f"http://127.0.0.1:{self.ports['clickhouse']}",
                         archive_dir=self.state / "archive", logs=str(self.state / "logs"))

    def processes(self) -> list[PipelineProcess]:
        """ClickHouse, gateway, archiver and loader with their own variables and health URLs."""
        from evpipe.local.stack import PipelineProcess

        at = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        return [
            PipelineProcess("clickhouse", ("clickhouse", "serve"),
                            {"CLICKHOUSE_HTTP_PORT": str(self.ports["clickhouse"])}, f"{at['clickhouse']}/ping"),
            PipelineProcess("gateway", ("gateway",), {"GATEWAY_PORT": str(self.ports["gateway"])},
                            f"{at['gateway']}/readyz"),
            PipelineProcess("archiver", ("archiver",), {"METRICS_PORT": str(self.ports["archiver"])},
                            f"{at['archiver']}/metrics"),
            PipelineProcess("loader", ("loader",), {"METRICS_PORT": str(self.ports["loader"])},
                            f"{at['loader']}/healthz"),
        ]

    def environment(self) -> dict[str, str]:
        """What every process gets: the test process's environment without evpipe's variables, then the pipeline's."""
        inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith(EVPIPE_VARIABLES)}
        # The directory holding the evpipe package, so a checkout that is not pip-installed runs too.
        code_root = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH", "")) if p)
        return inherited | TEST_DEFAULTS | {
            "PYTHONPATH": python_path,
            "EVPIPE_STATE_DIR": str(self.state),
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "CLICKHOUSE_URL": f"http://127.0.0.1:{self.ports['clickhouse']}",
            "ARCHIVE_URI": str(self.state / "archive"),
            "GATEWAY_API_KEYS": f"{API_KEY}={SOURCE_ID}",
        } | self.extra_env

    def _start(self, process: PipelineProcess) -> None:
        env = self.environment() | process.env
        process.daemon(self.state).start([sys.executable, "-m", "evpipe", *process.command], env=env, cwd=self.state)

    def _create_topics(self) -> None:
        done = subprocess.run([sys.executable, "-m", "evpipe", "topics", "create"], check=False,
                              env=self.environment(), cwd=self.state, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise PipelineError(f"evpipe topics create failed: {done.stdout}{done.stderr}")

    def _wait_healthy(self, processes: list[PipelineProcess]) -> None:
        from evpipe.local.stack import wait_healthy

        try:
            wait_healthy(processes, self.state, self.start_timeout)
        except StartError as exc:
            raise PipelineError(str(exc)) from None

    def stop(self) -> None:
        """Stop every process this pipeline started: the gateway and consumers first, then ClickHouse, the broker."""
        if self.pipeline is not None:
            self.pipeline.close()
        tiers = [Daemon(name, self.state) for name in ("gateway", "archiver", "loader")]
        with ThreadPoolExecutor(len(tiers)) as pool:  # together: each may take seconds to finish its batches
            list(pool.map(lambda daemon: daemon.stop(timeout=STOP_TIMEOUT_S), tiers))
        Daemon("clickhouse", self.state).stop(timeout=STOP_TIMEOUT_S)
        self.broker.stop()
