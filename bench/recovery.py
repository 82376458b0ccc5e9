"""Recovery after kill -9 of a consumer: dynamic group membership (before) against static (after).

The local pipeline (``bench.harness.Pipeline``: broker, ClickHouse server,
gateway, archiver and loader under their supervisors) takes a steady trickle
of events. One consumer process at a time is killed with SIGKILL; its
supervisor restarts it half a second later. Recovery is the time from the
kill until the restarted process commits its next batch: the first change of
the group's committed offsets after the kill (the killed process can commit
nothing more).

* before: dynamic membership with the session timeout of 30 s that the local
  stack used until now: the restarted member waits for the dead one's
  session to expire and a rebalance;
* after: the local stack's setting now, dynamic membership with a 6 s session;
* static: static membership (``CONSUMER_INSTANCE_ID``, what Kubernetes
  deployments set) with a 10 s session. The local broker lets a lone static
  member rejoin, but leaves a later-joining static member's partitions
  unassigned, so the local stack does not use it; the row shows what it
  would give.

Both consumers cut a batch every second here, so a batch boundary adds at
most a second to a recovery.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.harness import API_KEY, Pipeline
from bench.report import write_result
from consumers.archiver.settings import ArchiverSettings
from consumers.loader.settings import LoaderSettings
from evpipe.local.stack import LOCAL_MEMBERSHIP

BATCH_AGE_ENV = {"CONSUMER_BATCH_MAX_AGE_S": "1"}
MODES: dict[str, tuple[str, dict[str, str]]] = {
    "before": ("dynamic, 30 s session", {"CONSUMER_SESSION_TIMEOUT_MS": "30000"}),
    "after": ("dynamic, 6 s session", LOCAL_MEMBERSHIP),  # the local stack's own setting
    # One member per group here, so one id serves both (ids must be unique within a group only).
    "static": ("static, 10 s session", {"CONSUMER_INSTANCE_ID": "bench-recovery", "CONSUMER_SESSION_TIMEOUT_MS": "10000"}),
}


class Trickle(threading.Thread):
    """Sends 20 events every 0.1 s (200 events/s) until stopped, so every partition keeps getting batches."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/v1/events"
        self.stopped = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopped.wait(0.1):
            body = b"[" + b",".join(b'{"type":"t","user_id":"u%d"}' % (n + i) for i in range(20)) + b"]"
            n += 20
            request = urllib.request.Request(self.url, data=body, headers={"X-Api-Key": API_KEY})
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except OSError:
                pass  # a refused request changes nothing measured here


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets (read without joining the group)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        topics = consumer.list_topics(timeout=10).topics
        wanted = [TopicPartition(t, p) for t in ("events", "events.replay") if t in topics
                  for p in topics[t].partitions]
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(wanted, timeout=10)}
    finally:
        consumer.close()


def recover_once(pipeline: Pipeline, name: str, group: str, limit_s: float) -> float:
    """Kill -9 the process; seconds until its group's committed offsets move again."""
    pid = pipeline.pids()[name]
    killed = time.monotonic()
    os.kill(pid, 9)
    time.sleep(0.3)  # a commit already on the wire when the process died lands within this
    before = committed(pipeline.bootstrap, group)
    while time.monotonic() - killed < limit_s:
        if committed(pipeline.bootstrap, group) != before:
            return time.monotonic() - killed
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not commit within {limit_s:.0f} s of its kill; logs in {pipeline.state}")


def run_mode(mode: str, kills: int, workdir: Path) -> list[dict[str, Any]]:
    groups = {"archiver": ArchiverSettings().archiver_group, "loader": LoaderSettings().loader_group_id}
    label, env = MODES[mode]
    with Pipeline(workdir / mode, archive_rotate_s=1.0, env=BATCH_AGE_ENV | env) as pipeline:
        trickle = Trickle(pipeline.gateway_port)
        trickle.start()
        try:
            rows = []
            for name, group in groups.items():
                times = []
                for i in range(kills):
                    time.sleep(random.uniform(2.0, 4.0))  # a random point within the batch cycle
                    times.append(recover_once(pipeline, name, group, limit_s=240))
                    print(f"  {mode} {name} kill {i + 1}/{kills}: {times[-1]:.1f} s", flush=True)
                rows.append({"mode": mode, "membership": label,
                             "consumer": name, "kills": kills, "median_s": round(statistics.median(times), 1),
                             "max_s": round(max(times), 1), "all_s": [round(t, 1) for t in times]})
            return rows
        finally:
            trickle.stopped.set()
            trickle.join()


def run(quick: bool) -> dict[str, Any]:
    kills = 2 if quick else 10
    with tempfile.TemporaryDirectory(prefix="evpipe-bench-recovery-") as tmp:
        rows = [row for mode in MODES for row in run_mode(mode, kills, Path(tmp))]
    before = statistics.median(r["median_s"] for r in rows if r["mode"] == "before")
    after = statistics.median(r["median_s"] for r in rows if r["mode"] == "after")
    result = {"kills_per_consumer": kills, "median_before_s": before, "median_after_s": after,
              "ratio": before / after, "rows_all": rows}  # ratio: how many times faster recovery is
    write_result("recovery", result, [{k: v for k, v in r.items() if k != "all_s"} for r in rows],
                 required=("median_before_s", "median_after_s", "ratio"))
    return result
