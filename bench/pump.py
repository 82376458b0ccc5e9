"""The gateway's delivery-report pump interval (GATEWAY_DELIVERY_POLL_MS), A/B in one run.

While requests wait, the Kafka backend polls librdkafka for delivery reports every
GATEWAY_DELIVERY_POLL_MS on the event loop (gateway/backends/kafka.py). Shorter answers
sooner; every wake-up costs CPU whether a report came or not. This run holds fixed offered
rates with the open-loop generator (bench.loadgen) against one gateway on a private broker,
for each interval in turn and then again in reverse order (A B C C B A), so drift on a shared
machine falls on every variant alike. It reports the gateway's own CPU per million events
(psutil, the gateway process only) and the request round trips the generator saw.

Baseline: today's default (1 ms), measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import cpu_seconds, percentile
from bench.loadgen import LoadSpec, generate
from bench.report import write_result

API_KEY = "bench-key"
INTERVALS_MS = (1.0, 2.0, 5.0)  # GATEWAY_DELIVERY_POLL_MS; the first is the baseline (today's default)
# (label, events/s, events per request): the single-event path (an SDK flushing one event) and batches.
LOADS = (("single events", 1_000, 1), ("batches of 100", 20_000, 100))


def _gateway_cpu(pid: int) -> float:
    return cpu_seconds({"gateway": pid})["gateway"]


def _measure(pid: int, spec: LoadSpec) -> dict[str, float]:
    before = _gateway_cpu(pid)
    result = generate(spec)
    cpu_s = _gateway_cpu(pid) - before
    if result.non_2xx or result.errors:
        raise RuntimeError(f"{result.non_2xx} non-2xx answers and {result.errors} errors at {spec.rate:g} events/s")
    return {"events_per_s": result.events_per_s, "cpu_s": cpu_s, "accepted": result.accepted,
            "p50_ms": percentile(result.latencies_ms, 50), "p99_ms": percentile(result.latencies_ms, 99)}


def _idle_cpu(pid: int, seconds: float) -> float:
    """Share of one core the gateway uses with no requests at all."""
    before = _gateway_cpu(pid)
    time.sleep(seconds)
    return (_gateway_cpu(pid) - before) / seconds


def _variant(env: dict[str, str], port: int, interval_ms: float, seconds: float) -> dict[str, Any]:
    from bench.gateway import _serve
    from evpipe.local.daemon import terminate

    proc = _serve(["evpipe", "gateway"], env | {"GATEWAY_DELIVERY_POLL_MS": str(interval_ms)}, port, "gateway")
    try:
        warm = LoadSpec("127.0.0.1", port, API_KEY, rate=2_000, seconds=2, batch=100, marker_every_s=0)
        generate(warm)
        out: dict[str, Any] = {"idle_core": _idle_cpu(proc.pid, 3.0)}
        for label, rate, batch in LOADS:
            spec = LoadSpec("127.0.0.1", port, API_KEY, rate=rate, seconds=seconds, batch=batch,
                            processes=1, marker_every_s=0)
            out[label] = _measure(proc.pid, spec)
        return out
    finally:
        terminate(proc.pid, 30)


def run(quick: bool) -> dict[str, Any]:
    from evpipe.kafka import create_topics
    from evpipe.local.broker import LocalBroker
    from evpipe.local.daemon import free_port
    from evpipe.settings import KafkaSettings

    seconds = 8.0 if quick else 20.0
    order = [*INTERVALS_MS, *reversed(INTERVALS_MS)]
    samples: dict[str, list[dict[str, Any]]] = {_name(ms): [] for ms in INTERVALS_MS}
    with tempfile.TemporaryDirectory(prefix="bench-pump-") as tmp:
        broker = LocalBroker(Path(tmp) / "broker", free_port())
        broker.ensure()
        try:
            topic = "bench_events"
            create_topics(KafkaSettings(kafka_bootstrap_servers=broker.bootstrap), [topic, f"{topic}.invalid"],
                          partitions=6)
            port = free_port()
            env = os.environ | {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_TOPIC": topic,
                "KAFKA_INVALID_TOPIC": f"{topic}.invalid", "GATEWAY_API_KEYS": f"{API_KEY}=bench",
                "GATEWAY_PORT": str(port), "GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0", "GATEWAY_LOG_LEVEL": "warning",
                "GATEWAY_OVERFLOW_KEY_EVENTS_PER_S": "0", "PRIVACY_STORE": "off",
            }
            for interval_ms in order:
                print(f"pump every {_name(interval_ms)}: idle, then "
                      + ", ".join(f"{label} at {rate:,}/s" for label, rate, _ in LOADS) + f", {seconds:g}s each ...",
                      flush=True)
                samples[_name(interval_ms)].append(_variant(env, port, interval_ms, seconds))
        finally:
            broker.stop()
    return _report(samples, quick, seconds)


def _name(interval_ms: float) -> str:
    return f"{interval_ms:g} ms"


def _report(samples: dict[str, list[dict[str, Any]]], quick: bool, seconds: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for name, runs in samples.items():
        idle = statistics.mean(r["idle_core"] for r in runs)
        for label, rate, _batch in LOADS:
            parts = [r[label] for r in runs]
            accepted = sum(p["accepted"] for p in parts)
            core_s_per_m = sum(p["cpu_s"] for p in parts) / accepted * 1e6
            rows.append({"pump": name, "load": f"{label}, {rate:,}/s offered",
                         "events_per_s": round(statistics.mean(p["events_per_s"] for p in parts)),
                         "gateway_core_s_per_m": round(core_s_per_m, 2),
                         "p50_ms": " / ".join(f"{p['p50_ms']:.1f}" for p in parts),
                         "p99_ms": " / ".join(f"{p['p99_ms']:.1f}" for p in parts),
                         "idle_core_pct": round(100 * idle, 1)})
            summary[f"{name}: {label}"] = {"core_s_per_m": core_s_per_m, "p50_ms": [p["p50_ms"] for p in parts],
                                           "p99_ms": [p["p99_ms"] for p in parts]}
        summary[f"{name}: idle_core"] = idle
    batches = LOADS[1][0]
    baseline = _name(INTERVALS_MS[0])
    base = summary[f"{baseline}: {batches}"]["core_s_per_m"]
    best = min(samples, key=lambda name: summary[f"{name}: {batches}"]["core_s_per_m"])
    # ratio: the baseline's cost over the cheapest variant's (batches of 100), gateway core-seconds per million
    result = {"offered_events_per_s": LOADS[1][1], "baseline": baseline,
              "ratio": base / summary[f"{best}: {batches}"]["core_s_per_m"], "cheapest": best,
              "seconds_per_load": seconds, "quick": quick, "cpus": os.cpu_count(), "variants": summary}
    write_result("pump", result, rows, required=("ratio", "baseline"))
    return result
