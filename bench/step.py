"""Step load: raise the offered rate until p99 ingest-to-queryable latency or loss breaks; report the ceiling.

One pipeline (as in bench/e2e.py) takes steps of increasing offered load. After each
step the run waits (bounded) for ClickHouse and the archive to hold everything accepted
so far. A step passes when the gateway accepted >= 95 % of the offered rate with no
errors, everything accepted was archived and loaded, and p99 latency stayed under 5 s.
A step that loses events, errs or misses the rate ends the run, and so does a second
latency failure in a row. The ceiling is the best passing step's rate; the throughput
ceiling also counts steps that only missed the latency target.
The raw producer ceiling is measured in the same run as the baseline.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.e2e import TARGET_P99_MS, raw_producer_ceiling
from bench.harness import API_KEY, Pipeline, Sampler, Tracker, core_seconds_per_million, cpu_seconds, percentile
from bench.report import write_result


def step(pipe: Pipeline, tracker: Tracker, rate: float, seconds: float, total: int) -> dict[str, Any]:
    """One step at ``rate``; ``total`` is what was accepted before it."""
    before = pipe.count()
    start = time.time()
    cpu_before = cpu_seconds(pipe.pids())
    load = loadgen.generate(loadgen.LoadSpec("127.0.0.1", pipe.gateway_port, API_KEY, rate=rate, seconds=seconds),
                            tracker.markers)
    at_end = pipe.count()
    loaded, archived, drain_s = pipe.drain(total + load.accepted, max_s=90, stall_s=20)
    cost = core_seconds_per_million(cpu_before, cpu_seconds(pipe.pids()), load.accepted)
    time.sleep(1.0)
    latencies = tracker.latencies_since(start)
    result: dict[str, Any] = {
        "offered_events_per_s": rate, "events_per_s": load.events_per_s, "accepted": load.accepted,
        "loaded_events_per_s": (at_end - before) / seconds, "drain_s": drain_s,
        "lost": total + load.accepted - min(loaded, archived), "non_2xx": load.non_2xx, "errors": load.errors,
        "core_s_per_million_pipeline": cost.get("pipeline"), "core_s_per_million_servers": cost.get("servers"),
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
    }
    checks = {"rate": load.events_per_s >= 0.95 * rate, "errors": load.non_2xx + load.errors == 0,
              "loss": result["lost"] == 0, "p99": result["p99_ms"] < TARGET_P99_MS}
    result["passed"] = all(checks.values())
    result["broke_on"] = ",".join(k for k, ok in checks.items() if not ok)
    print(f"step {rate:,.0f}/s: accepted {load.events_per_s:,.0f}/s, p99 {result['p99_ms']:,.0f} ms, "
          f"lost {result['lost']:,} -> {'pass' if result['passed'] else 'broke on ' + result['broke_on']}",
          flush=True)
    return result


def run(quick: bool) -> dict[str, Any]:
    rates, seconds = ([10_000.0, 20_000.0, 40_000.0], 8.0) if quick else (
        [20_000.0, 30_000.0, 40_000.0, 50_000.0, 60_000.0, 80_000.0, 100_000.0, 150_000.0], 20.0)
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        print("starting broker, gateway, archiver, loader ...", flush=True)
        with Pipeline(Path(tmp)) as pipe:
            baseline = raw_producer_ceiling(pipe, 100_000 if quick else 300_000)
            tracker, sampler = Tracker(pipe, mp.get_context("spawn").Queue()), Sampler(pipe)
            tracker.start()
            sampler.start()
            total = pipe.warm
            for rate in rates:
                steps.append(step(pipe, tracker, rate, seconds, total))
                total += steps[-1]["accepted"]
                # Loss, errors or a missed rate end the run; latency alone ends it on the second
                # failing step in a row (one noisy step on a shared box should not set the ceiling).
                hard = steps[-1]["broke_on"] not in ("", "p99")
                if hard or (len(steps) > 1 and not steps[-1]["passed"] and not steps[-2]["passed"]):
                    break
            tracker.stop()
            sampler.stop()
    passing = [s for s in steps if s["passed"]]
    ceiling = max((s["events_per_s"] for s in passing), default=0.0)
    # Throughput alone: the best step that lost nothing and kept the rate, whatever its latency.
    throughput = max((s["events_per_s"] for s in steps if s["broke_on"] in ("", "p99")), default=0.0)
    result = {"events_per_s": ceiling, "baseline_events_per_s": baseline, "ratio": ceiling / baseline,
              "step_seconds": seconds, "steps": steps, "quick": quick, "throughput_ceiling_events_per_s": throughput,
              "broke_at": next((s["offered_events_per_s"] for s in steps if not s["passed"]), None)}
    rows = [{k: s[k] for k in ("offered_events_per_s", "events_per_s", "loaded_events_per_s", "p50_ms", "p99_ms",
                               "lost", "non_2xx", "drain_s", "core_s_per_million_pipeline", "passed", "broke_on")}
            for s in steps]
    write_result("step", result, rows)
    try:
        from bench.plots import plot_step

        for path in plot_step(result):
            print(f"plot -> {path}")
    except ImportError as exc:
        print(f"no plots ({exc}); pip install -e '.[bench]'")
    return result
