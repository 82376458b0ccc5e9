"""The same private pipeline in Docker containers (testcontainers), for machines with a Docker engine.

One private Docker network holds `apache/kafka` (one KRaft node), `clickhouse/clickhouse-server` and the
evpipe image running `topics create`, then the gateway, the archiver and the loader, as compose.yaml
does. The host reaches the gateway and ClickHouse on mapped ports; the archiver writes into a host
directory mounted into its container, so :meth:`Pipeline.archive_rows` reads it as it reads the local
runner's. The evpipe image is ``image`` or ``EVPIPE_TESTING_IMAGE`` if given, else built from the
Dockerfile of the checkout this package is in.

    with ContainerPipeline(tmp_path) as pipeline:
        pipeline.wait_loaded(pipeline.send([{"type": "signup", "user_id": "u1"}]))

Needs the test extra's ``testcontainers`` (``pip install 'evpipe[test]'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from evpipe.testing.local import API_KEY, SOURCE_ID, TEST_DEFAULTS
from evpipe.testing.pipeline import Endpoints, Pipeline, PipelineError, PipelineRunner

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.waiting_utils import WaitStrategy

KAFKA_IMAGE = "apache/kafka:3.8.0"
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:24.8"
BUILT_TAG = "evpipe:testing"
CLICKHOUSE_USER, CLICKHOUSE_PASSWORD = "evpipe", "evpipe-test"
# One KRaft node, reachable as kafka:9092 on the network (compose.yaml's settings, without a volume).
KAFKA_ENV = {
    "CLUSTER_ID": "RDfcx9HPTBitBtcGxTLD3w", "KAFKA_NODE_ID": "1", "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093", "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER", "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
}
CLICKHOUSE_ENV = {"CLICKHOUSE_DB": "evpipe", "CLICKHOUSE_USER": CLICKHOUSE_USER,
                  "CLICKHOUSE_PASSWORD": CLICKHOUSE_PASSWORD, "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT": "1"}
EVPIPE_ENV = TEST_DEFAULTS | {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "CLICKHOUSE_URL": f"http://{CLICKHOUSE_USER}:{CLICKHOUSE_PASSWORD}@clickhouse:8123",
    "GATEWAY_API_KEYS": f"{API_KEY}={SOURCE_ID}",
    "ARCHIVE_URI": "/archive",
    "EVPIPE_STATE_DIR": "/tmp/evpipe",
}
# (name, command, port its health answers on, path).
TIERS = (("gateway", "gateway", 8080, "/readyz"), ("archiver", "archiver", 9102, "/metrics"),
         ("loader", "loader", 9310, "/healthz"))


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping (DOCKER_HOST, or the default socket)."""
    try:
        import docker

        return bool(docker.from_env(timeout=3).ping())
    except Exception:  # noqa: BLE001 (no client, no socket, no engine: all mean "no Docker here")
        return False


class ContainerPipeline(PipelineRunner):
    """Start the pipeline's containers on entry; remove them and their network on exit."""

    def __init__(self, workdir: Path, image: str | None = None, env: Mapping[str, str] | None = None,
                 start_timeout: float = 180.0) -> None:
        self.archive = Path(workdir).resolve() / "archive"
        self.image = image or os.environ.get("EVPIPE_TESTING_IMAGE")
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.network: Network | None = None
        self.containers: dict[str, DockerContainer] = {}
        self.pipeline: Pipeline | None = None

    def start(self) -> Pipeline:
        if not docker_engine_answers():
            raise PipelineError("no Docker engine answers (DOCKER_HOST or the default socket); "
                                "use LocalPipeline, which needs no Docker")
        return super().start()

    def launch(self) -> None:
        from testcontainers.core.network import Network

        self.archive.mkdir(parents=True, exist_ok=True)
        self.network = Network().create()
        image = self.image or build_image()
        self._start_servers()
        self._create_topics(image)
        for name, command, port, path in TIERS:
            self._start_tier(name, image, command, port, path)

    def endpoints(self) -> Endpoints:
        gateway, clickhouse = self.containers["gateway"], self.containers["clickhouse"]
        host = gateway.get_container_host_ip()
        return Endpoints(
            gateway_url=f"http://{host}:{gateway.get_exposed_port(8080)}", api_key=API_KEY,
            clickhouse_url=f"http://{CLICKHOUSE_USER}:{CLICKHOUSE_PASSWORD}@{host}:{clickhouse.get_exposed_port(8123)}",
            archive_dir=self.archive, logs="the containers' logs (docker logs; kept until the end of the test)")

    def _start_servers(self) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy

        kafka = DockerContainer(KAFKA_IMAGE).with_envs(**KAFKA_ENV)
        self._run("kafka", kafka, LogMessageWaitStrategy("Kafka Server started"))
        clickhouse = DockerContainer(CLICKHOUSE_IMAGE).with_envs(**CLICKHOUSE_ENV).with_exposed_ports(8123)
        self._run("clickhouse", clickhouse, HttpWaitStrategy(8123, "/ping").for_status_code(200))

    def _create_topics(self, image: str) -> None:
        from testcontainers.core.container import DockerContainer

        topics = self._evpipe(DockerContainer(image).with_command("topics create"))
        self._run("topics", topics, None)
        if topics.wait() != 0:
            raise PipelineError(f"evpipe topics create failed: {topics.get_logs()}")

    def _start_tier(self, name: str, image: str, command: str, port: int, path: str) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import HttpWaitStrategy

        container = self._evpipe(DockerContainer(image).with_command(command)).with_exposed_ports(port)
        container.with_env("GATEWAY_PORT" if name == "gateway" else "METRICS_PORT", str(port))
        if name == "archiver":
            # As the host user, so the test process can read (and pytest delete) what it writes.
            container.with_volume_mapping(str(self.archive), "/archive", "rw")
            container.with_kwargs(user=f"{os.getuid()}:{os.getgid()}")
        self._run(name, container, HttpWaitStrategy(port, path).for_status_code(200))

    def _evpipe(self, container: DockerContainer) -> DockerContainer:
        return container.with_envs(**(EVPIPE_ENV | self.extra_env))

    def _run(self, name: str, container: DockerContainer, ready: WaitStrategy | None) -> None:
        assert self.network is not None
        container.with_network(self.network).with_network_aliases(name)
        if ready is not None:
            container.waiting_for(ready.with_startup_timeout(int(self.start_timeout)))
        self.containers[name] = container
        container.start()

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
        for container in reversed(list(self.containers.values())):
            container.stop()
        self.containers.clear()
        if self.network is not None:
            self.network.remove()
            self.network = None


def build_image(tag: str = BUILT_TAG) -> str:
    """Build the evpipe image from the Dockerfile next to this package (a checkout); its tag."""
    from testcontainers.core.image import DockerImage

    root = Path(__file__).resolve().parents[2]
    if not (root / "Dockerfile").exists():
        raise PipelineError(f"no Dockerfile in {root} to build the evpipe image from: build it from a checkout "
                            "(docker build -t evpipe:local .) and set EVPIPE_TESTING_IMAGE=evpipe:local")
    DockerImage(path=root, tag=tag, clean_up=False).build()
    return tag
