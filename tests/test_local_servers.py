"""The end of a test session names the local test servers it leaves running and the command that stops them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evpipe.local.daemon import Daemon, pid_alive
from tests.local_servers import REPO, running, stop, summary

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A test state directory with a stand-in 'broker' and 'ClickHouse' (sleeping processes) running."""
    for name in ("tansu-19999", "clickhouse-18999"):
        Daemon(name, tmp_path).start(SLEEP)
    yield tmp_path
    stop(tmp_path)


def test_summary_lists_what_runs_and_the_stop_command(state_dir: Path) -> None:
    lines = summary(state_dir)
    assert lines[0].startswith("Tansu broker on 127.0.0.1:19999, pid ")
    assert lines[1].startswith("ClickHouse (evpipe clickhouse serve) on 127.0.0.1:18999, pid ")
    assert lines[-1].strip().endswith("-m tests.local_servers stop")
    assert not any("Ceph" in line for line in lines), "no Ceph pid file, no Ceph line"


def test_stop_stops_them(state_dir: Path) -> None:
    pids = [pid for server in running(state_dir) for pid in server.pids()]
    assert len(pids) == 2
    assert len(stop(state_dir)) == 2
    assert not running(state_dir) and summary(state_dir) == []
    assert not any(pid_alive(pid) for pid in pids)


def test_the_session_ends_with_the_summary(state_dir: Path) -> None:
    env = os.environ | {"EVPIPE_TEST_STATE_DIR": str(state_dir)}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/test_layers.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert "local test servers left running" in done.stdout, done.stdout + done.stderr
    assert f"EVPIPE_TEST_STATE_DIR={state_dir} " in done.stdout and "-m tests.local_servers stop" in done.stdout
