"""`python -m bench peers`: our consumers against their peers, on one private broker with the same events.

Pairs (each consumer a separate process, in a fresh consumer group, reading the same topic):

* ClickHouse: `evpipe loader` vs a ClickHouse Kafka-engine table and a materialized view into an
  identical events table on the same `evpipe clickhouse serve` (``bench/peers/kafka_engine.py``: how,
  and the two chdb quirks it works around);
* Parquet: `evpipe archiver` vs Quix Streams' Parquet ``LocalFileSink``, both into local directories;
* no-op: our consumer runtime with a no-op parse step and sink vs Arroyo's ``RunTask`` (no-op
  function) and ``CommitOffsets``.

Per consumer: events/s from its first message to the last row durable, CPU seconds per million
events over that window (consumer, broker, and the ClickHouse server for the ClickHouse pair), and
after five kill -9s at random points with restarts, rows missing and duplicated (``measure.py``).
Every consumer gets the same Tansu-friendly settings: a 6 s session and fetch.queue.backoff.ms = 10
(the Kafka engine through the server's configuration).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.loader import _produce, _values
from bench.peers.env import QUIX_VERSION, quix_python, require_arroyo
from bench.peers.measure import Killed, Timed, kill_test, row, timed_run
from bench.peers.systems import ArroyoNoop, Context, KafkaEngine, OurArchiver, OurLoader, OurNoop, QuixParquet, System
from bench.report import write_result
from evpipe.local.clickhouse import LocalClickHouse
from evpipe.local.daemon import ensure_started

PARTITIONS = 6
KILLS = 5


def run(quick: bool, events: int | None = None) -> dict[str, Any]:
    """The full form on 1M events, ``--quick`` on 200k; ``events`` for a smaller smoke run."""
    from evpipe.kafka import create_topics
    from evpipe.local.broker import LocalBroker
    from evpipe.local.daemon import free_port
    from evpipe.settings import KafkaSettings

    n = events or (200_000 if quick else 1_000_000)
    arroyo_version = require_arroyo()
    quix_python()  # installs Quix Streams' environment before anything is timed
    started = time.monotonic()
    load_before = round(os.getloadavg()[0], 1)
    # Quix Streams' file sink takes only [a-zA-Z0-9 ._/] in its directory: no dashes in this path.
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp:
        workdir = Path(tmp)
        broker = LocalBroker(workdir / "broker", free_port())
        server = _start_server(workdir, free_port())
        try:
            broker.ensure()
            topic = f"bench_peers_{uuid.uuid4().hex[:8]}"
            create_topics(KafkaSettings(kafka_bootstrap_servers=broker.bootstrap), [topic, f"{topic}.dlq"],
                          partitions=PARTITIONS)
            print(f"producing {n:,} events to {PARTITIONS} partitions ...", flush=True)
            _produce(broker.bootstrap, topic, _values(n))
            ctx = Context(broker.bootstrap, topic, PARTITIONS, n, workdir, _pid(broker.daemon.pid()),
                          server.url, server.daemon.pid())
            rows, lead, timed = _measure(ctx)
        finally:
            server.stop()
            broker.stop()
    measured = {pair: ratio for pair, ratio in lead.items() if isinstance(ratio, float)}
    worst = min(measured, key=lambda p: measured[p])
    ours, peer = timed[worst]
    result = {
        "events": n, "partitions": PARTITIONS, "kills": KILLS, "quick": quick,
        "peers": {"sentry-arroyo": arroyo_version, "quixstreams": QUIX_VERSION},
        # The headline is the pair where our lead is smallest.
        "events_per_s": round(ours.events_per_s), "baseline_events_per_s": round(peer.events_per_s),
        "ratio": measured[worst], "ratio_pair": worst, "lead": lead,
        "seconds_total": round(time.monotonic() - started),
        # The machine is shared: the 1-minute load average before and after says how quiet it was.
        "load_average_1m": [load_before, round(os.getloadavg()[0], 1)],
    }
    write_result("peers", result, rows)
    return result


def _start_server(workdir: Path, port: int) -> LocalClickHouse:
    """`evpipe clickhouse serve`'s server with the Kafka engine's settings (bench/peers/kafka_engine.py), as the
    local stack's background daemon."""
    server = LocalClickHouse(workdir / "state", port)
    ensure_started(server.daemon, server.healthy,
                   [sys.executable, "-m", "bench.peers.kafka_engine", "serve", str(server.state_dir), str(port)],
                   dict(os.environ), 60.0, "the peers bench's ClickHouse server", f"port {port} in use?")
    return server


def _pid(pid: int | None) -> int:
    if pid is None:
        raise RuntimeError("the private broker is not running")
    return pid


def _measure(ctx: Context) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, tuple[Timed, Timed]]]:
    from concurrent.futures import ThreadPoolExecutor

    pairs: list[tuple[System, System]] = [(OurLoader(ctx), KafkaEngine(ctx)), (OurArchiver(ctx), QuixParquet(ctx)),
                                          (OurNoop(ctx), ArroyoNoop(ctx))]
    systems: list[System] = [s for pair in pairs for s in pair]
    timings: dict[str, Timed] = {}
    try:
        # Timed runs one at a time, ours then its peer, so no two share the two cores.
        for system in systems:
            print(f"{system.name}: timed run ...", flush=True)
            t = timings[system.slug] = timed_run(system)
            print(f"  {t.events_per_s:,.0f} events/s over {t.seconds:.2f} s, {t.cpu_s_per_m:.1f} CPU-s per 1M events",
                  flush=True)
        # The kill tests time nothing, and most of their time is group joins after a kill -9 (the dead
        # member holds its partitions for the session timeout): run them side by side.
        print(f"kill tests ({KILLS} kill -9s each), all consumers side by side ...", flush=True)
        with ThreadPoolExecutor(len(systems)) as pool:
            futures = {s.slug: pool.submit(kill_test, s, timings[s.slug].seconds, KILLS) for s in systems}
            killed = {slug: f.result() for slug, f in futures.items()}
    finally:
        for system in systems:
            system.close()

    rows: list[dict[str, Any]] = []
    lead: dict[str, Any] = {}
    timed: dict[str, tuple[Timed, Timed]] = {}
    for ours, peer in pairs:
        ot, pt = timings[ours.slug], timings[peer.slug]
        lead[ours.pair] = ot.events_per_s / pt.events_per_s
        timed[ours.pair] = (ot, pt)
        rows.append(row(ours, ot, killed[ours.slug], lead=round(lead[ours.pair], 2),
                        cpu_lead=round(pt.cpu_s_per_m / ot.cpu_s_per_m, 2), **_notes(killed[ours.slug])))
        rows.append(row(peer, pt, killed[peer.slug], **_notes(killed[peer.slug])))
    return rows, lead, timed


def _notes(killed: Killed) -> dict[str, Any]:
    a = killed.audit
    notes = []
    if a.rewrites:
        notes.append(f"{a.rewrites} batches re-written after kills (same identity, replaced whole)")
    if a.unreadable:
        notes.append(f"{a.unreadable} unreadable files")
    return {"note": "; ".join(notes)} if notes else {}
