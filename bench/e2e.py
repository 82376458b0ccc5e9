"""End to end: load generator -> gateway -> broker -> archiver (Parquet) + loader (ClickHouse), at a fixed rate.

In one run, on a private broker and state directory:
1. the raw ceiling: a confluent-kafka producer with the gateway's durable config (acks=all,
   idempotence) sending pre-encoded events to the same broker;
2. the load generator's own ceiling, against a server that answers at once;
3. the pipeline at a fixed offered rate (60 s at 50,000 events/s; --quick: 15 s at 20,000):
   accepted (events in 2xx answers), then, once drained, archived (rows in the Parquet files),
   loaded (count() in ClickHouse), duplicates (rows minus distinct event ids, in both),
   ingest-to-queryable latency of marker events (received_at until a ClickHouse query shows
   them), CPU and RSS of every process.

Results: bench/results/e2e.json and PNG plots next to it (bench/plots.py).
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.analyst import Analyst
from bench.harness import API_KEY, Pipeline, Sampler, Tracker, core_seconds_per_million, cpu_seconds, percentile
from bench.report import write_result

TARGET_P99_MS = 5000.0


def raw_producer_ceiling(pipe: Pipeline, count: int) -> float:
    from bench.gateway import raw_ceiling
    from evpipe.kafka import create_topics
    from evpipe.settings import KafkaSettings

    create_topics(KafkaSettings(kafka_bootstrap_servers=pipe.bootstrap), ["bench_raw"], partitions=6)
    return raw_ceiling(pipe.bootstrap, "bench_raw", count)


def measure(pipe: Pipeline, rate: float, seconds: float) -> dict[str, Any]:
    """Offer ``rate`` for ``seconds``, drain, and count everything; the timelines go under 'series'."""
    markers = mp.get_context("spawn").Queue()
    tracker, sampler, analyst = Tracker(pipe, markers), Sampler(pipe), Analyst(pipe.clickhouse_url)
    tracker.start()
    sampler.start()
    analyst.start()
    start = time.time()
    cpu_before = cpu_seconds(pipe.pids())  # from the first event offered until the last one is loaded and archived
    spec = loadgen.LoadSpec("127.0.0.1", pipe.gateway_port, API_KEY, rate=rate, seconds=seconds,
                            more_ports=pipe.more_gateway_ports)
    print(f"offering {rate:,.0f} events/s for {seconds:.0f}s ...", flush=True)
    load = loadgen.generate(spec, markers)
    end = time.time()
    print(f"accepted {load.accepted:,} ({load.events_per_s:,.0f}/s); draining ...", flush=True)
    _, archived, drain_s = pipe.drain(load.accepted + pipe.warm)
    cost = core_seconds_per_million(cpu_before, cpu_seconds(pipe.pids()), load.accepted)
    time.sleep(1.5)  # the tracker's last marker polls
    tracker.stop()
    sampler.stop()
    analyst.stop()
    loaded, distinct_loaded = pipe.loaded()
    distinct_archived = pipe.archived_distinct()
    # The pipeline's warm-up events (distinct ids, before the load) are not part of the run.
    loaded, distinct_loaded = loaded - pipe.warm, distinct_loaded - pipe.warm
    archived, distinct_archived = archived - pipe.warm, distinct_archived - pipe.warm
    latencies = tracker.latencies_since(start)
    duplicates = (loaded - distinct_loaded) + (archived - distinct_archived)
    return {
        "offered_events_per_s": rate, "seconds": seconds, "events_per_s": load.events_per_s,
        "accepted": load.accepted, "archived": archived, "loaded": loaded, "duplicates": duplicates,
        "duplicates_loaded": loaded - distinct_loaded, "duplicates_archived": archived - distinct_archived,
        "non_2xx": load.non_2xx, "errors": load.errors, "late_slots": load.late_slots,
        "request_p99_ms": percentile(load.latencies_ms, 99), "drain_s": drain_s,
        "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies, default=float("nan")),
        "markers_seen": len(latencies), "markers_missing": len(tracker.pending),
        "poll_p50_ms": percentile(tracker.poll_seconds, 50) * 1000,
        "poll_max_ms": max(tracker.poll_seconds, default=0.0) * 1000,
        "processes": sampler.summary(start, end),
        "core_s_per_million": cost,  # end to end: every process, the pipeline's and the servers' apart
        "analyst": {"answered": analyst.answered, "failed": analyst.failed, "insert_refused_164": analyst.refused_164,
                    "insert_went_through": analyst.inserted,
                    "query_p50_ms": percentile(analyst.seconds, 50) * 1000,
                    "query_max_ms": max(analyst.seconds, default=0.0) * 1000},
        "series": {"start": start, "end": end, "accepted_per_second": load.per_second,
                   "loaded": tracker.loaded, "latency": tracker.latencies, "cpu": sampler.series},
    }


def verdict(m: dict[str, Any]) -> str:
    equal = m["accepted"] == m["archived"] == m["loaded"]
    ok = equal and m["duplicates"] == 0 and m["p99_ms"] < TARGET_P99_MS and m["non_2xx"] == m["errors"] == 0
    ok = ok and m["analyst"]["failed"] == m["analyst"]["insert_went_through"] == 0
    return "met" if ok and m["events_per_s"] >= 0.98 * m["offered_events_per_s"] else "not met"


def run(quick: bool) -> dict[str, Any]:
    rate, seconds = (20_000.0, 15.0) if quick else (50_000.0, 60.0)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        print("starting broker, gateway, archiver, loader ...", flush=True)
        with Pipeline(Path(tmp)) as pipe:
            baseline = raw_producer_ceiling(pipe, 100_000 if quick else 300_000)
            gen_ceiling = loadgen.ceiling(2.0)
            m = measure(pipe, rate, seconds)
    m.update(baseline_events_per_s=baseline, ratio=m["events_per_s"] / baseline,
             loadgen_ceiling_events_per_s=gen_ceiling, quick=quick, target=verdict(m))
    rows = [
        {"what": "raw producer, acks=all (ceiling)", "events_per_s": baseline},
        {"what": "load generator alone (its ceiling)", "events_per_s": gen_ceiling},
        {"what": f"end to end, offered {rate:,.0f}/s for {seconds:.0f}s", "events_per_s": m["events_per_s"]},
        {"what": "accepted / archived / loaded", "events_per_s": f"{m['accepted']:,} / {m['archived']:,} / "
                                                                 f"{m['loaded']:,}"},
        {"what": "duplicates (ClickHouse + archive)", "events_per_s": m["duplicates"]},
        {"what": "ingest-to-queryable p50 / p90 / p99 ms",
         "events_per_s": f"{m['p50_ms']:,.0f} / {m['p90_ms']:,.0f} / {m['p99_ms']:,.0f}"},
        {"what": "drain after the load (s)", "events_per_s": f"{m['drain_s']:.1f}"},
        {"what": "core-seconds per million events: pipeline / broker + ClickHouse",
         "events_per_s": f"{m['core_s_per_million'].get('pipeline', 0):.1f} / "
                         f"{m['core_s_per_million'].get('servers', 0):.1f}"},
        {"what": "read-only analyst meanwhile: queries answered / failed; INSERTs refused with 164 / let in",
         "events_per_s": f"{m['analyst']['answered']} / {m['analyst']['failed']}; "
                         f"{m['analyst']['insert_refused_164']} / {m['analyst']['insert_went_through']}"},
        {"what": "read-only analyst query: p50 / max ms",
         "events_per_s": f"{m['analyst']['query_p50_ms']:,.0f} / {m['analyst']['query_max_ms']:,.0f}"},
        {"what": "latency poll (a ClickHouse client query): p50 / max ms",
         "events_per_s": f"{m['poll_p50_ms']:,.0f} / {m['poll_max_ms']:,.0f}"},
    ] + [{"what": f"{name}: mean CPU % / peak RSS MiB",
          "events_per_s": f"{p['cpu_mean_pct']:.0f} / {p['rss_peak_mib']:.0f}"}
         for name, p in sorted(m["processes"].items())]
    write_result("e2e", m, rows, pipeline=True)
    try:
        from bench.plots import plot_e2e

        for path in plot_e2e(m):
            print(f"plot -> {path}")
    except ImportError as exc:
        print(f"no plots ({exc}); pip install -e '.[bench]'")
    return m
