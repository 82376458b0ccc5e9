"""The README's command (a) path, shortened: `evpipe dev up`, `evpipe dev demo`, `evpipe dev down`.

Runs on a private state directory with its own broker and free ports, so it does not
touch a developer's stack or the other tests' servers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from infra.local.daemon import free_port, pid_alive
from infra.local.demo import expected_counts, workload

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

        status = _evpipe("dev", "status", env=env)
        assert status.returncode == 0, status.stdout
        assert re.search(r"^ok  loader\s+http://127.0.0.1:\d+/healthz answers", status.stdout, re.MULTILINE)
    finally:
        down = _evpipe("dev", "down", env=env, timeout=120)
    for name in ("gateway", "archiver", "loader", "broker"):
        assert re.search(rf"^--  {name}\s+stopped", down.stdout, re.MULTILINE), down.stdout
    assert pids and not [p for p in pids if pid_alive(p)]
    assert not list(state.glob("*.pid"))
