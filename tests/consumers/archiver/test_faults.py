"""Exactly-once under kill -9 of archiver processes, with restarts and a second group member."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.consumers.archiver.helpers import archiver_env, assert_placement, read_archive, start_process, with_resends
from tests.consumers.runtime.events import committed, create_topic, events, produce
from tests.providers import Service, unique_name

PARTITIONS = 4
FULL = bool(os.environ.get("EVPIPE_FULL"))


def _files(root: Path) -> int:
    return sum(1 for _ in root.glob("topic=*/dt=*/hour=*/*.parquet"))


def _wait_progress(root: Path, before: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _files(root) <= before:
        assert proc.poll() is None, "archiver exited on its own"
        assert time.monotonic() < deadline, "archiver made no progress"
        time.sleep(0.05)


def _wait_committed(bootstrap: str, group: str, topic: str, total: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(max(0, o) for o in committed(bootstrap, group, topic, PARTITIONS).values()) < total:
        assert time.monotonic() < deadline, "not everything was committed in time"
        time.sleep(1.0)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "archiver did not stop cleanly on SIGTERM"


def _check(root: Path, expected: set[str]) -> None:
    table = read_archive(root)
    ids = table.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicated events"
    assert set(ids) == expected, f"{len(expected - set(ids))} events missing"
    assert_placement(table)


@pytest.mark.slow
@pytest.mark.fault
def test_kill9_at_random_points_keeps_exactly_once(kafka: Service, topic: str, tmp_path: Path) -> None:
    """Client resends in the stream too: a batch re-formed after a kill must drop exactly the same copies."""
    total, kills = (500_000, 12) if FULL else (40_000, 10)
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, PARTITIONS)
    archive = tmp_path / "archive"
    env = archiver_env(kafka.url, topic, dlq, str(archive), unique_name("g"), CONSUMER_BATCH_MAX_MESSAGES="300")
    generated = list(events(total, hours=6))
    messages = with_resends(generated, every=25)
    chunk = len(messages) // kills
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for i in range(kills):
        # New events before each run, so every kill lands while there is work in flight.
        produce(kafka.url, topic, messages[i * chunk:(i + 1) * chunk])
        proc = start_process(env, tmp_path / "archiver.log")
        _wait_progress(archive, _files(archive), proc)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
    produce(kafka.url, topic, messages[kills * chunk:])
    final = start_process(env, tmp_path / "archiver.log")
    _wait_committed(kafka.url, env["ARCHIVER_GROUP"], topic, len(messages))
    _stop(final)
    _check(archive, {e for _, _, e, _ in generated})
    print(f"seed {seed}: {kills} kills, {_files(archive)} files")


@pytest.mark.slow
@pytest.mark.fault
def test_two_archivers_one_killed_and_restarted(kafka: Service, topic: str, tmp_path: Path) -> None:
    total = 40_000
    dlq = unique_name("dlq")
    create_topic(kafka.url, topic, PARTITIONS)
    archive = tmp_path / "archive"
    env = archiver_env(kafka.url, topic, dlq, str(archive), unique_name("g"), CONSUMER_BATCH_MAX_MESSAGES="300")
    generated = list(events(total, hours=3))
    half = total // 2
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in generated[:half]])
    log = tmp_path / "archiver.log"
    first, second = start_process(env, log), start_process(env, log)
    _wait_progress(archive, 0, first)
    produce(kafka.url, topic, [(k, v) for k, v, _, _ in generated[half:]])
    time.sleep(0.3)
    first.kill()
    first.wait()
    time.sleep(2)
    restarted = start_process(env, log)
    _wait_committed(kafka.url, env["ARCHIVER_GROUP"], topic, total)
    _stop(second)
    _stop(restarted)
    _check(archive, {e for _, _, e, _ in generated})
