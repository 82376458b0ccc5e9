"""Gateway throughput against the raw producer ceiling, in one run.

1. Raw ceiling: a confluent-kafka producer (same durable config: acks=all,
   idempotence) sends the same pre-encoded events to a private Tansu broker.
2. The gateway's CPU floor: parsing and validating the same events in-process (no HTTP, no Kafka).
3. The gateway (`evpipe gateway`, one uvicorn worker, Kafka backend) under
   wrk on loopback: batches of 100 events, then single events at 256 connections.
4. The floor under any one-worker gateway (``bench.gateway_floor``): the same
   uvicorn server and Kafka backend answering each batch of 100 by producing
   pre-encoded events, with no parsing or validation, under the same wrk load.
5. The load generator's own ceiling: wrk against GET /healthz of the same server.
6. Tracking plans: the same gateway, batches of 100 events of a realistic plan (``bench.plans``: 20 event
   types, 5-15 properties each) sent with a key whose source has that plan in ``enforce`` mode, and with
   a key whose source has none: the same events with plans off, in the same process and run.

Every 2xx counted was answered after the broker acknowledged all its events;
the accepted-events counter from /metrics is checked against wrk's count.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.plans import planned_event, realistic_plan
from bench.report import write_result

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
PLAN_KEY = "bench-plan-key"  # its source, "planned", has the realistic tracking plan
WRK_SCRIPT = """
local f = io.open("{body}", "rb")
wrk.method = "{method}"
wrk.body = f and f:read("*a") or nil
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Api-Key"] = "{key}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def _event(n: int) -> dict[str, Any]:
    return {"type": "page_view", "user_id": f"user-{n}", "anonymous_id": f"anon-{n}",
            "properties": {"path": "/pricing", "referrer": "https://example.com/blog", "n": n},
            "context": {"locale": "en-US", "library": {"name": "bench", "version": "1"}}}


def validation_ceiling(seconds: float = 2.0) -> float:
    """Events/s of parsing + validating 100-event bodies in this process: the gateway's CPU floor per event."""
    from gateway import ingest
    from gateway.body import Limits, parse_events
    from schemas.envelope import Enrichment, EventValidator, now_timestamp

    validator, limits = EventValidator(), Limits(5 << 20, 20 << 20, 65536, 10_000)
    body = orjson.dumps([_event(n) for n in range(100)])
    events, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        parsed = parse_events(body, "application/json", limits)
        events += len(ingest.build(parsed, validator, Enrichment("bench", now_timestamp(), "127.0.0.1", "b")).records)
    return events / (time.perf_counter() - started)


def raw_ceiling(bootstrap: str, topic: str, count: int) -> float:
    from confluent_kafka import Producer

    from evpipe.kafka import producer_config
    from evpipe.settings import KafkaSettings
    from schemas.envelope import Enrichment, EventValidator, now_timestamp

    validator = EventValidator()
    enrichment = Enrichment("bench", now_timestamp(), "127.0.0.1", "bench")
    encoded = [validator.encode(_event(n), enrichment)[:2] for n in range(100)]
    producer = Producer(producer_config(KafkaSettings(kafka_bootstrap_servers=bootstrap),
                                        **{"queue.buffering.max.messages": 1_000_000}))
    failed = 0

    def report(err: Any, _msg: Any) -> None:
        nonlocal failed
        failed += err is not None

    started = time.perf_counter()
    for i in range(count):
        key, value = encoded[i % 100]
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"raw producer: {failed} delivery failures")
    return count / elapsed


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mib, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024)
            except FileNotFoundError:
                return
            time.sleep(0.2)


def wrk(url: str, body: Path | None, connections: int, seconds: int, workdir: Path,
        key: str = API_KEY) -> dict[str, float]:
    script = workdir / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(WRK_SCRIPT.format(body=body or "/nonexistent", method="POST" if body else "GET", key=key))
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, duration_us, non2xx, socket_errors, p50, p99 = map(int, match.groups())
    ok = requests - non2xx
    return {"ok_requests": ok, "non_2xx": non2xx, "socket_errors": socket_errors,
            "req_per_s": ok / (duration_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


def _serve(module_args: list[str], env: dict[str, str], port: int, name: str) -> subprocess.Popen[bytes]:
    """Start ``python -m <module_args>`` and return once it listens on ``port``."""
    from evpipe.local.daemon import port_open

    proc = subprocess.Popen([sys.executable, "-m", *module_args], env=env, cwd=REPO)
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start")
        time.sleep(0.1)
    return proc


def _floor(env: dict[str, str], port: int, body: Path, seconds: int, workdir: Path) -> dict[str, float]:
    """wrk against ``bench.gateway_floor`` (HTTP in, durable produce out, no parse or validation)."""
    from evpipe.local.daemon import terminate

    proc = _serve(["bench.gateway_floor"], env, port, "the floor app")
    try:
        url = f"http://127.0.0.1:{port}/v1/events"
        wrk(url, body, 16, 2, workdir)  # warm-up
        result = wrk(url, body, 64, seconds, workdir)
    finally:
        terminate(proc.pid, 30)
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"floor app: {result['non_2xx']} non-2xx answers, {result['socket_errors']} socket errors")
    return result


def accepted_total(url: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics").text
    match = re.search(r"^evpipe_gateway_events_accepted_total ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def ensure_wrk() -> None:
    """Install wrk (Debian's package) when missing, as the test command installs Ceph and promtool."""
    if shutil.which("wrk") is not None:
        return
    script = Path("infra") / "local" / "install-wrk.sh"
    if subprocess.run(["bash", str(script)], cwd=REPO, check=False).returncode != 0 or shutil.which("wrk") is None:
        raise RuntimeError(f"wrk is not installed and `bash {script}` could not install it (see above); "
                           "install Debian's wrk package (apt-get install wrk) and run again")


def run(quick: bool) -> dict[str, Any]:
    ensure_wrk()
    from evpipe.kafka import create_topics
    from evpipe.local.broker import LocalBroker
    from evpipe.local.daemon import free_port, terminate
    from evpipe.settings import KafkaSettings

    seconds = 8 if quick else 20
    raw_count = 1_000_000  # fewer events understate the ceiling: producer start-up weighs on them (200k: half)
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        workdir = Path(tmp)
        broker = LocalBroker(workdir / "broker", free_port())
        broker.ensure()
        try:
            topic = "bench_events"
            create_topics(KafkaSettings(kafka_bootstrap_servers=broker.bootstrap), [topic, f"{topic}.invalid"],
                          partitions=6)
            print(f"raw producer: {raw_count:,} events ...", flush=True)
            ceiling = raw_ceiling(broker.bootstrap, topic, raw_count)
            validation = validation_ceiling()
            batch_body, single_body = workdir / "batch.json", workdir / "single.json"
            batch_body.write_bytes(orjson.dumps([_event(n) for n in range(100)]))
            single_body.write_bytes(orjson.dumps(_event(7)))
            planned_body, plans_dir = workdir / "planned.json", workdir / "plans"
            planned_body.write_bytes(orjson.dumps([planned_event(n) for n in range(100)]))
            plans_dir.mkdir()
            (plans_dir / "planned.json").write_bytes(orjson.dumps(realistic_plan("planned")))
            port = free_port()
            env = os.environ | {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_TOPIC": topic,
                "GATEWAY_TRACKING_PLANS": str(plans_dir),
                "KAFKA_INVALID_TOPIC": f"{topic}.invalid", "GATEWAY_API_KEYS": f"{API_KEY}=bench,{PLAN_KEY}=planned",
                "GATEWAY_PORT": str(port), "GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0", "GATEWAY_LOG_LEVEL": "warning",
                # wrk repeats one body, so its 100 users (the single path: one) are each far over the overflow
                # lane's per-key rate: off, the rows measure the gateway, not a hot-key storm (the lane's cost
                # is in docs/performance.md). No ClickHouse here: no privacy list to read.
                "GATEWAY_OVERFLOW_KEY_EVENTS_PER_S": "0", "PRIVACY_STORE": "off",
            }
            proc = _serve(["evpipe", "gateway"], env, port, "gateway")
            try:
                url = f"http://127.0.0.1:{port}"
                sampler = RssSampler(proc.pid)
                sampler.start()
                wrk(f"{url}/v1/events", single_body, 16, 2, workdir)  # warm-up
                before = accepted_total(url)
                print(f"gateway: batches of 100, 64 connections, {seconds}s ...", flush=True)
                batch = wrk(f"{url}/v1/events", batch_body, 64, seconds, workdir)
                batch_accepted = accepted_total(url) - before
                print(f"gateway: single events, 256 connections, {seconds}s ...", flush=True)
                single = wrk(f"{url}/v1/events", single_body, 256, seconds, workdir)
                print(f"gateway: planned events, batches of 100, plans off then enforce, {seconds}s each ...",
                      flush=True)
                plans_off = wrk(f"{url}/v1/events", planned_body, 64, seconds, workdir)
                plans_on = wrk(f"{url}/v1/events", planned_body, 64, seconds, workdir, key=PLAN_KEY)
                print("load generator ceiling: GET /healthz ...", flush=True)
                health = wrk(f"{url}/healthz", None, 256, max(3, seconds // 2), workdir)
                sampler.running = False
            finally:
                terminate(proc.pid, 30)
            print(f"floor: HTTP + durable produce only, batches of 100, 64 connections, {seconds}s ...", flush=True)
            floor = _floor(env, port, batch_body, seconds, workdir)
        finally:
            broker.stop()
    # wrk stops counting at the end of the run while up to one request per connection is still answered.
    if not batch["ok_requests"] * 100 <= batch_accepted <= (batch["ok_requests"] + 64) * 100:
        raise RuntimeError(f"gateway counted {batch_accepted} accepted events, wrk saw "
                           f"{batch['ok_requests'] * 100} acknowledged")
    batch_eps = batch["req_per_s"] * 100
    rows = [
        {"path": "raw producer (ceiling)", "events_per_s": ceiling, "req_per_s": "", "p50_ms": "", "p99_ms": "",
         "non_2xx": "", "rss_mib": ""},
        {"path": "parse+validate only, in-process", "events_per_s": validation, "req_per_s": "", "p50_ms": "",
         "p99_ms": "", "non_2xx": "", "rss_mib": ""},
        {"path": "gateway batch=100 c=64", "events_per_s": batch_eps, "req_per_s": batch["req_per_s"],
         "p50_ms": batch["p50_ms"], "p99_ms": batch["p99_ms"], "non_2xx": batch["non_2xx"],
         "rss_mib": sampler.peak_mib},
        {"path": "floor: HTTP + produce, no parse/validate, batch=100 c=64", "events_per_s": floor["req_per_s"] * 100,
         "req_per_s": floor["req_per_s"], "p50_ms": floor["p50_ms"], "p99_ms": floor["p99_ms"],
         "non_2xx": floor["non_2xx"], "rss_mib": ""},
        {"path": "gateway single c=256", "events_per_s": single["req_per_s"], "req_per_s": single["req_per_s"],
         "p50_ms": single["p50_ms"], "p99_ms": single["p99_ms"], "non_2xx": single["non_2xx"],
         "rss_mib": sampler.peak_mib},
        *[{"path": f"gateway batch=100 c=64, planned events, {name}", "events_per_s": r["req_per_s"] * 100,
           "req_per_s": r["req_per_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "non_2xx": r["non_2xx"],
           "rss_mib": ""} for name, r in (("plans off", plans_off), ("enforce (20 types)", plans_on))],
        {"path": "GET /healthz c=256 (HTTP ceiling)", "events_per_s": "", "req_per_s": health["req_per_s"],
         "p50_ms": health["p50_ms"], "p99_ms": health["p99_ms"], "non_2xx": health["non_2xx"], "rss_mib": ""},
    ]
    result = {
        "events_per_s": batch_eps, "baseline_events_per_s": ceiling, "ratio": batch_eps / ceiling,
        "single_req_per_s": single["req_per_s"], "single_p99_ms": single["p99_ms"],
        "batch_p50_ms": batch["p50_ms"], "batch_p99_ms": batch["p99_ms"], "healthz_req_per_s": health["req_per_s"],
        "rss_peak_mib": sampler.peak_mib, "validation_events_per_s": validation,
        "plans_off_events_per_s": plans_off["req_per_s"] * 100,
        "plans_enforce_events_per_s": plans_on["req_per_s"] * 100,
        # one worker, CPU-bound: the difference of the per-event times is what the plan costs
        "plans_us_per_event": 1e6 / (plans_on["req_per_s"] * 100) - 1e6 / (plans_off["req_per_s"] * 100),
        "floor_events_per_s": floor["req_per_s"] * 100, "floor_ratio": floor["req_per_s"] * 100 / ceiling, "quick": quick, "cpus": os.cpu_count(),
    }
    write_result("gateway", result, rows)
    return result
