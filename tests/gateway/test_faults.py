"""Fault injection against a real uvicorn gateway: a paused broker (SIGSTOP) and SIGTERM under load.

Each test runs its own Tansu broker on a free port, so pausing it does not freeze the shared test broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from evpipe.kafka import create_topics
from evpipe.local.broker import LocalBroker
from evpipe.local.daemon import free_port, port_open, terminate
from evpipe.settings import KafkaSettings

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(150)]

DEADLINE_S = 2.0
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Broker:
    bootstrap: str
    pid: int
    topic: str


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = LocalBroker(tmp_path / "broker", free_port())
    broker.ensure()
    pid = broker.daemon.pid()
    assert pid is not None
    topic = f"fault_{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(kafka_bootstrap_servers=broker.bootstrap)
    create_topics(settings, [topic, f"{topic}.invalid"], partitions=3)
    try:
        yield Broker(broker.bootstrap, pid, topic)
    finally:
        os.kill(pid, signal.SIGCONT)
        broker.stop()


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


@pytest.fixture
def gateway(private_broker: Broker, tmp_path: Path) -> Iterator[Gateway]:
    yield from _gateway(private_broker, tmp_path, {"GATEWAY_FALLBACK_URI": ""})  # 503s, as tested here


@pytest.fixture
def fallback_gateway(private_broker: Broker, tmp_path: Path) -> Iterator[Gateway]:
    yield from _gateway(private_broker, tmp_path, {"GATEWAY_FALLBACK_URI": str(tmp_path / "fallback"),
                                                   "GATEWAY_FALLBACK_DRAIN_INTERVAL_S": "1"})


def _gateway(private_broker: Broker, tmp_path: Path, extra_env: dict[str, str]) -> Iterator[Gateway]:
    port = free_port()
    log = tmp_path / "gateway.log"
    env = os.environ | extra_env | {
        "KAFKA_BOOTSTRAP_SERVERS": private_broker.bootstrap, "KAFKA_TOPIC": private_broker.topic,
        "KAFKA_INVALID_TOPIC": f"{private_broker.topic}.invalid", "GATEWAY_API_KEYS": "fault-key=fault",
        "GATEWAY_PORT": str(port), "GATEWAY_DEADLINE_S": str(DEADLINE_S), "GATEWAY_MAX_QUEUED_EVENTS": "200",
        "GATEWAY_DRAIN_S": "1", "GATEWAY_LOG_LEVEL": "warning",
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
        yield Gateway(proc, f"http://127.0.0.1:{port}", log)
    finally:
        if proc.poll() is None:
            terminate(proc.pid, 20)


@dataclass
class Load:
    """Client threads sending batches with their own event ids, recording what each request was answered."""

    url: str
    threads: int = 6
    batch: int = 10
    acked: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    slowest_503_s: float = 0.0
    fast_503s: int = 0  # answered at once: the bounded producer queue was full
    deadline_503s_with_ids: int = 0  # answered at the deadline, listing the ids to resend with
    deadline_503s_without_ids: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def finish(self) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-Api-Key": "fault-key"}, timeout=30) as client:
            while not self.stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(self.batch)]
                body = orjson.dumps([{"type": "load", "anonymous_id": f"a{n}", "event_id": i}
                                     for n, i in enumerate(ids)])
                started = time.monotonic()
                answer: dict[str, object] = {}
                try:
                    response = client.post("/v1/events", content=body)
                    status = response.status_code
                    answer = response.json()
                except httpx.HTTPError:
                    status = 0  # connection refused once the server closed: not acknowledged
                    time.sleep(0.05)
                took = time.monotonic() - started
                with self.lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status == 200:
                        self.acked.update(ids)
                    elif status == 503:
                        self.slowest_503_s = max(self.slowest_503_s, took)
                        self.fast_503s += took < 0.5
                        if took >= DEADLINE_S:
                            if answer.get("event_ids") == ids:
                                self.deadline_503s_with_ids += 1
                            else:
                                self.deadline_503s_without_ids += 1


def topic_event_ids(bootstrap: str, topic: str, wanted: set[str], timeout: float = 60.0) -> set[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10})
    found: set[str] = set()
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout
        while not wanted <= found and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 0.5):
                if msg.error() is None:
                    found.add(orjson.loads(msg.value())["event_id"])
    finally:
        consumer.close()
    return found


def test_paused_broker_gives_bounded_503s_and_loses_no_acked_event(private_broker: Broker,
                                                                    gateway: Gateway) -> None:
    load = Load(gateway.url, batch=25)
    load.start()
    time.sleep(3)
    acked_before = len(load.acked)
    os.kill(private_broker.pid, signal.SIGSTOP)
    rss_samples = []
    try:
        for _ in range(12):
            time.sleep(0.5)
            rss_samples.append(gateway.rss_mib())
        with httpx.Client(base_url=gateway.url) as probe:
            assert probe.get("/healthz").status_code == 200
            assert probe.get("/readyz", timeout=10).status_code == 503
    finally:
        os.kill(private_broker.pid, signal.SIGCONT)
    time.sleep(3)
    load.finish()
    print(f"statuses {load.statuses}, fast 503s {load.fast_503s}, slowest 503 {load.slowest_503_s:.2f}s, rss MiB {rss_samples}")
    assert acked_before > 0, load.statuses
    assert load.statuses.get(503, 0) > 0, load.statuses
    assert set(load.statuses) <= {200, 503}, load.statuses
    # Bounded waiting: a 503 comes at the deadline (plus scheduling slack on a busy machine), never later.
    assert load.slowest_503_s < DEADLINE_S + 3, load.slowest_503_s
    assert load.fast_503s > 0  # once 200 events wait for the paused broker, new requests are refused at once
    # A 503 for events that may still arrive lists their ids, so the client resends with the same ids.
    assert load.deadline_503s_with_ids > 0 and load.deadline_503s_without_ids == 0
    assert max(rss_samples) < 300, rss_samples
    found = topic_event_ids(private_broker.bootstrap, private_broker.topic, load.acked)
    missing = load.acked - found
    assert not missing, f"{len(missing)} of {len(load.acked)} acknowledged events missing"
    assert gateway.proc.poll() is None  # still serving


def test_sigterm_under_load_loses_no_acked_event(private_broker: Broker, gateway: Gateway) -> None:
    load = Load(gateway.url)
    load.start()
    time.sleep(3)
    gateway.proc.send_signal(signal.SIGTERM)
    code = gateway.proc.wait(60)
    load.finish()
    print(f"statuses {load.statuses}")
    assert code == 0, gateway.log.read_text()[-3000:]
    assert load.statuses.get(200, 0) > 0, load.statuses
    assert load.statuses.get(503, 0) > 0, load.statuses  # the drain window answered 503, not a dropped socket
    found = topic_event_ids(private_broker.bootstrap, private_broker.topic, load.acked)
    missing = load.acked - found
    assert not missing, f"{len(missing)} of {len(load.acked)} acknowledged events missing"


def test_paused_broker_with_the_fallback_answers_2xx_and_the_drain_delivers_every_event(
        private_broker: Broker, fallback_gateway: Gateway, tmp_path: Path) -> None:
    from gateway.fallback.local import LocalFallbackStore

    load = Load(fallback_gateway.url, batch=25)
    load.start()
    time.sleep(2)
    os.kill(private_broker.pid, signal.SIGSTOP)
    try:
        time.sleep(8)
        with httpx.Client(base_url=fallback_gateway.url) as probe:
            ready = probe.get("/readyz", timeout=10)
        assert ready.status_code == 200 and "fallback" in ready.json(), ready.text  # still taking requests
    finally:
        os.kill(private_broker.pid, signal.SIGCONT)
    time.sleep(2)
    load.finish()
    store = LocalFallbackStore(tmp_path / "fallback")
    print(f"statuses {load.statuses}, stored objects {len(store.pending())}")
    resumed = time.monotonic()
    assert set(load.statuses) == {200}, load.statuses  # every request of the pause: stored, then 2xx
    deadline = time.monotonic() + 60
    while store.pending() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert store.pending() == [], "the fallback store did not drain"
    print(f"drained {time.monotonic() - resumed:.1f}s after the load stopped")
    found = topic_event_ids(private_broker.bootstrap, private_broker.topic, load.acked)
    missing = load.acked - found
    assert not missing, f"{len(missing)} of {len(load.acked)} acknowledged events missing"


def test_a_producer_the_broker_fences_after_a_long_outage_is_replaced(private_broker: Broker,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages that time out in the producer (an outage longer than message.timeout.ms) make the idempotent
    producer bump its epoch; Tansu then answers PRODUCER_FENCED to everything. The backend starts a new one."""
    import asyncio

    from gateway.backends import kafka as kafka_backend
    from gateway.backends.base import Record, Unavailable
    from tests.gateway.helpers import kafka_settings

    real_config = kafka_backend.producer_config
    monkeypatch.setattr(kafka_backend, "producer_config",
                        lambda *a, **kw: real_config(*a, **kw) | {"message.timeout.ms": 3000})
    backend = kafka_backend.KafkaBackend(kafka_settings(private_broker.bootstrap, private_broker.topic))

    def records(n: int) -> list[Record]:
        return [Record(f"src:u{i}".encode(), f'{{"event_id":"{uuid.uuid4()}"}}'.encode(), {}) for i in range(n)]

    async def run() -> tuple[int, float]:
        await backend.start()
        try:
            await backend.send(records(5), [], 10)
            os.kill(private_broker.pid, signal.SIGSTOP)
            try:
                with pytest.raises(Unavailable):
                    await backend.send(records(5), [], 1)
                await asyncio.sleep(5)  # past message.timeout.ms: the producer's messages expire
            finally:
                os.kill(private_broker.pid, signal.SIGCONT)
            resumed, failures = time.monotonic(), 0
            while time.monotonic() - resumed < 60:
                try:
                    await backend.send(records(5), [], 5)
                    return failures, time.monotonic() - resumed
                except Unavailable:
                    failures += 1
                    await asyncio.sleep(0.5)
            raise AssertionError(f"the producer never produced again ({failures} refusals)")
        finally:
            await backend.close()

    failures, took = asyncio.run(run())
    print(f"producing again {took:.1f}s after the broker returned, {failures} refusals, {len(backend._retired)} renewal(s)")
    assert len(backend._retired) == 1  # fenced once, replaced once
