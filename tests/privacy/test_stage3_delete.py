"""Acceptance, stage 3: ingest A, B and C through the gateway; delete A; A is gone everywhere, B and C intact."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.consumers.loader.events import event, messages
from tests.consumers.runtime.events import produce
from tests.privacy.stage3 import ROOT, Stage3, send
from tests.providers import Service

pytestmark = pytest.mark.slow

USERS = ["A", "B", "C"]
PER_USER = 400


def _baseline(stage: Stage3) -> dict[str, tuple[list[str], list[str]]]:
    return {user: (stage.ch_ids(user), stage.archive_ids(user)) for user in ("B", "C")}


def _rollup_matches(stage: Stage3) -> bool:
    events = stage.target.query("SELECT count() AS n FROM events")[0]["n"]
    rollup = stage.target.query("SELECT sum(events) AS n FROM events_per_minute")[0]["n"]
    return int(events) == int(rollup)


def _ledger_progress(stage: Stage3) -> int:
    """How far the deletion got, as its ledger says: steps done plus archive files rewritten (kept across runs)."""
    exists = stage.target.query(f"SELECT count() AS n FROM system.tables WHERE database = '{stage.database}' "
                                "AND name = 'privacy_requests'")[0]["n"]
    if not exists:  # the first run creates the ledger
        return 0
    rows = stage.target.query(f"SELECT argMax(document, version) AS d FROM {stage.database}.privacy_requests")
    steps = orjson.loads(rows[0]["d"]).get("steps", {}) if rows else {}
    return sum(len(step.get("files_rewritten", [])) + (step.get("status") == "done") for step in steps.values())


def _after_progress(stage: Stage3, proc: subprocess.Popen[bytes], steps: int, within_s: float = 120) -> bool:
    """Wait until the run has gone ``steps`` further (True), or has exited (False).

    A kill counted in the deletion's own progress lands inside the work on any machine, however
    fast it runs (wall-clock kill times were outrun by a fast machine: a run finished first)."""
    start, deadline = _ledger_progress(stage), time.monotonic() + within_s
    while proc.poll() is None:
        if _ledger_progress(stage) - start >= steps:
            return True
        assert time.monotonic() < deadline, f"the deletion made no progress in {within_s:.0f} s"
        time.sleep(0.02)
    return False


def test_delete_a_everywhere(kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    stage = Stage3(kafka, clickhouse, topic, tmp_path)
    stage.create_topics()
    stage.start_archiver()
    loader = stage.start_loader()
    try:
        with stage.gateway() as gateway:
            send(gateway, USERS, PER_USER)
            stage.wait_loaded(3 * PER_USER)
            stage.wait_archived(3 * PER_USER)
            before = _baseline(stage)
            files = stage.archive_files()
            assert len(stage.ch_ids("A")) == PER_USER and len(before["B"][0]) == PER_USER

            deleted = stage.evpipe("privacy", "delete", "--user-id", "A", "--requested-by", "test")
            assert deleted.returncode == 0, deleted.stdout + deleted.stderr
            assert stage.ch_ids("A") == [] and stage.archive_ids("A") == []
            assert _baseline(stage) == before  # B and C: the same event_ids, row for row
            assert stage.archive_files() == files  # no file lost or added
            assert _rollup_matches(stage)

            status = stage.evpipe("privacy", "status")
            assert status.returncode == 0 and "status done" in status.stdout, status.stdout + status.stderr
            assert "clickhouse" in status.stdout and "archive" in status.stdout

            # New events for A: answered 2xx, never stored (B's new ones are, which shows the loader caught up).
            send(gateway, ["A", "B"], 20, tag="late")
            stage.wait_loaded(2 * PER_USER + 20)
            stage.wait_archived(2 * PER_USER + 20)
            assert stage.ch_ids("A") == [] and stage.archive_ids("A") == []
        before = _baseline(stage)

        # A replay from the archive, into ClickHouse and onto the replay topic.
        window = ["--from", (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(),
                  "--to", (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()]
        for into in ("clickhouse", "kafka"):
            replayed = stage.evpipe("replay", "archive", *window, "--into", into)
            assert replayed.returncode == 0, replayed.stdout + replayed.stderr

        # A replay from the earliest Kafka offsets: A's messages are still in the topic.
        assert loader.terminate() == 0
        reset = ["replay", "offsets", "--group", stage.loader_group, "--topic", topic, "--to-earliest", "--execute"]
        deadline = time.monotonic() + 60
        while "has active members" in (out := stage.evpipe(*reset)).stdout and time.monotonic() < deadline:
            time.sleep(2)
        assert out.returncode == 0, out.stdout + out.stderr
        stage.start_loader(LOADER_CONSUME_REPLAY="true")
        time.sleep(8)  # the whole topic again, and the replay topic
        stage.wait_loaded(2 * PER_USER + 20)
        assert stage.ch_ids("A") == [] and stage.archive_ids("A") == []
        assert _baseline(stage) == before
        assert _rollup_matches(stage)
    finally:
        stage.stop()


def test_suppression_without_deletion(kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    stage = Stage3(kafka, clickhouse, topic, tmp_path)
    stage.create_topics()
    stage.start_archiver()
    stage.start_loader()
    try:
        with stage.gateway() as gateway:
            send(gateway, ["A", "B"], 50)
            stage.wait_loaded(100)
            out = stage.evpipe("privacy", "suppress", "--user-id", "A")
            assert out.returncode == 0, out.stdout + out.stderr
            time.sleep(1.5)  # the gateway's copy refreshes every 0.5 s
            send(gateway, ["A", "B"], 30, tag="new")
            metrics = gateway.get("/metrics").text
            assert "evpipe_gateway_events_suppressed_total 30.0" in metrics
            # Past the gateway (an unrefreshed gateway, a fallback drain, a redrive): the consumers drop them.
            behind = [event(i, user="A" if i % 2 else "B", source="web") for i in range(40)]
            produce(kafka.url, topic, messages(behind))
            stage.wait_loaded(150)
            stage.wait_archived(150)
            time.sleep(2)
            assert len(stage.ch_ids("A")) == 50 and len(stage.archive_ids("A")) == 50  # kept, not deleted
            assert len(stage.ch_ids("B")) == 100
    finally:
        stage.stop()


def test_kill_9_during_deletion_then_rerun(kafka: Service, clickhouse: Service, topic: str, tmp_path: Path) -> None:
    stage = Stage3(kafka, clickhouse, topic, tmp_path)
    stage.create_topics(partitions=3)
    stage.start_archiver(batch=10)  # ~200 small files: kills land in the middle of the archive rewrite
    stage.start_loader()
    try:
        with stage.gateway() as gateway:
            send(gateway, USERS, 600)
            stage.wait_loaded(1800)
            stage.wait_archived(1800)
        stage.stop()  # nothing else writes: the end state is the deletion's alone
        before, files = _baseline(stage), stage.archive_files()
        rng = random.Random()
        kills, finished = 0, False
        while not finished and kills < 12:  # killed at a random point of its work each time, until a run finishes
            proc = subprocess.Popen([sys.executable, "-m", "evpipe", "privacy", "delete", "--user-id", "A"],
                                    cwd=ROOT, env=stage.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _after_progress(stage, proc, rng.randint(1, 10)):
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                kills += 1
            else:
                finished = proc.wait(30) == 0
        final = stage.evpipe("privacy", "delete", "--user-id", "A")  # a run after the end: the same end state
        assert final.returncode == 0, final.stdout + final.stderr
        assert kills >= 3, f"only {kills} kills"
        assert stage.ch_ids("A") == [] and stage.archive_ids("A") == []
        assert _baseline(stage) == before
        assert stage.archive_files() == files  # no file lost or duplicated
        assert _rollup_matches(stage)  # the rollup corrected exactly once
        print(f"{kills} kills; {final.stdout}")
    finally:
        stage.stop()
