"""Hot keys with the overflow lane off and on: the largest per-partition lag the loader reports.

One user sends 90 % of a steady load (the rest: many users) through the whole local pipeline
(``bench.harness.Pipeline``), twice in one run:

* off (``GATEWAY_OVERFLOW_KEY_EVENTS_PER_S=0``, the baseline): every event of the hot user goes
  to its key's partition;
* on (200 events/s per key, burst 1,000): what the hot user sends beyond that is spread over the
  overflow topic's partitions.

Sampled every 0.5 s from the loader's ``evpipe_consumer_lag`` (refreshed every second here): the
largest lag any one partition showed, and the share of all messages the busiest partition carried.
Afterwards, the time until every accepted event is loaded and archived, and the counts (rows =
distinct ids: nothing lost or doubled either way).
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from bench.harness import API_KEY, Pipeline
from bench.report import write_result

HOT_SHARE = 0.9
BATCH = 100
LAG_LINE = re.compile(r'^evpipe_consumer_lag\{(.*)\} ([0-9.e+]+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')
ENV = {"CONSUMER_LAG_INTERVAL_S": "1", "CONSUMER_BATCH_MAX_AGE_S": "1", "GATEWAY_OVERFLOW_KEY_BURST": "1000"}
MODES = {"off": "0", "on": "200"}


def _batch(n: int) -> list[dict[str, Any]]:
    hot = int(BATCH * HOT_SHARE)
    return [{"type": "bench_overflow", "event_id": str(uuid.uuid4()),
             "user_id": "hot" if i < hot else f"user-{n}-{i}"} for i in range(BATCH)]


def _offer(port: int, rate: float, seconds: float, threads: int = 4) -> int:
    """``rate`` events/s for ``seconds`` over ``threads`` connections; returns the events answered 2xx."""
    accepted = [0] * threads

    def send(slot: int) -> None:
        interval = BATCH * threads / rate
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=30) as client:
            start = time.monotonic()
            for n in range(int(rate * seconds / BATCH / threads)):
                time.sleep(max(0.0, start + n * interval - time.monotonic()))
                if client.post("/v1/events", json=_batch(n * threads + slot)).status_code == 200:
                    accepted[slot] += BATCH

    workers = [threading.Thread(target=send, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(accepted)


class LagWatch(threading.Thread):
    """The loader's per-partition lag, sampled: the largest value each partition showed."""

    def __init__(self, metrics_url: str) -> None:
        super().__init__(daemon=True)
        self.url = metrics_url
        self.max_lag: dict[str, float] = defaultdict(float)
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                text = urllib.request.urlopen(self.url, timeout=2).read().decode()
            except OSError:
                text = ""
            for line in text.splitlines():
                if match := LAG_LINE.match(line):
                    labels = dict(LABEL.findall(match.group(1)))
                    name = f"{labels['topic']}[{labels['partition']}]"
                    self.max_lag[name] = max(self.max_lag[name], float(match.group(2)))
            time.sleep(0.5)


def _partition_counts(pipe: Pipeline) -> dict[str, int]:
    """Messages per partition of the main and overflow topics (end offsets, read once at the end)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": pipe.bootstrap, "group.id": "bench-overflow-count"})
    counts: dict[str, int] = {}
    try:
        for topic in ("events", "events.overflow"):
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                counts[f"{topic}[{partition}]"] = high - low
    finally:
        consumer.close()
    return counts


def measure(mode: str, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="evpipe-bench-overflow-") as tmp:
        env = ENV | {"GATEWAY_OVERFLOW_KEY_EVENTS_PER_S": MODES[mode]}
        with Pipeline(Path(tmp), env=env) as pipe:
            watch = LagWatch(f"http://127.0.0.1:{pipe.settings.evpipe_loader_metrics_port}/metrics")
            watch.start()
            print(f"{mode}: offering {rate:,.0f} events/s for {seconds:.0f}s, {HOT_SHARE:.0%} from one user ...",
                  flush=True)
            accepted = _offer(pipe.gateway_port, rate, seconds)
            loaded, archived, drain_s = pipe.drain(accepted + pipe.warm)
            watch.running = False
            watch.join(5)
            rows, distinct = pipe.loaded()
            counts = _partition_counts(pipe)
    total = sum(counts.values()) or 1
    return {"overflow": mode, "accepted": accepted, "loaded": loaded - pipe.warm, "archived": archived - pipe.warm,
            "duplicates": rows - distinct, "max_partition_lag": max(watch.max_lag.values(), default=0.0),
            "worst_partition": max(watch.max_lag, key=watch.max_lag.__getitem__, default=""),
            "busiest_partition_share": round(max(counts.values(), default=0) / total, 3),
            "drain_s": round(drain_s, 1)}


def run(quick: bool = False) -> dict[str, Any]:
    rate, seconds = (5_000.0, 10.0) if quick else (10_000.0, 30.0)
    rows = [measure(mode, rate, seconds) for mode in MODES]
    off, on = rows
    result = {"offered_events_per_s": rate, "seconds": seconds, "hot_share": HOT_SHARE,
              "max_lag_off": off["max_partition_lag"], "max_lag_on": on["max_partition_lag"],
              # ratio: how many times smaller the worst partition's lag is with the lane on
              "ratio": off["max_partition_lag"] / max(1.0, on["max_partition_lag"])}
    write_result("overflow", result, rows, required=("max_lag_off", "max_lag_on", "ratio"))
    return result
