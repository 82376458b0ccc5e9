"""The README's command (a) path (docs/deployment.md), shortened: `evpipe dev up`, `evpipe dev demo`, `evpipe dev down`.

Runs on a private state directory with its own broker and free ports, so it does not
touch a developer's stack or the other tests' servers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from evpipe.local.daemon import free_port, pid_alive
from evpipe.local.demo import expected_counts, workload

EVENTS = 600


def _evpipe(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evpipe", *args], check=False, capture_output=True,
                          text=True, env=os.environ | env, timeout=timeout)


def _printed_counts(out: str) -> Counter[tuple[str, str]]:
    rows = re.findall(r"^(mobile|web)\s+(\w+)\s+([\d,]+)$", out, re.MULTILINE)
    return Counter({(source, kind): int(n.replace(",", "")) for source, kind, n in rows})


def _all_pids(state: Path) -> list[int]:
    """Supervisors from their pid files plus their children, read while they run."""
    import psutil

    pids = []
    for pid_file in state.glob("*.pid"):
        pid = int(pid_file.read_text())
        pids.append(pid)
        if pid_alive(pid):
            pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    return pids


# Numbers JSON can carry that a 64-bit integer or a double would change; each must land as sent.
NUMBERS = ["18446744073709551616", "1180591620717411303424", "-9223372036854775809", "12345678901234567890123",
           "1e308", "4.9e-324", "0.1"]


def _numbers_arrive_exactly(state: Path, env: dict[str, str]) -> None:
    """One event through the gateway, Kafka, the loader and the archiver: its numbers' text is untouched."""
    import httpx
    import pyarrow.dataset as ds

    properties = "{" + ",".join(f'"n{i}":{text}' for i, text in enumerate(NUMBERS)) + "}"
    body = f'{{"type":"numbers","user_id":"exact","properties":{properties}}}'
    response = httpx.post(f"http://127.0.0.1:{env['GATEWAY_PORT']}/v1/events", content=body,
                          headers={"Authorization": "Bearer demo-web-key"}, timeout=30)
    assert response.status_code == 200, response.text
    sql = "SELECT properties FROM events WHERE type = 'numbers' AND user_id = 'exact'"
    stored, archived = None, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (stored is None or archived is None):
        query = _evpipe("query", "--format", "json", sql, env=env)
        rows = json.loads(query.stdout) if query.returncode == 0 and query.stdout.strip() else []
        stored = rows[0]["properties"] if rows else None
        table = ds.dataset(state / "archive", format="parquet", partitioning="hive").to_table(
            filter=ds.field("type") == "numbers")
        archived = table.column("properties")[0].as_py() if table.num_rows else None
        time.sleep(1)
    assert stored == properties, stored
    assert archived == properties, archived


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_up_twice_query_archive_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"EVPIPE_STATE_DIR": str(state), "EVPIPE_BROKER_PORT": str(free_port()),
           "GATEWAY_PORT": str(free_port()), "EVPIPE_ARCHIVER_METRICS_PORT": str(free_port()),
           "EVPIPE_LOADER_METRICS_PORT": str(free_port()), "EVPIPE_ARCHIVE_ROTATE_S": "2",
           "CONSUMER_SESSION_TIMEOUT_MS": "6000"}
    pids: list[int] = []
    try:
        up = _evpipe("dev", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        for name in ("gateway", "archiver", "loader"):
            assert re.search(rf"^ok  {name}\s+started", up.stdout, re.MULTILINE), up.stdout
        pids = _all_pids(state)
        assert len(pids) >= 7, pids  # broker + 3 supervisors + 3 children

        demo = _evpipe("dev", "demo", "--events", str(EVENTS), env=env)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        expected = expected_counts(workload(EVENTS))
        assert _printed_counts(demo.stdout) == expected
        assert sum(expected.values()) == EVENTS
        parquet = list((state / "archive").rglob("*.parquet"))
        assert parquet and "Parquet file(s) under" in demo.stdout
        assert "Authorization: Bearer demo-web-key" in demo.stdout

        # A second run reuses every process and stores nothing twice.
        again = _evpipe("dev", "up", env=env)
        for name in ("broker", "gateway", "archiver", "loader"):
            assert re.search(rf"^ok  {name}\s+reused", again.stdout, re.MULTILINE), again.stdout
        assert set(_all_pids(state)) == set(pids)  # nothing started twice
        second = _evpipe("dev", "demo", "--events", str(EVENTS), env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert _printed_counts(second.stdout) == expected

        _numbers_arrive_exactly(state, env)

        status = _evpipe("dev", "status", env=env)
        assert status.returncode == 0, status.stdout
        assert re.search(r"^ok  loader\s+http://127.0.0.1:\d+/healthz answers", status.stdout, re.MULTILINE)
    finally:
        down = _evpipe("dev", "down", env=env, timeout=120)
    for name in ("gateway", "archiver", "loader", "broker"):
        assert re.search(rf"^--  {name}\s+stopped", down.stdout, re.MULTILINE), down.stdout
    assert pids and not [p for p in pids if pid_alive(p)]
    assert not list(state.glob("*.pid"))
